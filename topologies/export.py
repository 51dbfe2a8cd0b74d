"""``agentstory export`` / ``import``: raw topics to and from JSONL, frames kept.

One line per Kafka message: ``{"topic", "partition", "offset", "timestamp" (ms), "key",
"frame"}`` where ``frame`` is the message value as JSON (a raw-topic frame: an array of
envelopes) or, for a value that is not JSON, ``"value_b64"``. The recordings under
tests/recordings use the same lines (without partition and offset), so a recording can be
imported into any cluster, and an export can be attached to a bug report and replayed.

A time range is selected by message timestamp: ``offsets_for_times`` gives each
partition's first offset at or after ``since``; messages at or after ``until`` are
skipped. The end of a topic is found by reading until idle: tansu's end offsets count
record batches, not records, so they cannot bound the read.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import gzip
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.admin import ensure_topics
from streams.kafka_config import PLAINTEXT, KafkaSecurity
from streams.limits import size_limits
from streams.topics import CATALOGUE, PARTITIONS, RAW_TOPICS, TopicSpec

__all__ = ["export_topics", "import_jsonl", "parse_time", "read_lines", "read_messages"]


def parse_time(value: str | None) -> int | None:
    """``2026-01-01T00:00:00Z`` or epoch milliseconds → epoch milliseconds."""
    if value is None or value == "":
        return None
    if value.isdigit():
        return int(value)
    dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.UTC)
    return int(dt.timestamp() * 1000)


def _line(msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
                           "timestamp": msg.timestamp,
                           "key": msg.key.decode(errors="replace") if msg.key else None}
    try:
        out["frame"] = orjson.loads(msg.value)
    except (orjson.JSONDecodeError, TypeError):
        out["value_b64"] = base64.b64encode(msg.value or b"").decode()
    return out


@contextlib.contextmanager
def _open(path: Path, mode: str) -> Iterator[Any]:
    with open(path, mode) as raw:
        if path.suffix != ".gz":
            yield raw
            return
        # no name and no time in the gzip header: the same input gives the same bytes
        with gzip.GzipFile(filename="", mode=mode, fileobj=raw, mtime=0) as fh:
            yield fh


async def read_messages(bootstrap: str, topics: list[str], *, start_ms: int | None = None,
                        end_ms: int | None = None, idle_timeout_s: float = 3.0,
                        security: KafkaSecurity = PLAINTEXT) -> AsyncIterator[Any]:
    """The messages of ``topics`` whose timestamp is in [start, end), from the first one
    at or after ``start`` (offsets_for_times) until none came for ``idle_timeout_s``
    (tansu's end offsets count record batches, so they cannot bound the read). No
    consumer group: a live worker is untouched."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                **size_limits().consumer_kwargs(),
                                **security.aiokafka_kwargs())
    try:
        await consumer.start()  # inside: a refused connection still closes the client
        parts = [TopicPartition(t, p) for t in topics
                 for p in sorted(consumer.partitions_for_topic(t) or [])]
        if not parts:
            return
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        if start_ms is not None:
            found = await consumer.offsets_for_times({tp: start_ms for tp in parts})
            ends = await consumer.end_offsets(parts)
            for tp in parts:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit is not None else ends[tp])
        last = time.monotonic()
        while time.monotonic() - last < idle_timeout_s:
            batch = await consumer.getmany(timeout_ms=300)
            for messages in batch.values():
                last = time.monotonic()
                for msg in messages:
                    if start_ms is not None and msg.timestamp < start_ms:
                        continue
                    if end_ms is not None and msg.timestamp >= end_ms:
                        continue
                    yield msg
    finally:
        await consumer.stop()


async def export_topics(bootstrap: str, out: Path, *, topics: list[str] | None = None,
                        start_ms: int | None = None, end_ms: int | None = None,
                        idle_timeout_s: float = 3.0, progress: bool = False,
                        security: KafkaSecurity = PLAINTEXT) -> int:
    """Write the messages of ``topics`` (default: the raw topics) in [start, end) to
    ``out``; returns how many."""
    from tqdm import tqdm

    names = topics or [t.name for t in RAW_TOPICS]
    n = 0
    with tqdm(desc="export", unit="msg", disable=not progress) as bar, _open(out, "wb") as fh:
        async for msg in read_messages(bootstrap, names, start_ms=start_ms, end_ms=end_ms,
                                       idle_timeout_s=idle_timeout_s, security=security):
            fh.write(orjson.dumps(_line(msg)) + b"\n")
            n += 1
            bar.update(1)
    return n


def read_lines(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        with _open(path, "rb") as fh:
            for raw in fh:
                if raw.strip():
                    yield orjson.loads(raw)


def _note_end(ends: dict[TopicPartition, int], sent: Any) -> None:
    if not sent.cancelled() and sent.exception() is None:
        meta = sent.result()
        tp = TopicPartition(meta.topic, meta.partition)
        ends[tp] = max(ends.get(tp, 0), meta.offset + 1)


async def import_jsonl(bootstrap: str, paths: list[Path], *,
                       topic_map: dict[str, str] | None = None, progress: bool = False,
                       security: KafkaSecurity = PLAINTEXT,
                       ends: dict[TopicPartition, int] | None = None) -> int:
    """Produce every line of ``paths`` with its key, value and timestamp; topics of the
    catalogue are created with its partition count, others with the raw topics' count.
    ``ends``, when given, receives each partition's offset after the last line sent."""
    from tqdm import tqdm

    topic_map = topic_map or {}
    known = {t.name: t for t in CATALOGUE}
    wanted: dict[str, TopicSpec] = {}
    for line in read_lines(paths):
        src = line["topic"]
        dst = topic_map.get(src, src)
        if dst not in wanted:
            wanted[dst] = known.get(dst) or TopicSpec(dst, PARTITIONS, "as exported", "delete",
                                                       -1, "imported")
    await ensure_topics(bootstrap, list(wanted.values()), security=security)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                **size_limits().producer_kwargs(),
                                **security.aiokafka_kwargs())
    await producer.start()
    n = 0
    bar = tqdm(desc="import", unit="msg", disable=not progress)
    try:
        for line in read_lines(paths):
            value = orjson.dumps(line["frame"]) if "frame" in line else \
                base64.b64decode(line.get("value_b64", ""))
            key = line.get("key")
            sent = await producer.send(topic_map.get(line["topic"], line["topic"]), value,
                                       key=key.encode() if key is not None else None,
                                       timestamp_ms=line.get("timestamp"))
            if ends is not None:
                sent.add_done_callback(lambda f: _note_end(ends, f))
            n += 1
            bar.update(1)
        await producer.flush()
    finally:
        bar.close()
        await producer.stop()
    return n
