"""Worker restore time against state size: how long a worker takes from start to ready
(``/healthz`` 200: joined its group and restored its tables) when the changelog holds N
agents' states.

The states are one real agent state (the engine over the seeded support-bot scenario,
700 tickets) written under N agent names straight into the changelog topic, in the
partition and encoding Faust uses (the agent's murmur2 partition, JSON key, JSON-string
value), so the worker restores exactly what a long-running deployment would have left.
Each size gets a fresh broker. ``--store memory://`` (the default) restores the whole
changelog at every start; ``rocksdb://`` keeps the tables on disk and replays only what
it missed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from streams.admin import ensure_topics
from streams.content import load_content
from streams.engine import EngineSettings, Message, StoryEngine
from streams.topics import CATALOGUE, PARTITIONS
from tests.streams.scenario import learning
from topologies.broker import EmbeddedBroker, free_port
from topologies.partitions import agent_partition
from topologies.worker import STATE_TABLE, worker_topics

COMMAND = ".venv/bin/python -m tests.bench.bench_restore"
SIZES = [int(n) for n in os.environ.get("BENCH_RESTORE_AGENTS", "0,1000,4000").split(",")]
ROOT = Path(__file__).resolve().parents[2]


def one_state() -> dict:
    engine = StoryEngine(load_content(), EngineSettings(learning_ns=3600 * 10**9))
    state = engine.new_state("bench/Deployment/template")
    events = learning(seed=1, tickets=700)
    for i in range(0, len(events), 50):
        ts = events[i].ts
        engine.apply(state, Message(events[i:i + 50], ("raw", 0, i),
                                    {"kernel": ts, "l7": ts, "cloud": ts}))
    return state.to_dict()


async def fill(bootstrap: str, topic: str, template: dict, agents: int) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_request_size=2_000_000)
    await producer.start()
    total = 0
    try:
        for n in range(agents):
            name = f"bench/Deployment/restore-{n}"
            value = orjson.dumps(orjson.dumps({**template, "agent": name}).decode())
            total += len(value)
            await producer.send(topic, value, key=orjson.dumps(name),
                                partition=agent_partition(name, PARTITIONS))
        await producer.flush()
    finally:
        await producer.stop()
    return total


def ready_after(bootstrap: str, app_id: str, log: Path) -> tuple[float, int]:
    """Seconds from start to ready, and the agents the worker restored into its table."""
    port = free_port()
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "topologies.cli", "worker", "--bootstrap-servers", bootstrap,
         "--app-id", app_id, "--metrics-port", str(port)], cwd=log.parent,
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    try:
        while time.monotonic() - start < 600:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited; see {log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        took = time.monotonic() - start
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("not ready within 600 s")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        [keys] = [float(line.split()[-1]) for line in text.splitlines()
                  if line.startswith("agentstory_worker_table_keys ")]
        return took, int(keys)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    template = one_state()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-restore-") as tmp:
        for agents in SIZES:
            app_id = f"bench-restore-{agents}"
            with EmbeddedBroker(port=free_port(), log_path=Path(tmp) / "tansu.log") as broker:
                asyncio.run(ensure_topics(broker.bootstrap_servers,
                                          [*CATALOGUE, *worker_topics(app_id)]))
                changelog = f"{app_id}-{STATE_TABLE}-changelog"
                size = asyncio.run(fill(broker.bootstrap_servers, changelog, template, agents))
                took, restored = ready_after(broker.bootstrap_servers, app_id,
                                             Path(tmp) / f"{agents}.log")
            if restored != agents:
                raise RuntimeError(f"restored {restored} agents of {agents}")
            rows.append((agents, size, took))
    base = rows[0][2] if rows and rows[0][0] == 0 else 0.0
    print("### Worker: restore time against state size\n")
    print(f"Command: `{COMMAND}` (BENCH_RESTORE_AGENTS={','.join(map(str, SIZES))}; "
          f"{PARTITIONS} partitions, one agent state {len(orjson.dumps(template)):,} bytes)\n")
    print("| agents in the changelog | changelog bytes | start → ready (s) | restore (s, less the "
          "empty start) | MB/s |")
    print("|---:|---:|---:|---:|---:|")
    for agents, size, took in rows:
        restore = took - base
        rate = f"{size / 2**20 / restore:.1f}" if agents and restore > 0 else "-"
        print(f"| {agents:,} | {size:,} | {took:.1f} | {restore:.1f} | {rate} |")
    print("\nEvery row checked: the ready worker's `agentstory_worker_table_keys` equals the "
          "agents written.")
    print("\nReadiness (`/healthz`) waits for the restore: a rollout with `maxUnavailable: 0` "
          "keeps the old worker serving meanwhile.")


if __name__ == "__main__":
    main()
