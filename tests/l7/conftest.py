"""Fixtures shared by the live L7 capture tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from collectors.cgroups import find_cgroup2_mount
from collectors.kernel.sandbox import FakePod

from .tls_fixture import kube_cgroup


@pytest.fixture()
def pod_cgroup() -> Iterator[FakePod]:
    """A kubelet-shaped pod cgroup, removed after the test."""
    with kube_cgroup(find_cgroup2_mount()) as cg:
        yield cg
