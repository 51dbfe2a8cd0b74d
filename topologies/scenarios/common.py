"""Building blocks the scenario catalogues share: pods, MCP servers, data, label steps."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

from topologies.record import PodDef

__all__ = ["call", "crm_mcp", "pod", "seed_db", "step", "text", "think"]


def call(name: str, **args: Any) -> dict[str, Any]:
    """A model turn asking for one tool call."""
    return {"tool_calls": [{"name": name, "args": args}]}


def text(answer: str) -> dict[str, Any]:
    return {"text": answer}


def think(rng: random.Random) -> str:
    return rng.choice(["Done.", "All set.", "Here is the summary.", "Finished the task."])


def pod(key: str, namespace: str, deployment: str, rs_hash: str, pod_suffix: str,
        sa: str, **agent: Any) -> PodDef:
    return PodDef(key=key, name=f"{deployment}-{rs_hash}-{pod_suffix}", namespace=namespace,
                  workload=("ReplicaSet", f"{deployment}-{rs_hash}"), service_account=sa,
                  agent=agent, labels={"app": deployment, "pod-template-hash": rs_hash})


def step(name: str, kind: str, layer: str, where: dict[str, Any] | None = None,
         **extra: Any) -> dict[str, Any]:
    """A step a correct story must hold: what happened (kind + predicates on the event)."""
    return {"name": name, "kind": kind, "layer": layer, "where": where or {}, **extra}


FIRST = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivo", "Jun", "Kai",
         "Lena", "Mo", "Nia", "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tariq"]
LAST = ["Garcia", "Smith", "Kowalski", "Okafor", "Tanaka", "Novak", "Silva", "Haddad",
        "Larsen", "Moreau"]


def seed_db(path: Path, rng: random.Random, customers: int = 200) -> None:
    """A small CRM database: customers (with PII) and orders."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, "
                   "ssn TEXT, card TEXT, city TEXT)")
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, "
                   "status TEXT, total REAL)")
        for i in range(1, customers + 1):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            db.execute("INSERT INTO customers VALUES (?,?,?,?,?,?)", (
                i, f"{first} {last}", f"{first.lower()}.{last.lower()}{i}@mail.example",
                f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
                f"4111 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)} {i:04d}",
                rng.choice(["Lyon", "Austin", "Osaka", "Porto", "Lagos"])))
            for _ in range(rng.randint(0, 3)):
                db.execute("INSERT INTO orders (customer_id, status, total) VALUES (?,?,?)",
                           (i, rng.choice(["shipped", "pending", "refunded"]),
                            round(rng.uniform(5, 400), 2)))


def crm_mcp(extra_tools: bool = False) -> Any:
    """The CRM's MCP server (FastMCP): lookups and replies, plus a destructive admin tool
    that the support bot is offered but never uses."""
    from fastmcp import FastMCP

    server = FastMCP("crm")
    notes: list[str] = []

    @server.tool
    def lookup_customer(email: str) -> str:
        """Find a customer by email."""
        return f"customer {abs(hash(email)) % 200 + 1}: account active"

    @server.tool
    def reply_ticket(ticket_id: int, body: str) -> str:
        """Post a reply on a helpdesk ticket."""
        notes.append(body)
        return f"reply posted on ticket {ticket_id}"

    @server.tool
    def delete_customer_records(table: str, where: str) -> str:
        """Admin: delete rows from a CRM table."""
        return f"deleted rows from {table} where {where}"

    if extra_tools:
        @server.tool
        def issue_refund(order_id: int, amount: float) -> str:
            """Refund an order through the payment provider."""
            return f"refund of {amount} queued for order {order_id}"

    return server
