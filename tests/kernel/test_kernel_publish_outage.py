"""The collector's publisher when the broker is away: bounded spool with retry and
counted drops, delivery once the broker is back, and the disk spool across a restart.
(No kernel needed: these drive collectors/publish.py directly.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from collectors.publish import FramePublisher
from streams.admin import ensure_topics
from streams.events import Envelope, Pod, decode_frame
from streams.topics import CATALOGUE, RAW_KERNEL
from tests.conftest import collect
from topologies.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.kafka


def _events(node: str, n: int) -> list[Envelope]:
    pod = Pod(uid=f"uid-{node}")
    return [Envelope("process.exec", 1_700_000_000_000_000_000 + i, node, "kernel",
                     {"seq": i}, pod=pod) for i in range(n)]


async def _seqs(bootstrap: str, node: str, want: int) -> list[int]:
    def mine(messages: list) -> list[int]:
        return [e.data["seq"] for m in messages for e in decode_frame(m.value).events
                if e.node == node]

    messages = await collect(bootstrap, [RAW_KERNEL.name], lambda ms: len(mine(ms)) >= want,
                             timeout_s=30)
    return mine(messages)


async def _wait(predicate, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_broker_down_then_up_spools_drops_counted_and_delivers(tmp_path: Path) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    node = f"outage-{port}"
    publisher = FramePublisher(bootstrap, spool_limit=60, retry_backoff_s=(0.1, 0.5))
    await publisher.start()
    broker = None
    try:
        accepted = [publisher.submit(e) for e in _events(node, 70)]
        assert accepted.count(True) == 60
        assert publisher.stats.dropped_spool_full == 10
        await asyncio.sleep(1.0)  # a few failed attempts
        assert publisher.stats.published_events == 0 and publisher.stats.spooled == 60
        broker = EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log").start()
        await ensure_topics(bootstrap, list(CATALOGUE))
        await _wait(lambda: publisher.stats.published_events == 60)
        assert publisher.stats.spooled == 0
        assert sorted(await _seqs(bootstrap, node, 60)) == list(range(60))
    finally:
        await publisher.stop(timeout_s=5)
        if broker is not None:
            broker.stop()


async def test_stop_while_broker_down_keeps_spool_on_disk_for_next_start(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    dead = f"127.0.0.1:{free_port()}"
    node = f"restart-{time.monotonic_ns()}"
    first = FramePublisher(dead, spool_dir=spool, retry_backoff_s=(0.1, 0.5))
    await first.start()
    for event in _events(node, 25):
        assert first.submit(event)
    await first.stop(timeout_s=1)
    assert first.stats.spilled_to_disk == 25 and first.stats.dropped_on_stop == 0
    assert first.stats.spooled == 0
    assert list(spool.glob("*.frames"))

    second = FramePublisher(kafka_bootstrap, spool_dir=spool)
    await second.start()
    try:
        assert second.stats.restored_from_disk == 25
        assert not list(spool.glob("*.frames"))
        await _wait(lambda: second.stats.published_events >= 25)
    finally:
        await second.stop()
    assert sorted(await _seqs(kafka_bootstrap, node, 25)) == list(range(25))


async def test_stop_while_broker_down_without_disk_counts_the_drop() -> None:
    publisher = FramePublisher(f"127.0.0.1:{free_port()}", retry_backoff_s=(0.1, 0.5))
    await publisher.start()
    for event in _events("nodisk", 12):
        publisher.submit(event)
    await publisher.stop(timeout_s=1)
    assert publisher.stats.dropped_on_stop == 12 and publisher.stats.spooled == 0


async def test_disk_spool_is_bounded(tmp_path: Path) -> None:
    publisher = FramePublisher(f"127.0.0.1:{free_port()}", spool_dir=tmp_path, max_frame=10,
                               spool_dir_limit_bytes=2_000, retry_backoff_s=(0.1, 0.5))
    await publisher.start()
    for event in _events("bounded", 100):
        publisher.submit(event)
    await publisher.stop(timeout_s=1)
    stats = publisher.stats
    assert stats.spilled_to_disk + stats.dropped_on_stop == 100
    assert 0 < stats.spilled_to_disk < 100
    assert sum(p.stat().st_size for p in tmp_path.glob("*.frames")) <= 2_000
