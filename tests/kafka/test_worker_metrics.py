"""The worker you can watch: a real worker on the embedded broker serves /metrics and
/healthz; the exposition is read with Prometheus' own parser and every number is checked
against what the test sent and what came out on the topics."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.events import Pod
from streams.topics import DEADLETTER, RAW_KERNEL, STORIES
from tests.conftest import collect
from tests.kafka.test_worker import ATTACK, ROUTINE, SECOND, execs
from tests.kafka.workers import get, own_broker, scrape, wait_ready, worker
from topologies.broker import free_port

pytestmark = pytest.mark.kafka


def test_metrics_and_health_of_a_real_worker(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    app_id = f"agentstory-metrics-{tag}"
    pod = Pod(uid=f"pod-{tag}", namespace="t", name=f"bot-{tag}", agent=f"t/Deployment/{tag}")
    port = free_port()
    t0 = time.time_ns()
    frames = [b'[{"v": 1, "kind": "process.exec"',  # not JSON
              orjson.dumps([{"v": 1, "kind": "process.exec", "ts": "noon", "node": "n",
                             "source": "kernel", "pod": {"uid": pod.uid}}]),  # bad field
              execs(pod, t0, ROUTINE), execs(pod, t0 + 40 * SECOND, ATTACK)]
    valid_events = len(ROUTINE) + len(ATTACK)

    async def produce(bootstrap: str) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for frame in frames:
                await producer.send_and_wait(RAW_KERNEL.name, frame, key=pod.uid.encode())
        finally:
            await producer.stop()

    with own_broker(tmp_path, app_id) as bootstrap, \
            worker(bootstrap, tmp_path / "worker.log", app_id, "--metrics-port",
                   str(port)) as proc:
        seen = wait_ready(port, proc)
        # Served before the group was joined, and said so: not ready, then ready.
        assert 503 in seen and seen[-1] == 200
        assert get(f"http://127.0.0.1:{port}/livez")[0] == 200
        asyncio.run(produce(bootstrap))
        out = asyncio.run(collect(bootstrap, [STORIES.name, DEADLETTER.name], lambda ms: len(
            [m for m in ms if m.topic == STORIES.name]) >= 2 and len(
            [m for m in ms if m.topic == DEADLETTER.name]) >= 2))
        story_docs = [orjson.loads(m.value) for m in out if m.topic == STORIES.name]
        assert len(story_docs) >= 2
        # The lag timer runs every 5 s; give it one round after the last message.
        deadline = time.monotonic() + 30
        while True:
            m = scrape(port)
            lag = m.get("agentstory_worker_consumer_lag", {})
            if (lag and all(v == 0 for v in lag.values())) or time.monotonic() > deadline:
                break
            time.sleep(1)

    def one(name: str, **labels: str) -> float:
        return m[name][tuple(sorted(labels.items()))]

    kernel = RAW_KERNEL.name
    assert one("agentstory_worker_frames_in_total", topic=kernel) == len(frames)
    assert one("agentstory_worker_events_in_total", topic=kernel) == valid_events
    assert one("agentstory_worker_dead_letters_total", stage="decode", reason="not_json") == 1
    assert one("agentstory_worker_dead_letters_total", stage="decode",
               reason="invalid_field") == 1
    by_severity: dict[str, int] = {}
    for doc in story_docs:
        by_severity[doc["severity"].lower()] = by_severity.get(doc["severity"].lower(), 0) + 1
    assert {dict(k)["severity"]: v for k, v in
            m["agentstory_worker_story_versions_total"].items()} == by_severity
    assert sum(m["agentstory_worker_agents"].values()) == 1
    assert one("agentstory_worker_agents", phase="learning") == 0  # it left learning
    assert sum(m["agentstory_worker_agents_by_risk"].values()) == 1
    assert one("agentstory_worker_open_incidents", state="story") == 1
    assert one("agentstory_worker_state_bytes") > 1000
    assert one("agentstory_worker_ready") == 1
    # Every assigned input partition is listed, raw and internal, and it is caught up.
    partitions = {(dict(k)["topic"], dict(k)["partition"]) for k in lag}
    assert {(kernel, str(p)) for p in range(RAW_KERNEL.partitions)} <= partitions
    assert all(v == 0 for v in lag.values()), lag
    # One route observation per raw message (the two bad ones included).
    assert one("agentstory_worker_processing_seconds_count", stage="route") == len(frames)
    assert one("agentstory_worker_processing_seconds_count", stage="detect") >= 2
    assert one("agentstory_worker_rebalances_total") >= 1


def test_lag_is_the_high_watermark_less_the_next_offset_to_read() -> None:
    from types import SimpleNamespace

    from faust.types import TP

    from topologies.health import consumer_lag

    raw, internal, changelog = TP("raw", 0), TP("by-agent", 3), TP("x-changelog", 0)
    highwaters = {raw: 120, internal: 7, changelog: 50}
    consumer = SimpleNamespace(
        assignment=lambda: {raw, internal, changelog}, highwater=highwaters.__getitem__,
        _read_offset={raw: 99}, _committed_offset={internal: 4})
    assert consumer_lag(SimpleNamespace(consumer=consumer)) == {
        ("raw", 0): 20,  # read up to 99: 100..119 wait
        ("by-agent", 3): 2,  # nothing read since start: from the committed offset
    }
