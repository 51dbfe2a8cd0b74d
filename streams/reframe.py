"""The route's by-agent output, under the message size limit.

One raw frame's events of one agent become one by-agent message, unless that would not
fit under the limit: then they are split into several, in order. Part 0 keeps the raw
origin; part ``i > 0`` carries the origin topic ``<topic>#<i>``, so the engine's per-origin
high-water mark (which skips a re-delivered message) keeps one sequence per part index
and a re-delivered frame skips each part it already applied, not the parts after the
first. An event that does not fit on its own comes back apart, to be dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.byagent import encode_message
from streams.engine import Message
from streams.events import Envelope
from streams.limits import Oversized, split_for_limit

__all__ = ["Reframed", "reframe"]


@dataclass(frozen=True, slots=True)
class Reframed:
    values: list[bytes]  # by-agent messages, each under the budget
    alone: list[tuple[Envelope, str, int]]  # (event, raw ref, encoded size) too big alone


def reframe(events: list[Envelope], refs: list[str], origin: tuple[str, int, int] | None,
            watermarks: dict[str, int], budget: int) -> Reframed:
    whole = encode_message(Message(events, origin, watermarks, refs))
    if len(whole) <= budget:
        return Reframed([whole], [])
    part_origin = (f"{origin[0]}#99999", origin[1], origin[2]) if origin else None
    overhead = len(encode_message(Message([], part_origin, watermarks, ["x"]))) + 16
    chunks, alone = split_for_limit(events, refs, budget, overhead=overhead)
    values = []
    for i, (chunk, ids) in enumerate(chunks):
        at = origin if origin is None or i == 0 else (f"{origin[0]}#{i}", origin[1], origin[2])
        value = encode_message(Message(chunk, at, watermarks, ids))
        if len(value) > budget:  # cannot happen when the per-event sums hold
            raise Oversized(f"oversized: a re-framed part of {len(value)} bytes")
        values.append(value)
    return Reframed(values, alone)
