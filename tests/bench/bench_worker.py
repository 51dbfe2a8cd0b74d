"""One worker process through the full topology: sustained raw-event rate and latency.

A real broker (tansu), a real ``agentstory worker`` process, raw frames produced by
aiokafka. Each variant gets a fresh worker (its own consumer group) and its own agents:
input-dependent support bots (tests/streams/scenario.py, one seed each) whose last event
is a reverse shell, a critical hit that opens a story at once. The backlog is produced as
fast as aiokafka goes; the rate is events / (time until every agent's story arrived). The
latency run then produces the realistic mix paced at half the realistic rate, its events
stamped at the time they are sent (as live collectors stamp them), with a reverse shell in
a new pod of a probe agent every second, and times produce → story on the stories topic
(wall clock: both ends are on this machine). The story comes once the kernel and L7
watermarks pass the shell: at least the sources' lateness (0.5 s) after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.admin import ensure_topics
from streams.events import Envelope, Pod, encode_frame
from streams.topics import CATALOGUE, STORIES, raw_topic_for
from tests.streams.scenario import exec_, learning
from topologies.broker import EmbeddedBroker, free_port
from topologies.demo import worker_process
from topologies.worker import worker_topics

AGENTS = int(os.environ.get("BENCH_WORKER_AGENTS", "8"))
TICKETS = int(os.environ.get("BENCH_WORKER_TICKETS", "700"))  # ~5 events each
LATENCY_S = float(os.environ.get("BENCH_WORKER_LATENCY_SECONDS", "20"))
COMMAND = ".venv/bin/python -m tests.bench.bench_worker"
SECOND = 1_000_000_000


def revshell(pod: Pod, ts: int) -> Envelope:
    shell = exec_(ts, 9000, 4300, "/bin/bash", ["bash", "-i"],
                  stdio={"stdin": {"type": "socket", "peer": "203.0.113.9:4444",
                                   "protocol": "tcp"}})
    return dataclasses.replace(shell, pod=pod)


def agent_events(tag: str, i: int) -> tuple[Pod, list[Envelope]]:
    pod = Pod(uid=str(uuid.uuid4()), namespace="bench", name=f"{tag}-{i}",
              agent=f"bench/Deployment/{tag}-{i}")
    events = [dataclasses.replace(e, pod=pod) for e in learning(seed=i, tickets=TICKETS)]
    return pod, [*events, revshell(pod, events[-1].ts + SECOND)]


def restamp(frame: bytes, now: int) -> bytes:
    """The frame's events moved to end at ``now``, their spacing kept."""
    docs = orjson.loads(frame)
    last = max(d["ts"] for d in docs)
    for d in docs:
        d["ts"] = now - (last - d["ts"])
    return orjson.dumps(docs)


def frames(events: list[Envelope], size: int | None) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, frame): per source and pod, ``size`` events a frame, or (None) what a
    collector batches: the events of one pod within one second of event time."""
    out: list[tuple[str, bytes, bytes]] = []
    groups: dict[tuple[str, str, int], list[Envelope]] = defaultdict(list)
    for n, e in enumerate(events):
        assert e.pod is not None
        bucket = e.ts // SECOND if size is None else n // size
        groups[(e.source, e.pod.uid, bucket)].append(e)
    for (source, uid, _), group in sorted(groups.items(), key=lambda kv: kv[1][0].ts):
        out.append((raw_topic_for(source).name, uid.encode(), encode_frame(group)))
    return out


async def stories_of(bootstrap: str, agents: set[str], seen: dict[str, float],
                     stop: asyncio.Event) -> None:
    """Record the wall time each agent's first story arrives."""
    consumer = AIOKafkaConsumer(STORIES.name, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        while not stop.is_set():
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                now = time.monotonic()
                for m in messages:
                    agent = orjson.loads(m.value)["unmapped"]["agentstory"]["agent"]
                    if agent in agents and agent not in seen:
                        seen[agent] = now
    finally:
        await consumer.stop()


async def drain(bootstrap: str, log_dir: Path, size: int | None, label: str) -> dict[str, float]:
    tag = f"{label}-{uuid.uuid4().hex[:6]}"
    data = [agent_events(tag, i) for i in range(AGENTS)]
    agents = {pod.agent for pod, _ in data}
    events = sorted((e for _, evs in data for e in evs), key=lambda e: e.ts)
    messages = frames(events, size)
    seen: dict[str, float] = {}
    stop = asyncio.Event()
    with worker_process(bootstrap, log_dir / f"{tag}.log", learning_s=1800, min_events=10,
                        app_id=f"bench-{tag}"):
        await asyncio.sleep(8)  # the group join (half the session timeout on tansu)
        watcher = asyncio.create_task(stories_of(bootstrap, agents, seen, stop))
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                    max_batch_size=1 << 20, max_request_size=8 << 20)
        await producer.start()
        start = time.monotonic()
        try:
            for topic, key, value in messages:
                await producer.send(topic, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()
        deadline = start + 900
        while len(seen) < len(agents) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        stop.set()
        await watcher
    if len(seen) < len(agents):
        raise RuntimeError(f"{label}: {len(agents) - len(seen)} agents never got their story")
    took = max(seen.values()) - start
    return {"events": len(events), "messages": len(messages), "seconds": took,
            "rate": len(events) / took}


async def latency(bootstrap: str, log_dir: Path, rate: float) -> list[float]:
    """Story latency of a probe agent's reverse shells while the mix runs at ``rate``."""
    tag = f"lat-{uuid.uuid4().hex[:6]}"
    data = [agent_events(tag, i) for i in range(AGENTS)]
    events = sorted((e for _, evs in data for e in evs[:-1]), key=lambda e: e.ts)
    messages = frames(events, None)
    per_message = len(events) / len(messages)
    agent = f"bench/Deployment/{tag}-probe"
    probes: set[str] = set()
    sent: dict[int, float] = {}
    got: dict[int, float] = {}
    stop = asyncio.Event()

    async def watch() -> None:
        consumer = AIOKafkaConsumer(STORIES.name, bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            while not stop.is_set():
                for batch in (await consumer.getmany(timeout_ms=100)).values():
                    now = time.monotonic()
                    for m in batch:
                        ext = orjson.loads(m.value)["unmapped"]["agentstory"]
                        if ext["pod"]["uid"] in probes:
                            got.setdefault(ext["chain"][0]["ts"], now)
        finally:
            await consumer.stop()

    with worker_process(bootstrap, log_dir / f"{tag}.log", learning_s=1800, min_events=10,
                        app_id=f"bench-{tag}"):
        await asyncio.sleep(8)
        watcher = asyncio.create_task(watch())
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
        await producer.start()
        start = time.monotonic()
        i = 0
        next_probe = start
        try:
            while time.monotonic() - start < LATENCY_S and i < len(messages):
                now = time.monotonic()
                if now >= next_probe:  # one reverse shell a second, each in a pod of its own
                    probe = Pod(uid=str(uuid.uuid4()), namespace="bench",
                                name=f"{tag}-probe-{len(sent)}", agent=agent)
                    probes.add(probe.uid)
                    ts = time.time_ns()
                    await producer.send_and_wait(raw_topic_for("kernel").name, encode_frame(
                        [revshell(probe, ts)]), key=probe.uid.encode())
                    sent[ts] = time.monotonic()
                    next_probe += 1.0
                topic, key, value = messages[i]
                # stamped now, as a live collector stamps its events: the watermarks of
                # the mix and of the probes then move together
                await producer.send(topic, restamp(value, time.time_ns()), key=key)
                i += 1
                await asyncio.sleep(max(0.0, start + i * per_message / rate - time.monotonic()))
        finally:
            await producer.stop()
        await asyncio.sleep(5)
        stop.set()
        await watcher
    return sorted(got[ts] - sent[ts] for ts in sent if ts in got)


@contextlib.asynccontextmanager
async def fresh_broker(log_dir: Path) -> AsyncIterator[str]:
    """A broker of its own per variant: a new consumer group reads the raw topics from
    the beginning, so a shared broker would replay the previous variants' input too."""
    broker = EmbeddedBroker(port=free_port(), log_path=log_dir / "tansu.log").start()
    try:
        await ensure_topics(broker.bootstrap_servers, [*CATALOGUE, *worker_topics()])
        yield broker.bootstrap_servers
    finally:
        broker.stop()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        results = {}
        for label, size in (("frames of 1", 1), ("frames of 10", 10),
                            ("frames of 100", 100), ("realistic mix", None)):
            async with fresh_broker(log_dir) as bootstrap:
                results[label] = await drain(bootstrap, log_dir, size, label.split()[0])
        async with fresh_broker(log_dir) as bootstrap:
            lat = await latency(bootstrap, log_dir, results["realistic mix"]["rate"] / 2)
    print("### Worker: sustained raw-event rate and event → story latency\n")
    print(f"Command: `{COMMAND}` ({AGENTS} agents, {TICKETS} tickets each; "
          f"BENCH_WORKER_AGENTS / _TICKETS to change)\n")
    print("| input | events | raw messages | drain time (s) | events/s |")
    print("|---|---:|---:|---:|---:|")
    for label, r in results.items():
        print(f"| {label} | {r['events']:.0f} | {r['messages']:.0f} | {r['seconds']:.1f} | "
              f"{r['rate']:,.0f} |")
    half = results["realistic mix"]["rate"] / 2
    if lat:
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]
        print(f"\nLatency at half the realistic rate ({half:,.0f} events/s), produce → story of "
              f"a reverse shell, {len(lat)} probes: p50 {p50 * 1000:.0f} ms, p99 "
              f"{p99 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms.")
    else:
        print(f"\nLatency at half the realistic rate ({half:,.0f} events/s): no probe story "
              "arrived.")
    print("\nGoals (issue 11): >= 50,000 raw events/s per worker process; p99 <= 1 s.")


if __name__ == "__main__":
    asyncio.run(main())
