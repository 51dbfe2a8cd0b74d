"""Fixtures for the kernel collector tests: a started collector (real bcc, root) and
kubelet-shaped pod cgroups that are removed even when a test fails."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
