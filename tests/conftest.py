"""Shared fixtures: one embedded broker per test session, with the catalogue created."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from streams.admin import ensure_topics
from streams.topics import CATALOGUE
from topologies.broker import BrokerError, EmbeddedBroker, free_port
from topologies.demo import worker_process
from topologies.worker import worker_topics


def needs_root_reason() -> str | None:
    """Why root-only kernel tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to load eBPF programs and make cgroups (CI runs as root)"
    return None


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a running tansu broker with every catalogue topic created.

    Set AGENTSTORY_TEST_BOOTSTRAP to run the Kafka tests against another broker.
    """
    external = os.environ.get("AGENTSTORY_TEST_BOOTSTRAP")
    if external:
        asyncio.run(ensure_topics(external, [*CATALOGUE, *worker_topics()]))
        yield external
        return
    log = Path(tmp_path_factory.mktemp("broker")) / "tansu.log"
    try:
        broker = EmbeddedBroker(port=free_port(), log_path=log).start()
    except BrokerError as exc:
        pytest.fail(f"embedded broker did not start: {exc}")
    try:
        asyncio.run(ensure_topics(broker.bootstrap_servers, [*CATALOGUE, *worker_topics()]))
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[str]:
    """A broker of this test's own, with the catalogue topics: a worker test's new consumer
    group reads the raw topics from the beginning, and on the session broker that is every
    other test's input too (the worker holds each agent's events until every raw partition
    still being read has passed them, so that backlog would be drained first)."""
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log").start()
    try:
        asyncio.run(ensure_topics(broker.bootstrap_servers, [*CATALOGUE, *worker_topics()]))
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@contextlib.contextmanager
def running_worker(bootstrap: str, log_dir: Path, *, learning_seconds: float = 4.0,
                   min_events: int = 4, app_id: str | None = None,
                   ) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``agentstory worker`` process, by default with a consumer group of its own."""
    app_id = app_id or f"agentstory-test-{uuid.uuid4().hex[:8]}"
    log = log_dir / f"{app_id}-{uuid.uuid4().hex[:4]}.log"
    with worker_process(bootstrap, log, learning_s=learning_seconds, min_events=min_events,
                        app_id=app_id) as proc:
        yield proc
    if proc.returncode not in (0, -signal.SIGTERM):
        print(log.read_text()[-4000:])


async def collect(bootstrap: str, topics: list[str], until: Callable[[list[Any]], bool], *,
                  timeout_s: float = 90.0) -> list[Any]:
    """Messages of ``topics`` from the beginning, until ``until(messages)`` or the timeout."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    messages: list[Any] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while not until(messages) and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                messages.extend(batch)
    finally:
        await consumer.stop()
    return messages
