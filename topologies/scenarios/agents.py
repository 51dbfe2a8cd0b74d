"""The benign agents: what each does from one task to the next, depending on its input.

Each agent has a pod factory and an ``activities(rng, start_s, end_s)`` generator that
places its tasks on the scenario timeline (seeded: the same seed gives the same
recording). The model's turns are chosen from the task's input (the ticket's topic, the
question, the data to fetch), so no two hours look the same.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from topologies.record import Activity, PodDef, Recording
from topologies.scenarios.common import call, crm_mcp, pod, seed_db, text
from topologies.scenarios.world import Request, Response

__all__ = ["AGENTS", "AgentKind"]

CRM = "crm-mcp.support.svc.cluster.local"
CRM_V2 = "crm-mcp-v2.support.svc.cluster.local"
WORDS = ["alpha", "borealis", "cobalt", "delta", "ember", "fjord", "granite", "harbor",
         "iris", "juniper", "kelvin", "lumen", "meridian", "nimbus", "orchid", "prairie",
         "quartz", "rivet", "summit", "tundra", "umber", "vertex", "willow", "zephyr"]
TLDS = ["com", "org", "io", "net", "dev", "ai", "co", "info"]


class AgentKind:
    def __init__(self, key: str, make_pod: Callable[[], PodDef],
                 activities: Callable[[random.Random, float, float], list[Activity]],
                 setup: Callable[[Recording, random.Random], None],
                 mcp: Callable[[], dict[str, Any]] | None = None) -> None:
        self.key, self.make_pod, self.activities, self.setup = key, make_pod, activities, setup
        self.mcp = mcp or (lambda: {})

    @property
    def agent(self) -> str:
        p = self.make_pod()
        return f"{p.namespace}/Deployment/{p.workload[1].rsplit('-', 1)[0]}" if p.workload \
            else f"{p.namespace}/Pod/{p.name}"


def _spread(rng: random.Random, start: float, end: float, gap: tuple[float, float]
            ) -> list[float]:
    out, t = [], start + rng.uniform(5, gap[0])
    while t < end:
        out.append(round(t, 3))
        t += rng.uniform(*gap)
    return out


# -- support bot ------------------------------------------------------------------------
def support_pod() -> PodDef:
    return pod("support", "support", "support-bot", "7d9f8c", "x2kq9", "support-bot",
               provider="openai", tools=["http", "query_db"], mcp=CRM,
               system="You are Acme's support agent. Resolve the ticket.")


TOPICS = {
    "refund": "I was charged twice for order {o}. Please refund one charge.",
    "shipping": "Where is my order {o}? It has not arrived yet.",
    "login": "I cannot log in to my account since yesterday.",
    "address": "Please change the delivery address of order {o} to 12 Rue Neuve, Lyon.",
}


def support_turns(rng: random.Random, ticket: int, topic: str, crm: str = CRM
                  ) -> list[dict[str, Any]]:
    customer = rng.randint(1, 200)
    turns = [call("http", url=f"https://helpdesk.acme.example/api/tickets/{ticket}"),
             call("lookup_customer", email=f"user{customer}@mail.example")]
    if topic in ("refund", "shipping", "address"):
        turns.append(call("query_db", sql="SELECT id, status, total FROM orders WHERE "
                                          f"customer_id = {customer}"))
    reply = {"refund": "We refunded the duplicate charge.", "shipping": "Your order ships "
             "tomorrow.", "login": "We reset your login; check your email.",
             "address": "The address is updated."}[topic]
    turns += [call("reply_ticket", ticket_id=ticket, body=reply), text(reply)]
    return turns


def support_setup(rec: Recording, rng: random.Random, key: str = "support") -> None:
    seed_db(rec.home[key] / "app.db", rng)
    tickets: dict[int, dict[str, Any]] = getattr(rec, "tickets", {})
    rec.tickets = tickets  # type: ignore[attr-defined]

    def helpdesk(req: Request) -> Response:
        ticket = int(req.path.rstrip("/").rsplit("/", 1)[-1] or 0) if req.path.rsplit(
            "/", 1)[-1].isdigit() else 0
        doc = tickets.get(ticket) or {"id": ticket, "subject": "Question", "body": "Hello"}
        return Response.json(doc)
    rec.world.host("helpdesk.acme.example", helpdesk)


def support_activities(rng: random.Random, start: float, end: float,
                       key: str = "support", crm: str = CRM) -> list[Activity]:
    out = []
    for t in _spread(rng, start, end, (180, 420)):
        ticket = rng.randint(1000, 9999)
        topic = rng.choice(list(TOPICS))
        body = TOPICS[topic].format(o=rng.randint(10000, 99999))

        def add_ticket(rec: Recording, ticket: int = ticket, topic: str = topic,
                       body: str = body) -> None:
            rec.tickets[ticket] = {"id": ticket, "subject": topic, "body": body}  # type: ignore[attr-defined]
        out.append(Activity(t, key, f"Handle helpdesk ticket {ticket}",
                            support_turns(rng, ticket, topic, crm), action=add_ticket))
    return out


# -- RAG bot over a changing document store ---------------------------------------------
def rag_pod() -> PodDef:
    return pod("rag", "docs", "rag-bot", "5b6c7d", "p9f2m", "rag-bot", provider="anthropic",
               tools=["list_dir", "read_file", "http", "write_file"],
               system="Answer from the company documents.")


def rag_setup(rec: Recording, rng: random.Random) -> None:
    docs = rec.home["rag"] / "docs"
    docs.mkdir()
    for i in range(12):
        (docs / f"{rng.choice(WORDS)}-{i}.md").write_text(f"# Policy {i}\n" + "text " * 40)


def rag_activities(rng: random.Random, start: float, end: float) -> list[Activity]:
    out = []
    known = 12
    for n, t in enumerate(_spread(rng, start, end, (200, 500))):
        if n % 6 == 5:  # the doc store changes: a sync pulls new pages from the wiki
            page = rng.randint(100, 999)
            known += 1
            out.append(Activity(t, "rag", "Sync new wiki pages", [
                call("http", url=f"https://wiki.acme.example/api/export/{page}.json"),
                call("write_file", path=f"docs/wiki-{page}.md", content=f"# Wiki {page}\n"
                     + "updated " * 30), text("Synced.")]))
            continue
        picks = rng.sample(range(known), k=rng.randint(1, 3))
        turns = [call("list_dir", path="docs")]
        turns += [call("read_file", path=f"docs/{rng.choice(WORDS)}-{p % 12}.md")
                  for p in picks]
        turns.append(text("According to the policy, yes."))
        out.append(Activity(t, "rag", f"Question about {rng.choice(WORDS)} policy", turns))
    return out


# -- coding agent -------------------------------------------------------------------------
def coder_pod() -> PodDef:
    return pod("coder", "dev", "coding-agent", "6c8d9e", "k3j7h", "coding-agent",
               provider="openai", tools=["read_file", "write_file", "run", "http"],
               system="You are a coding agent working in the repository.")


PACKAGES = ["tabulate", "humanize", "toolz", "attrs-lite", "slugify-mini", "colorama-lite"]


def coder_setup(rec: Recording, rng: random.Random) -> None:
    src = rec.home["coder"] / "src"
    src.mkdir()
    (src / "app.py").write_text("def add(a, b):\n    return a + b\n")


def coder_activities(rng: random.Random, start: float, end: float) -> list[Activity]:
    out = []
    for n, t in enumerate(_spread(rng, start, end, (240, 540))):
        name = f"task_{n}"
        value = rng.randint(2, 99)
        code = (f"from app import add\n\nprint('{name}', add({value}, {n}))\n")
        turns = [call("read_file", path="src/app.py"),
                 call("write_file", path=f"src/{name}.py", content=code),
                 call("run", command=f"cd src && python3 {name}.py")]
        roll = rng.random()
        if roll < 0.2:
            turns.insert(0, call("run", command="python3 -m pip install --quiet --target "
                                 f"vendor {rng.choice(PACKAGES)}"))
        elif roll < 0.5:
            turns.append(call("run", command="grep -rn 'def ' src | head -5"))
        elif roll < 0.7:
            turns.append(call("run", command="ls -la src && wc -l src/*.py"))
        elif roll < 0.8:
            turns.append(call("http", url="https://api.github.com/repos/acme/app/issues"))
        turns.append(text("Implemented and ran it."))
        out.append(Activity(t, "coder", f"Implement {name}", turns))
    return out


# -- data pipeline -----------------------------------------------------------------------
def pipeline_pod() -> PodDef:
    return pod("pipeline", "data", "etl-pipeline", "4a5b6c", "q8w2e", "etl-pipeline",
               provider="openai", tools=["http", "aws", "s3_sync", "write_file", "run"],
               irsa=True, system="You run the hourly ETL.")


def pipeline_setup(rec: Recording, rng: random.Random) -> None:
    rec.world.aws.objects["acme-raw"] = {
        f"daily/2026-01-01/part-{i:03d}.csv": f"id,value\n{i},{rng.random()}\n".encode()
        for i in range(24)}
    rec.world.aws.objects["customer-exports"] = {
        f"exports/{i:05d}.csv": (f"id,name,email\n{i},Customer {i},c{i}@mail.example\n"
                                 * 20).encode() for i in range(400)}
    rec.world.aws.secrets.update({"prod/db": '{"password": "s3cr3t"}',
                                  "prod/stripe": '{"key": "rk_live_x"}'})
    rec.world.aws.roles[:] = ["etl-pipeline", "admin", "support-bot", "node-role"]


def pipeline_activities(rng: random.Random, start: float, end: float) -> list[Activity]:
    out = []
    last_refresh = -1e9
    for n, t in enumerate(_spread(rng, start, end, (300, 600))):
        refresh = t - last_refresh > 3000
        if refresh:
            last_refresh = t
        base = rng.choice(["EUR", "USD", "JPY", "GBP"])
        part = rng.randint(0, 23)
        turns = [call("http", url=f"https://api.exchangerate.example/v1/latest?base={base}"),
                 call("aws", service="s3", operation="list_objects_v2",
                      params={"Bucket": "acme-raw", "Prefix": "daily/2026-01-01/"}),
                 call("aws", service="s3", operation="get_object",
                      params={"Bucket": "acme-raw",
                              "Key": f"daily/2026-01-01/part-{part:03d}.csv"})]
        if rng.random() < 0.5:
            turns.append(call("http", url=f"https://api.weather.example/v1/forecast?city="
                                          f"{rng.choice(['lyon', 'osaka', 'austin'])}"))
        turns += [call("http", url="https://warehouse.acme.example/api/load", method="POST",
                       body={"rows": rng.randint(100, 900), "base": base}),
                  text("Loaded.")]
        out.append(Activity(t, "pipeline", f"Run ETL batch {n}", turns,
                            refresh_credentials=refresh))
    return out


# -- research agent -----------------------------------------------------------------------
def research_pod() -> PodDef:
    return pod("research", "research", "research-agent", "5c7d9", "x2kq9", "research-agent",
               provider="anthropic", tools=["http", "write_file"],
               system="You research topics on the web and write notes.")


def research_setup(rec: Recording, rng: random.Random) -> None:
    (rec.home["research"] / "notes").mkdir()
    (rec.home["research"] / ".env").write_text(
        "INTERNAL_API_TOKEN=int-9f8e7d6c5b4a\nDB_URL=postgres://research:pw@db:5432/r\n")


def research_activities(rng: random.Random, start: float, end: float) -> list[Activity]:
    out = []
    for n, t in enumerate(_spread(rng, start, end, (200, 450))):
        topic = f"{rng.choice(WORDS)} {rng.choice(WORDS)}"
        turns = [call("http", url=f"https://search.example.com/api/search?q={topic}")]
        for _ in range(rng.randint(2, 4)):  # new sites all the time
            site = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}{rng.randint(1, 99)}." \
                   f"{rng.choice(TLDS)}"
            turns.append(call("http", url=f"https://{site}/articles/{rng.randint(1, 500)}"))
        turns += [call("write_file", path=f"notes/{n}.md", content=f"# {topic}\nsummary"),
                  text(f"Notes on {topic} written.")]
        out.append(Activity(t, "research", f"Research {topic}", turns))
    return out


# -- a coding-agent CLI on Node ------------------------------------------------------------
def node_coder_pod() -> PodDef:
    return pod("nodecoder", "dev", "node-coding-cli", "7e8f9a", "r2t4y", "node-coding-cli",
               provider="openai", runtime="node",
               tools=["read_file", "write_file", "run", "http"],
               system="You are a coding agent working in the repository.")


def node_coder_setup(rec: Recording, rng: random.Random) -> None:
    src = rec.home["nodecoder"] / "src"
    src.mkdir()
    (src / "app.py").write_text("def add(a, b):\n    return a + b\n")


def node_coder_activities(rng: random.Random, start: float, end: float) -> list[Activity]:
    acts = coder_activities(rng, start, end)
    for act in acts:
        act.pod = "nodecoder"
        act.turns = [t for t in act.turns if not (t.get("tool_calls") and "pip install" in
                                                   str(t["tool_calls"][0]["args"]))]
    return acts


def _crm() -> dict[str, Any]:
    return {CRM: crm_mcp()}


AGENTS: dict[str, AgentKind] = {
    "support": AgentKind("support", support_pod, support_activities,
                         lambda rec, rng: support_setup(rec, rng), _crm),
    "rag": AgentKind("rag", rag_pod, rag_activities, rag_setup),
    "coder": AgentKind("coder", coder_pod, coder_activities, coder_setup),
    "pipeline": AgentKind("pipeline", pipeline_pod, pipeline_activities, pipeline_setup),
    "research": AgentKind("research", research_pod, research_activities, research_setup),
    "nodecoder": AgentKind("nodecoder", node_coder_pod, node_coder_activities,
                           node_coder_setup),
}


def payload(doc: Any) -> str:
    return json.dumps(doc)
