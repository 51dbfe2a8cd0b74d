"""What an analyst does besides reading stories: give a verdict, read an agent's profile.

``agentstory stories resolve UID --benign|--malicious`` finds the story's agent on the
stories topic and publishes the verdict to ``agentstory.dispositions.v1`` keyed by that
agent, where the worker holding the agent's state applies it (a benign verdict closes the
story and teaches the baseline what it flagged). ``agentstory profiles show AGENT`` prints
the agent's latest baseline summary from ``agentstory.profiles.v1``.
"""

from __future__ import annotations

import contextlib
import getpass
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.kafka_config import PLAINTEXT, KafkaSecurity
from streams.limits import size_limits
from streams.topics import DISPOSITIONS, PROFILES, STORIES

__all__ = ["latest_by_key", "render_profile", "resolve_story", "show_profile"]


async def latest_by_key(bootstrap: str, topic: str, *, idle_s: float = 2.0,
                        security: KafkaSecurity = PLAINTEXT) -> dict[bytes, dict[str, Any]]:
    """The latest JSON value per key of a (compacted) topic, read until idle (tansu's end
    offsets count batches, so they cannot bound the read)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                **size_limits().consumer_kwargs(),
                                **security.aiokafka_kwargs())
    latest: dict[bytes, dict[str, Any]] = {}
    try:
        await consumer.start()  # inside: a refused connection still closes the client
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            if not batch:
                return latest
            for messages in batch.values():
                for message in messages:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        latest[message.key or b""] = orjson.loads(message.value)
    finally:
        await consumer.stop()


async def resolve_story(bootstrap: str, uid: str, verdict: str, *, note: str = "",
                        by: str = "", security: KafkaSecurity = PLAINTEXT) -> str:
    """Publish the verdict; returns the story's agent. Raises LookupError for an unknown
    story (nothing is published on a guess)."""
    stories = await latest_by_key(bootstrap, STORIES.name, security=security)
    story = stories.get(uid.encode())
    if story is None:
        raise LookupError(f"no story {uid} on {STORIES.name}")
    ext = story["unmapped"]["agentstory"]
    agent = str(ext["agent"])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                **size_limits().producer_kwargs(),
                                **security.aiokafka_kwargs())
    await producer.start()
    try:
        # The verdict is applied at the story's own event time (its last step), so a replay
        # that includes the dispositions topic learns the same thing; when it was given is
        # kept apart.
        doc = {"v": 1, "story": uid, "agent": agent, "verdict": verdict, "note": note,
               "by": by or getpass.getuser(), "ts": max(s["ts"] for s in ext["chain"]),
               "given_at": time.time_ns()}
        await producer.send_and_wait(DISPOSITIONS.name, orjson.dumps(doc), key=agent.encode())
    finally:
        await producer.stop()
    return agent


def render_profile(doc: dict[str, Any], top: int = 5) -> str:
    """An agent's baseline as an auditor reads it: phase, risk and why, what it does."""
    risk = doc.get("risk") or {}
    lines = [f"{doc['agent']}  phase {doc.get('phase')}  risk {risk.get('level')}",
             f"  seen {doc.get('first_seen')} .. {doc.get('last_seen')}, "
             f"{doc.get('events_learned')} events learned"]
    lines += [f"  risk: {reason}" for reason in risk.get("reasons") or []]
    lines += [f"  phase: {reason}" for reason in doc.get("phase_reasons") or []]
    for name, dim in sorted((doc.get("dimensions") or {}).items()):
        values = ", ".join(f"{v['value']} ({v['count']})" for v in dim.get("top", [])[:top])
        lines.append(f"  {name}: {dim.get('distinct')} values, p(new) {dim.get('p_new')}"
                     f"{' [learning]' if dim.get('learning') else ''}: {values}")
    return "\n".join(lines)


async def show_profile(bootstrap: str, agent: str, *,
                       security: KafkaSecurity = PLAINTEXT) -> dict[str, Any]:
    profiles = await latest_by_key(bootstrap, PROFILES.name, security=security)
    doc = profiles.get(agent.encode())
    if doc is None:
        known = ", ".join(sorted(k.decode() for k in profiles)) or "none"
        raise LookupError(f"no profile for {agent} (known agents: {known})")
    return doc
