"""Fixtures for the kernel collector tests: a started collector (real bcc, root) and
kubelet-shaped pod cgroups that are removed even when a test fails."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from collectors.kernel.dnsmsg import build_answer

from .harness import Harness, kernel_unavailable, make_harness


@pytest.fixture(scope="session")
def kernel_ok() -> None:
    reason = kernel_unavailable()
    if reason:
        pytest.skip(f"kernel collector cannot load here: {reason}")


@pytest.fixture(scope="module")
def harness(kernel_ok: None) -> Iterator[Harness]:
    h, collector = make_harness()
    try:
        yield h
    finally:
        collector.close()


@pytest.fixture
def kernel(harness: Harness) -> Iterator[Harness]:
    """The shared collector, drained and emptied for this test; the test's pods are
    removed afterwards whatever happened."""
    harness.drain()
    harness.out.clear()
    try:
        yield harness
    finally:
        harness.cleanup()


@pytest.fixture
def resolver() -> Iterator[str]:
    """A loopback DNS resolver on 127.0.0.1:53 answering every A query with 10.1.2.3."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 53))
    except OSError as exc:
        sock.close()
        pytest.skip(f"cannot bind the test resolver on 127.0.0.1:53: {exc}")

    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                query, addr = sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            sock.sendto(build_answer(query, ["10.1.2.3"]), addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield "10.1.2.3"
    finally:
        stop.set()
        thread.join(5)  # the port is free only once no thread is inside recvfrom
        sock.close()
