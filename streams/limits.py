"""Message size limits: one setting, every client's sizes derived from it, and the pure
helpers that keep what we produce under it without losing input.

``AGENTSTORY_MAX_MESSAGE_BYTES`` (default 1,000,000) is the largest record agentstory
produces. It must not exceed the broker's ``message.max.bytes`` (Apache Kafka's default
is 1,048,588; a topic's ``max.message.bytes`` overrides it) or the broker refuses the
record. Every producer's ``max_request_size`` and every consumer's fetch sizes derive
from it, so a client never refuses what another one wrote. What would not fit is
re-framed (a frame split by events), cut (strings of a story), or dead-lettered with its
original bytes cut and hashed (one event larger than the limit on its own) — never sent
to fail, and never dropped in silence.

Pure: no Kafka, no Faust.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from streams.events import Envelope, Rejected, dead_letter, encode_frame

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ENV",
    "SizeLimits",
    "bounded_dead_letter",
    "fit_json",
    "frames_under",
    "size_limits",
    "split_for_limit",
]

ENV = "AGENTSTORY_MAX_MESSAGE_BYTES"
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
MIN_MESSAGE_BYTES = 64 * 1024
# Room under the limit for what Kafka adds around a value (record and batch headers, the
# key, headers): a value of at most limit - HEADROOM always fits in one record batch.
HEADROOM = 16 * 1024
AIOKAFKA_FETCH_DEFAULT = 1024 * 1024


class Oversized(ValueError):
    """Something we were about to produce does not fit under the limit."""


@dataclass(frozen=True, slots=True)
class SizeLimits:
    message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    @property
    def value_bytes(self) -> int:
        """The largest value (frame, by-agent message, story, dead letter) we produce."""
        return self.message_bytes - HEADROOM

    def producer_kwargs(self) -> dict[str, int]:
        return {"max_request_size": self.message_bytes}

    def consumer_kwargs(self) -> dict[str, int]:
        fetch = max(self.message_bytes, AIOKAFKA_FETCH_DEFAULT)
        return {"max_partition_fetch_bytes": fetch,
                "fetch_max_bytes": max(fetch, 50 * 1024 * 1024)}

    def faust_settings(self) -> dict[str, int]:
        return {"producer_max_request_size": self.message_bytes,
                "consumer_max_fetch_size": max(self.message_bytes, AIOKAFKA_FETCH_DEFAULT)}


def size_limits(env: Mapping[str, str] | None = None) -> SizeLimits:
    """The limits from ``AGENTSTORY_MAX_MESSAGE_BYTES``; a bad value is a clear error."""
    raw = (os.environ if env is None else env).get(ENV, "").strip()
    if not raw:
        return SizeLimits()
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ValueError(f"{ENV}={raw!r}: expected a number of bytes") from None
    if value < MIN_MESSAGE_BYTES:
        raise ValueError(f"{ENV}={value}: at least {MIN_MESSAGE_BYTES} bytes")
    return SizeLimits(value)


def split_for_limit(events: list[Envelope], refs: list[str], budget: int, *,
                    overhead: int) -> tuple[list[tuple[list[Envelope], list[str]]],
                                            list[tuple[Envelope, str, int]]]:
    """Group ``events`` (in order) into chunks whose encoding fits ``budget`` bytes
    beside a fixed ``overhead``; events that do not fit alone come back apart with their
    encoded size (to dead-letter).

    Sizes are summed per event (its JSON, its ref, separators), so the encoded chunk is
    at most the sum; the caller still checks the real encoding.
    """
    chunks: list[tuple[list[Envelope], list[str]]] = []
    alone: list[tuple[Envelope, str, int]] = []
    room = budget - overhead
    current: tuple[list[Envelope], list[str]] = ([], [])
    used = 0
    for event, ref in zip(events, refs, strict=True):
        size = len(orjson.dumps(event.to_dict())) + len(orjson.dumps(ref)) + 2
        if size > room:
            alone.append((event, ref, size))
            continue
        if used + size > room and current[0]:
            chunks.append(current)
            current, used = ([], []), 0
        current[0].append(event)
        current[1].append(ref)
        used += size
    if current[0]:
        chunks.append(current)
    return chunks, alone


def frames_under(events: list[Envelope], budget: int,
                 ) -> tuple[list[tuple[list[Envelope], bytes]], list[Envelope]]:
    """Raw frames of ``events`` (in order), each encoded under ``budget`` bytes, and the
    events too big for a frame of their own (for the dead-letter topic)."""
    frame = encode_frame(events)
    if len(frame) <= budget:
        return [(events, frame)], []
    frames: list[tuple[list[Envelope], bytes]] = []
    alone: list[Envelope] = []
    current: list[Envelope] = []
    used = 2  # the brackets
    for event in events:
        size = len(event.to_json()) + 1
        if size + 2 > budget:
            alone.append(event)
            continue
        if used + size > budget and current:
            frames.append((current, encode_frame(current)))
            current, used = [], 2
        current.append(event)
        used += size
    if current:
        frames.append((current, encode_frame(current)))
    return frames, alone


def _cut_text(original: bytes, keep: int) -> tuple[str, str]:
    """A prefix of ``original`` as JSON-safe text: ("original", text) when UTF-8, else
    ("original_b64", base64)."""
    import base64

    head = original[:keep]
    for trim in range(4):  # a cut may split a multi-byte character
        try:
            return "original", head[: len(head) - trim].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return "original_b64", base64.b64encode(head).decode("ascii")


def bounded_dead_letter(rejected: Rejected, budget: int, *, stage: str,
                        topic: str | None = None, partition: int | None = None,
                        offset: int | None = None, key: bytes | None = None) -> bytes:
    """:func:`streams.events.dead_letter`, always under ``budget`` bytes: when the whole
    letter would not fit, the original is cut to a prefix and the letter says so with
    the original's size and SHA-256, so it can still be found and matched."""
    if key is not None and len(key) > 1024:
        key = key[:1024]
    if len(rejected.original) * 6 + len(rejected.reason) + 2048 <= budget:
        return dead_letter(rejected, stage=stage, topic=topic, partition=partition,
                           offset=offset, key=key)  # JSON escapes at most 6x: fits
    digest = hashlib.sha256(rejected.original).hexdigest()
    reason = rejected.reason if len(rejected.reason) <= 4096 else rejected.reason[:4096] + "…"
    keep = min(len(rejected.original), max(1024, budget // 8))
    while True:
        name, text = _cut_text(rejected.original, keep)
        letter = orjson.loads(dead_letter(
            Rejected(reason, rejected.field, b"", rejected.index), stage=stage, topic=topic,
            partition=partition, offset=offset, key=key))
        letter.pop("original", None)
        letter[name] = text
        letter.update(original_size=len(rejected.original), original_sha256=digest,
                      original_truncated=keep < len(rejected.original))
        encoded = orjson.dumps(letter)
        if len(encoded) <= budget or keep <= 64:
            return encoded
        keep //= 2


def fit_json(doc: Any, budget: int) -> tuple[bytes, int]:
    """``doc`` encoded under ``budget`` bytes by cutting its longest strings (each cut
    one ends with its original length and SHA-256); returns the bytes and how many
    strings were cut. Raises :class:`Oversized` when even cut strings do not fit."""
    encoded = orjson.dumps(doc)
    if len(encoded) <= budget:
        return encoded, 0
    limit = 64 * 1024
    while limit >= 64:
        cut = [0]
        shrunk = _cut_strings(doc, limit, cut)
        encoded = orjson.dumps(shrunk)
        if len(encoded) <= budget:
            return encoded, cut[0]
        limit //= 4
    raise Oversized(f"oversized: {len(encoded)} bytes over the {budget}-byte limit "
                    "even with every string cut")


def _cut_strings(value: Any, limit: int, cut: list[int]) -> Any:
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        cut[0] += 1
        raw = value.encode("utf-8", "surrogatepass")
        return (f"{value[:limit]}…[cut: {len(raw)} bytes, "
                f"sha256 {hashlib.sha256(raw).hexdigest()}]")
    if isinstance(value, dict):
        return {k: _cut_strings(v, limit, cut) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_strings(v, limit, cut) for v in value]
    return value
