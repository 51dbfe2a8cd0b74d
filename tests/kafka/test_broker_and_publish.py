"""The embedded broker, topic creation and the framed publisher against a real broker."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from collectors.publish import FramePublisher
from streams.admin import TopicMismatch, ensure_topics
from streams.events import Envelope, Pod, decode_frame
from streams.topics import TopicSpec
from topologies.broker import BrokerError, EmbeddedBroker, free_port

pytestmark = pytest.mark.kafka


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BrokerError, match=f"port {port} .* is taken"):
            EmbeddedBroker(port=port).start()


def test_broker_starts_and_stops_cleanly(tmp_path: Path) -> None:
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    with broker, socket.create_connection(("127.0.0.1", broker.port), timeout=2):
        pass
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", broker.port), timeout=1).close()
    assert "tansu" in (tmp_path / "tansu.log").read_text()


async def test_topic_creation_is_idempotent_and_checks_partitions(kafka_bootstrap: str) -> None:
    name = f"test.admin.{uuid.uuid4().hex[:8]}"
    spec = TopicSpec(name, 3, "k", "delete", 60_000, "test")
    assert await ensure_topics(kafka_bootstrap, [spec]) == [name]
    assert await ensure_topics(kafka_bootstrap, [spec]) == []
    with pytest.raises(TopicMismatch, match=f"{name} has 3 partitions.*says 5"):
        await ensure_topics(kafka_bootstrap, [TopicSpec(name, 5, "k", "delete", 1, "x")])


async def read_frames(bootstrap: str, topic: str, want: int) -> dict[bytes, list[int]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    got: dict[bytes, list[int]] = {}
    try:
        async with asyncio.timeout(30):
            while sum(map(len, got.values())) < want:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    for message in batch:
                        events = decode_frame(message.value).events
                        assert {e.key.encode() for e in events} == {message.key}
                        got.setdefault(message.key, []).extend(e.data["i"] for e in events)
    finally:
        await consumer.stop()
    return got


async def test_publisher_frames_per_key_in_order(kafka_bootstrap: str) -> None:
    topic = f"test.frames.{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, 4, "pod", "delete", 60_000, "t")])
    publisher = FramePublisher(kafka_bootstrap, topic_for=lambda e: topic, max_frame=50)
    await publisher.start()
    pods = [Pod(uid=f"pod-{i}") for i in range(3)]
    for i in range(600):
        assert publisher.submit(Envelope("file.open", i, "n", "kernel", {"i": i},
                                         pod=pods[i % 3]))
    await publisher.stop()
    assert publisher.stats.published_events == 600 and publisher.stats.spooled == 0
    assert publisher.stats.published_frames >= 12  # ≤ 50 per frame, per pod
    got = await read_frames(kafka_bootstrap, topic, 600)
    for n, pod in enumerate(pods):
        assert got[pod.uid.encode()] == list(range(n, 600, 3))


async def test_an_outage_is_spooled_bounded_and_counted_then_delivered(tmp_path: Path) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    topic = "test.outage"
    publisher = FramePublisher(bootstrap, topic_for=lambda e: topic, spool_limit=100,
                               retry_backoff_s=(0.1, 0.5))
    await publisher.start()
    for i in range(120):  # the broker is not there yet
        publisher.submit(Envelope("file.open", i, "n", "kernel", {"i": i}, pod=Pod(uid="p")))
    await asyncio.sleep(1.0)
    assert publisher.stats.spooled == 100
    assert publisher.stats.dropped_spool_full == 20
    assert publisher.stats.published_events == 0
    with EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log"):
        await ensure_topics(bootstrap, [TopicSpec(topic, 4, "pod", "delete", 60_000, "t")])
        await publisher.stop(timeout_s=30)
        assert publisher.stats.published_events == 100 and publisher.stats.spooled == 0
        got = await read_frames(bootstrap, topic, 100)
    assert got[b"p"] == list(range(100))


async def test_an_envelope_submitted_after_stop_is_counted_not_kept(kafka_bootstrap: str) -> None:
    publisher = FramePublisher(kafka_bootstrap, topic_for=lambda e: "test.late")
    await publisher.start()
    await publisher.stop()
    assert not publisher.submit(Envelope("file.open", 1, "n", "kernel", pod=Pod(uid="p")))
    assert publisher.stats.dropped_on_stop == 1 and publisher.stats.spooled == 0


async def test_a_broker_without_idempotence_is_probed_once_and_said_at_info(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """tansu refuses aiokafka's InitProducerId: an expected answer, not an error line."""
    caplog.set_level(logging.DEBUG)
    with EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log") as broker:
        await ensure_topics(broker.bootstrap_servers,
                            [TopicSpec("test.idem", 4, "pod", "delete", 60_000, "t")])
        for n in range(2):  # the second publisher does not probe again
            publisher = FramePublisher(broker.bootstrap_servers, topic_for=lambda e: "test.idem")
            await publisher.start()
            publisher.submit(Envelope("file.open", n, "n", "kernel", {"i": n}, pod=Pod(uid="p")))
            await publisher.stop()
            assert publisher.stats.published_events == 1 and not publisher.idempotent
        got = await read_frames(broker.bootstrap_servers, "test.idem", 2)
    assert got[b"p"] == [0, 1]
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], [r.getMessage() for r in loud]
    said = [r for r in caplog.records if "idempotent" in r.getMessage()]
    assert [(r.name, r.levelname) for r in said] == [("collectors.publish", "INFO")]


async def test_frames_stay_under_the_size_limit_and_an_oversized_event_is_dead_lettered(
        kafka_bootstrap: str) -> None:
    """500 events of 10 KB (one frame by count, 5 MB by size) go out as several frames
    under the limit; an event over the limit on its own goes to the dead-letter topic cut
    and hashed instead of failing the flush forever."""
    import hashlib

    from streams.limits import SizeLimits
    from streams.topics import DEADLETTER

    topic = f"test.sizes.{uuid.uuid4().hex[:8]}"
    uid = f"pod-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, 4, "pod", "delete", 60_000, "t")])
    publisher = FramePublisher(kafka_bootstrap, topic_for=lambda e: topic)
    await publisher.start()
    for i in range(500):
        publisher.submit(Envelope("file.open", i, "n", "kernel", {"i": i, "pad": "p" * 10_000},
                                  pod=Pod(uid=uid)))
    huge = Envelope("process.exec", 9, "n", "kernel", {"i": -1, "argv": ["x" * 3_000_000]},
                    pod=Pod(uid=uid))
    publisher.submit(huge)
    await publisher.stop()
    budget = SizeLimits().value_bytes
    assert publisher.stats.published_events == 500 and publisher.stats.spooled == 0
    assert publisher.stats.dead_lettered_oversized == 1
    assert publisher.stats.published_frames >= 5
    got = await read_frames(kafka_bootstrap, topic, 500)
    assert got[uid.encode()] == list(range(500))
    consumer = AIOKafkaConsumer(DEADLETTER.name, bootstrap_servers=kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        letters: list[dict] = []
        async with asyncio.timeout(30):
            while not letters:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    letters += [orjson.loads(m.value) for m in batch if m.key == uid.encode()
                                and len(m.value) <= budget]
    finally:
        await consumer.stop()
    [letter] = letters
    assert (letter["stage"], letter["topic"], letter["key"]) == ("publish", topic, uid)
    assert letter["original_sha256"] == hashlib.sha256(huge.to_json()).hexdigest()
    assert letter["original_size"] == len(huge.to_json())
