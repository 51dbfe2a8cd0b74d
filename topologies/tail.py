"""``agentstory stories tail``: the stories topic as a SOC analyst reads it."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from streams.kafka_config import PLAINTEXT, KafkaSecurity
from streams.limits import size_limits
from streams.topics import STORIES

__all__ = ["render_story", "tail_stories"]


def _clock(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%H:%M:%S.%f")[:-3]


def render_story(doc: dict[str, Any]) -> str:
    """A story as a timeline: severity, title, who, then each step with its reason and
    how it is tied to an earlier one (``⇐ 3 causal: lineage``, ``~ 3 temporal``)."""
    ext = (doc.get("unmapped") or {}).get("agentstory") or {}
    pod = ext.get("pod") or {}
    info = doc.get("finding_info") or {}
    techniques = [a["technique"]["uid"] for a in info.get("attacks") or []]
    techniques += [a["uid"] for a in ext.get("atlas") or []]
    lines = [
        f"[{str(doc.get('severity', '?')).upper()}] {info.get('title')}  "
        f"(story {info.get('uid')} v{ext.get('story_version', 1)})",
        f"  pod {pod.get('namespace')}/{pod.get('name') or pod.get('uid')}  "
        f"agent {ext.get('agent')}  node {ext.get('node')}  baseline {ext.get('baseline_phase')}",
        f"  techniques: {', '.join(techniques) or '-'}   risk {doc.get('risk_score', '?')}"
        f"   {str(doc.get('activity_name', '')).lower()}",
    ]
    for i, step in enumerate(ext.get("chain") or [], 1):
        link = step.get("link")
        tie = ""
        if link:
            arrow = "⇐" if link["causal"] else "~"
            tie = f"   {arrow} {link['to']} {'causal' if link['causal'] else 'temporal'}: " \
                  f"{link['type']}"
        count = f" (x{step['count']})" if step.get("count", 1) > 1 else ""
        lines.append(f"  {i}. {_clock(step['ts'])} [{step['layer']}] {step['what']}{count}{tie}")
        lines.append(f"       why: {step['why']}")
    lines += _blind_spots(ext.get("observed") or {})
    return "\n".join(lines)


def _blind_spots(observed: dict[str, Any]) -> list[str]:
    """What the collectors could not see for this pod, so silence is not read as safety."""
    out = []
    if observed.get("blind"):
        out.append(f"  not observed: {', '.join(observed['blind'])} layer(s) for this pod")
    for spot in observed.get("blind_spots") or []:
        out.append(f"  blind spot: {spot['layer']} cannot read the TLS of {spot['path']} "
                   f"({', '.join(spot['tls'])})")
    for where, lost in (observed.get("lost_events") or {}).items():
        out.append(f"  lost: {lost} events at {where}")
    return out


async def tail_stories(
    bootstrap_servers: str, *, follow: bool = False, as_json: bool = False,
    timeout_s: float = 5.0, security: KafkaSecurity = PLAINTEXT,
) -> int:
    consumer = AIOKafkaConsumer(STORIES.name, bootstrap_servers=bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                **size_limits().consumer_kwargs(),
                                **security.aiokafka_kwargs())
    try:
        await consumer.start()  # inside: a refused connection still closes the client
        while True:
            batch = await consumer.getmany(timeout_ms=int(timeout_s * 1000))
            if not batch and not follow:
                return 0
            for messages in batch.values():
                for message in messages:
                    try:
                        doc = orjson.loads(message.value)
                    except orjson.JSONDecodeError:
                        print(f"(not a story: {message.value[:80]!r})")
                        continue
                    print(message.value.decode() if as_json else render_story(doc) + "\n",
                          flush=True)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(tail_stories("127.0.0.1:9092"))
