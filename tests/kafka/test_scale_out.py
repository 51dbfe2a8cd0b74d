"""Two workers share the partitions; one is killed (SIGKILL: no commit, no leaving the
group) mid-incident; the survivor takes its partitions over, restores their agents'
baselines and open incidents from the changelog, and the final stories equal those of
one worker alone on the same input (on a broker of its own). The pause is measured and
printed: ``pytest tests/kafka/test_scale_out.py -s``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.events import Pod
from streams.topics import BY_AGENT, PARTITIONS, RAW_KERNEL, STORIES, TopicSpec
from tests.conftest import collect
from tests.kafka.test_worker import ATTACK, ROUTINE, SECOND, execs
from tests.kafka.workers import own_broker, scrape, wait_ready, worker
from topologies.broker import free_port
from topologies.partitions import agent_partition

pytestmark = pytest.mark.kafka
T0 = 1_763_700_000_000_000_000  # fixed: both runs see the very same input


def pods_one_per_partition(tag: str) -> list[Pod]:
    """A pod (and agent) for every raw partition, so both workers hold some."""
    pods: dict[int, Pod] = {}
    n = 0
    while len(pods) < PARTITIONS:
        uid = f"pod-{tag}-{n}"
        pods.setdefault(agent_partition(uid, PARTITIONS), Pod(
            uid=uid, namespace="so", name=f"bot-{n}", agent=f"so/Deployment/{tag}-{n}"))
        n += 1
    return [pods[p] for p in sorted(pods)]


def before_kill(pod: Pod) -> list[bytes]:
    return [execs(pod, T0, ROUTINE), execs(pod, T0 + 40 * SECOND, ATTACK[:1]),
            execs(pod, T0 + 41 * SECOND, ["/usr/bin/nc"])]


def after_kill(pod: Pod) -> list[bytes]:
    return [execs(pod, T0 + 42 * SECOND, ATTACK[1:])]


async def produce(bootstrap: str, frames: list[tuple[Pod, bytes]]) -> dict[str, float]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    sent_at: dict[str, float] = {}
    try:
        for pod, frame in frames:
            await producer.send_and_wait(RAW_KERNEL.name, frame, key=pod.uid.encode())
            sent_at[pod.uid] = time.monotonic()
    finally:
        await producer.stop()
    return sent_at


def uid_of(doc: dict[str, Any]) -> str:
    return str(doc["unmapped"]["agentstory"]["pod"]["uid"])


def final_stories(messages: list[Any], pods: list[Pod]) -> dict[str, dict[str, Any]]:
    uids = {p.uid for p in pods}
    latest: dict[str, dict[str, Any]] = {}
    for m in messages:
        doc = orjson.loads(m.value)
        if uid_of(doc) in uids:
            latest[uid_of(doc)] = doc
    return latest


def has_curl(doc: dict[str, Any]) -> bool:
    return any("curl" in orjson.dumps(s["evidence"]).decode()
               for s in doc["unmapped"]["agentstory"]["chain"])


def summary(doc: dict[str, Any]) -> tuple[Any, ...]:
    ext = doc["unmapped"]["agentstory"]
    return (doc["finding_info"]["uid"], doc["risk_score"], doc["severity"],
            [(s["kind"], s["signal"], s.get("count", 1)) for s in ext["chain"]])


def noted(messages: list[Any], pods: list[Pod], arrived: dict[str, float]) -> bool:
    """Notes when each pod's story first carried the curl step; True once all did."""
    for uid, doc in final_stories(messages, pods).items():
        if has_curl(doc):
            arrived.setdefault(uid, time.monotonic())
    return len(arrived) == len(pods)


def raw_partitions(port: int, topic: str = RAW_KERNEL.name) -> set[int]:
    lag = scrape(port).get("agentstory_worker_consumer_lag", {})
    return {int(dict(k)["partition"]) for k in lag if dict(k)["topic"] == topic}


def wait_split(ports: list[int], procs: list[subprocess.Popen[bytes]],
               timeout_s: float = 120) -> list[set[int]]:
    """Until every worker is ready and they hold the raw partitions between them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for port, proc in zip(ports, procs, strict=True):
            wait_ready(port, proc, timeout_s=timeout_s)
        held = [raw_partitions(p) for p in ports]
        if all(held) and set().union(*held) == set(range(PARTITIONS)) and \
                sum(map(len, held)) == PARTITIONS:
            return held
        time.sleep(1)
    raise AssertionError(f"the workers never split the partitions: {held}")


def test_two_workers_one_killed_the_survivor_restores_and_the_stories_match_one_worker(
        tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    app_id = f"agentstory-scale-{tag}"
    pods = pods_one_per_partition(tag)

    # -- the reference: one worker alone, all the input, no kill ------------------------
    (tmp_path / "one").mkdir()
    with own_broker(tmp_path / "one", app_id) as bootstrap, \
            worker(bootstrap, tmp_path / "one" / "worker.log", app_id):
        asyncio.run(produce(bootstrap, [(p, f) for p in pods for f in before_kill(p)]))
        asyncio.run(collect(bootstrap, [STORIES.name], lambda ms: len(
            final_stories(ms, pods)) == len(pods), timeout_s=120))
        sent_at = asyncio.run(produce(bootstrap, [(p, f) for p in pods for f in after_kill(p)]))
        arrived: dict[str, float] = {}
        messages = asyncio.run(collect(bootstrap, [STORIES.name], lambda ms: noted(
            ms, pods, arrived), timeout_s=180))
    late_alone = max(arrived[p.uid] - sent_at[p.uid] for p in pods)
    expected = final_stories(messages, pods)
    assert len(expected) == len(pods) and all(map(has_curl, expected.values()))

    # -- two workers, one killed mid-incident ---------------------------------------------
    (tmp_path / "two").mkdir()
    ports = [free_port(), free_port()]
    with own_broker(tmp_path / "two", app_id) as bootstrap, \
            worker(bootstrap, tmp_path / "two" / "a.log", app_id,
                   "--metrics-port", str(ports[0])) as a, \
            worker(bootstrap, tmp_path / "two" / "b.log", app_id,
                   "--metrics-port", str(ports[1])) as b:
        held_a, held_b = wait_split(ports, [a, b])
        asyncio.run(produce(bootstrap, [(p, f) for p in pods for f in before_kill(p)]))
        # Every incident open (a story each) and, so the survivor has state to restore,
        # the changelog holds both workers' agents.
        asyncio.run(collect(bootstrap, [STORIES.name], lambda ms: len(
            final_stories(ms, pods)) == len(pods), timeout_s=120))
        # Whose state (by-agent partition) the killed worker held; whose frames and state
        # were both on the survivor.
        state_a = raw_partitions(ports[0], BY_AGENT.name)
        killed = [p for p in pods if agent_partition(p.agent, PARTITIONS) in state_a]
        untouched = [p for p in pods if agent_partition(p.agent, PARTITIONS) not in state_a
                     and agent_partition(p.uid, PARTITIONS) not in held_a]
        assert killed, state_a
        before = scrape(ports[1])
        os.killpg(a.pid, signal.SIGKILL)
        killed_wall = time.time()
        a.wait(10)
        sent_at = asyncio.run(produce(bootstrap, [(p, f) for p in pods for f in after_kill(p)]))
        arrived = {}
        took_over: list[float] = []

        def done(ms: list[Any]) -> bool:
            """Notes the stories as they come and when the survivor holds every partition
            and is ready again (the same poll, every half second)."""
            m = scrape(ports[1])
            if not took_over and m["agentstory_worker_ready"][()] == 1 and m[
                    "agentstory_worker_assigned_partitions"].get(
                    (("topic", RAW_KERNEL.name),)) == PARTITIONS:
                took_over.append(m["agentstory_worker_last_rebalance_timestamp_seconds"][()])
            return noted(ms, pods, arrived) and bool(took_over)

        messages = asyncio.run(collect(bootstrap, [STORIES.name], done, timeout_s=180))
        assert b.poll() is None and took_over, "the survivor never took every partition"
        after = scrape(ports[1])
    got = final_stories(messages, pods)
    assert {u: summary(d) for u, d in got.items()} == {u: summary(d) for u, d in
                                                      expected.items()}

    pause = took_over[0] - killed_wall
    late_killed = max(arrived[p.uid] - sent_at[p.uid] for p in killed)
    late_untouched = max((arrived[p.uid] - sent_at[p.uid] for p in untouched), default=-1)
    rebalance = (after["agentstory_worker_rebalance_seconds_sum"][()] -
                 before["agentstory_worker_rebalance_seconds_sum"][()])
    print(f"\nscale-out: {PARTITIONS} partitions, worker A held {sorted(held_a)}, "
          f"B {sorted(held_b)}; SIGKILL A -> B holds all and is ready after {pause:.1f} s; "
          f"B's own rebalance pauses summed {rebalance:.1f} s; the curl step's story "
          f"version came at most {late_killed:.1f} s after its frame for the {len(killed)} "
          f"agents whose state A held, {late_untouched:.1f} s for the {len(untouched)} "
          f"whose frames and state B held (-1: none); one worker alone: {late_alone:.1f} s")


async def test_agent_partition_is_where_the_producer_puts_the_key(kafka_bootstrap: str) -> None:
    """The tick walks only its partition's agents by this function: it must agree with
    the producer's partitioner, or states land in another worker's changelog partition."""
    from streams.admin import ensure_topics

    topic = TopicSpec(f"test.partitioner.{uuid.uuid4().hex[:8]}", BY_AGENT.partitions,
                      "agent", "delete", 60_000, "test")
    await ensure_topics(kafka_bootstrap, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for n in range(40):
            agent = f"ns-{n}/Deployment/agent-{uuid.uuid4().hex[:6]}"
            meta = await producer.send_and_wait(topic.name, b"{}", key=agent.encode())
            assert meta.partition == agent_partition(agent, BY_AGENT.partitions)
    finally:
        await producer.stop()
