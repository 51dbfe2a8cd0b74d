"""The route's by-agent output, under the message size limit.

One raw frame's events of one agent become one by-agent message, unless that would not
fit under the limit: then they are split into several, in order. Part 0 keeps the raw
origin; part ``i > 0`` carries the origin topic ``<topic>#<i>``, so the engine's per-origin
high-water mark (which skips a re-delivered message) keeps one sequence per part index
and a re-delivered frame skips each part it already applied, not the parts after the
first. An event that does not fit on its own, or that cannot be written back as JSON
(nested deeper than orjson writes, 254 levels, though it parsed), comes back apart with
the reason, to be dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from streams.byagent import encode_message
from streams.engine import Message
from streams.events import Envelope
from streams.limits import Oversized, split_for_limit

__all__ = ["Reframed", "reframe"]


@dataclass(frozen=True, slots=True)
class Reframed:
    values: list[bytes]  # by-agent messages, each under the budget
    alone: list[tuple[Envelope, str, str]]  # (event, raw ref, reason): dead-letter these


def reframe(events: list[Envelope], refs: list[str], origin: tuple[str, int, int] | None,
            watermarks: dict[str, int], budget: int) -> Reframed:
    try:
        whole = encode_message(Message(events, origin, watermarks, refs))
    except TypeError:  # orjson: "Recursion limit reached" on a deeply nested value
        return _without_unwritable(events, refs, origin, watermarks, budget)
    if len(whole) <= budget:
        return Reframed([whole], [])
    part_origin = (f"{origin[0]}#99999", origin[1], origin[2]) if origin else None
    overhead = len(encode_message(Message([], part_origin, watermarks, ["x"]))) + 16
    chunks, too_big = split_for_limit(events, refs, budget, overhead=overhead)
    alone = [(e, ref, f"oversized: event of {size} bytes over the {budget}-byte message limit")
             for e, ref, size in too_big]
    values = []
    for i, (chunk, ids) in enumerate(chunks):
        at = origin if origin is None or i == 0 else (f"{origin[0]}#{i}", origin[1], origin[2])
        value = encode_message(Message(chunk, at, watermarks, ids))
        if len(value) > budget:  # cannot happen when the per-event sums hold
            raise Oversized(f"oversized: a re-framed part of {len(value)} bytes")
        values.append(value)
    return Reframed(values, alone)


def _without_unwritable(events: list[Envelope], refs: list[str],
                        origin: tuple[str, int, int] | None, watermarks: dict[str, int],
                        budget: int) -> Reframed:
    keep: tuple[list[Envelope], list[str]] = ([], [])
    bad: list[tuple[Envelope, str, str]] = []
    for event, ref in zip(events, refs, strict=True):
        try:
            orjson.dumps(event.to_dict())
        except TypeError as exc:
            bad.append((event, ref, f"invalid: cannot be written as JSON ({exc}): nested "
                                    "deeper than 254 levels"))
            continue
        keep[0].append(event)
        keep[1].append(ref)
    out = reframe(keep[0], keep[1], origin, watermarks, budget) if keep[0] else Reframed([], [])
    return Reframed(out.values, bad + out.alone)
