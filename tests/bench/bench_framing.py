"""Naive (one message per event) vs framed (one message per batch per pod), side by side.

Both variants publish the same envelopes to the embedded broker and are drained by the
same Faust agent that decodes frames; only the message granularity differs.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import orjson
from aiokafka import AIOKafkaProducer

from streams.admin import ensure_topics
from streams.events import Envelope, Pod, Proc, encode_frame
from streams.topics import PARTITIONS, TopicSpec
from topologies.broker import EmbeddedBroker, free_port

EVENTS = int(os.environ.get("BENCH_FRAMING_EVENTS", "40000"))
PODS = 20
FRAME = 200
COMMAND = ".venv/bin/python -m tests.bench.bench_framing"


def envelopes() -> list[Envelope]:
    pods = [Pod(uid=str(uuid.UUID(int=i)), namespace="bench", name=f"agent-{i}",
                agent=f"bench/Deployment/agent-{i % 5}") for i in range(PODS)]
    t0 = time.time_ns()
    return [Envelope("file.open", t0 + i, "node-a", "kernel",
                     {"path": f"/app/data/{i % 97}.json", "flags": ["read"]},
                     pod=pods[i % PODS], proc=Proc(pid=1000 + i % 50, comm="python3"))
            for i in range(EVENTS)]


def messages(events: list[Envelope], framed: bool) -> list[tuple[bytes, bytes]]:
    if not framed:
        return [(e.key.encode(), orjson.dumps([e.to_dict()])) for e in events]
    by_key: dict[str, list[Envelope]] = {}
    for event in events:
        by_key.setdefault(event.key, []).append(event)
    return [(key.encode(), encode_frame(batch[i:i + FRAME]))
            for key, batch in by_key.items() for i in range(0, len(batch), FRAME)]


async def produce(bootstrap: str, topic: str, batch: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_request_size=8 * 1024 * 1024)
    await producer.start()
    start = time.perf_counter()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in batch]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - start


def drain(bootstrap: str, topic: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.faust_drain", bootstrap, topic, str(EVENTS),
         f"bench-drain-{uuid.uuid4().hex[:6]}"],
        capture_output=True, text=True, timeout=600)
    lines = [ln[ln.index('{"events"'):] for ln in out.stdout.splitlines() if '{"events"' in ln]
    if not lines:
        raise RuntimeError(f"drain failed (rc {out.returncode}): {out.stdout[-1500:]} "
                           f"{out.stderr[-1500:]}")
    return orjson.loads(lines[-1])


def main() -> None:
    events = envelopes()
    rows = []
    with EmbeddedBroker(port=free_port()) as broker:
        bootstrap = broker.bootstrap_servers
        for framed in (False, True):
            name = f"bench.framing.{'framed' if framed else 'naive'}.{uuid.uuid4().hex[:6]}"
            asyncio.run(ensure_topics(bootstrap, [TopicSpec(name, PARTITIONS, "pod", "delete",
                                                            3600_000, "bench")]))
            batch = messages(events, framed)
            produce_s = asyncio.run(produce(bootstrap, name, batch))
            result = drain(bootstrap, name)
            rows.append(("framed" if framed else "naive", len(batch), produce_s, result))
    print("### Framing: one Kafka message per event vs frames per pod\n")
    print(f"Command: `{COMMAND}` ({EVENTS} file.open envelopes, {PODS} pods, frames of "
          f"≤{FRAME}; embedded tansu broker; Faust agent decoding with `decode_frame`)\n")
    print("| variant | messages | produce s | produce events/s | Faust drain s | "
          "Faust events/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, count, produce_s, result in rows:
        print(f"| {name} | {count} | {produce_s:.2f} | {EVENTS / produce_s:,.0f} | "
              f"{result['seconds']:.2f} | {EVENTS / result['seconds']:,.0f} |")
    naive, framed = rows[0][3]["seconds"], rows[1][3]["seconds"]
    print(f"\nFrames cut the Faust-side time for the same events by {naive / framed:.1f}x: "
          "the per-message cost is in Faust, so the contract batches per key.\n")


if __name__ == "__main__":
    main()
