"""The internal by-agent message: one raw frame's events of one agent, re-keyed by agent.

``route`` writes it, ``detect`` reads it. Besides the events it carries where they came
from (raw topic, partition, offset: the agent's state keeps a high-water mark per origin
so a re-delivered message is not applied twice), each event's raw id, and the route's
per-source watermarks (event time each source has surely reached), so incidents close and
learning proceeds on event time even when a partition is idle (heartbeats carry them).
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.engine import Message
from streams.events import Envelope, InvalidEvent

__all__ = ["decode_message", "encode_message"]


def encode_message(message: Message) -> bytes:
    doc: dict[str, Any] = {"v": 1, "events": [e.to_dict() for e in message.events],
                           "wm": message.watermarks}
    if message.origin is not None:
        doc["origin"] = list(message.origin)
    if message.refs:
        doc["refs"] = message.refs
    return orjson.dumps(doc)


def decode_message(raw: bytes) -> Message:
    """Raises InvalidEvent (the worker dead-letters it) on anything but a by-agent message."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("message", f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("v") != 1 or not isinstance(doc.get("events"), list):
        raise InvalidEvent("message", "expected a by-agent message {v: 1, events: [...]}")
    origin = doc.get("origin")
    return Message(
        events=[Envelope.from_dict(e) for e in doc["events"]],
        origin=(str(origin[0]), int(origin[1]), int(origin[2])) if origin else None,
        watermarks={str(k): int(v) for k, v in (doc.get("wm") or {}).items()},
        refs=[str(r) for r in doc.get("refs") or []],
    )
