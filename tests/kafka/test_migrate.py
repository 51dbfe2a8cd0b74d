"""``agentstory topics migrate``: a deployment at 4 partitions moves to 12 and its agents
keep their baselines (the next shell is a story, not something learned), on the embedded
broker (which cannot add partitions: ``--recreate``)."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from streams.events import Pod
from streams.topics import CATALOGUE, PROFILES, RAW_KERNEL, STORIES
from tests.conftest import collect
from tests.kafka.test_worker import ATTACK, ROUTINE, SECOND, execs
from tests.kafka.workers import REPO, own_broker, scrape, wait_ready, worker
from topologies.broker import free_port
from topologies.partitions import agent_partition
from topologies.worker import STATE_TABLE

pytestmark = pytest.mark.kafka


async def produce(bootstrap: str, frames: list[tuple[Pod, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for pod, frame in frames:
            await producer.send_and_wait(RAW_KERNEL.name, frame, key=pod.uid.encode())
    finally:
        await producer.stop()


async def partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
    finally:
        await admin.close()


def migrate(bootstrap: str, app_id: str, backup: Path, *extra: str
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "topologies.cli", "topics", "migrate", "--bootstrap-servers",
         bootstrap, "--app-id", app_id, "--backup", str(backup), *extra],
        env={**os.environ, "PYTHONPATH": str(REPO), "AGENTSTORY_PARTITIONS": "12"},
        capture_output=True, text=True, timeout=180)


def test_four_partitions_to_twelve_keeps_every_baseline(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    app_id = f"agentstory-migrate-{tag}"
    pods = [Pod(uid=f"pod-{tag}-{i}", namespace="mg", name=f"bot-{i}",
                agent=f"mg/Deployment/{tag}-{i}") for i in range(3)]
    t0 = time.time_ns()
    changelog = f"{app_id}-{STATE_TABLE}-changelog"
    with own_broker(tmp_path, app_id, partitions=4) as bootstrap:
        with worker(bootstrap, tmp_path / "four.log", app_id,
                    env={"AGENTSTORY_PARTITIONS": "4"}):
            asyncio.run(produce(bootstrap, [(p, execs(p, t0, ROUTINE)) for p in pods] + [
                (p, execs(p, t0 + 30 * SECOND, ["/usr/bin/python3"])) for p in pods]))
            asyncio.run(collect(bootstrap, [PROFILES.name], lambda ms: {
                m.key for m in ms if orjson.loads(m.value)["phase"] != "learning"} >= {
                p.agent.encode() for p in pods}))
            time.sleep(4)  # offsets committed

        refused = migrate(bootstrap, app_id, tmp_path / "refused.jsonl.gz")
        assert refused.returncode == 1
        assert "--recreate" in refused.stderr and "cannot add partitions" in refused.stderr
        done = migrate(bootstrap, app_id, tmp_path / "backup.jsonl.gz", "--recreate")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "3 agent states rewritten" in done.stdout
        with gzip.open(tmp_path / "backup.jsonl.gz") as backup:
            assert {orjson.loads(orjson.loads(line)["key"]) for line in backup} == {
                p.agent for p in pods}
        names = [*(s.name for s in CATALOGUE), changelog]
        assert set(asyncio.run(partition_counts(bootstrap, names)).values()) == {12}
        states = asyncio.run(collect(bootstrap, [changelog], lambda ms: len(ms) >= 3,
                                     timeout_s=30))
        assert {(orjson.loads(m.key), m.partition) for m in states} == {
            (p.agent, agent_partition(p.agent, 12)) for p in pods}

        port = free_port()
        with worker(bootstrap, tmp_path / "twelve.log", app_id, "--metrics-port", str(port),
                    env={"AGENTSTORY_PARTITIONS": "12"}) as proc:
            wait_ready(port, proc)
            assert scrape(port)["agentstory_worker_table_keys"][()] == 3
            asyncio.run(produce(bootstrap, [(p, execs(p, t0 + 40 * SECOND, ATTACK))
                                            for p in pods]))
            messages = asyncio.run(collect(bootstrap, [STORIES.name], lambda ms: {
                orjson.loads(m.value)["unmapped"]["agentstory"]["pod"]["uid"] for m in ms
            } >= {p.uid for p in pods}, timeout_s=90))
    first = {}
    for m in messages:
        doc = orjson.loads(m.value)
        first.setdefault(doc["unmapped"]["agentstory"]["pod"]["uid"], doc)
    for pod in pods:  # a story: the baseline came along (a fresh one would learn the shell)
        chain = first[pod.uid]["unmapped"]["agentstory"]["chain"]
        assert chain[0]["evidence"]["process"]["file"]["path"] == "/bin/sh"
