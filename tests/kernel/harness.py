"""Helpers of the kernel collector tests: why the kernel cannot load, and a started
collector with its envelopes and pod helpers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from collectors.cgroups import CgroupResolver
from collectors.kernel.sandbox import FakePod
from collectors.pods import Attributor, PodIndex, PodInfo
from streams.events import Envelope


def kernel_unavailable() -> str | None:
    """Why the kernel tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root: loading BPF programs needs root"
    from collectors.kernel.loader import CollectorError, preflight

    try:
        preflight()
    except CollectorError as exc:
        return str(exc)
    return None


class Harness:
    """A started collector, the envelopes it emitted, and pod helpers."""

    def __init__(self, collector: Any, index: PodIndex, out: list[Envelope]) -> None:
        self.collector = collector
        self.index = index
        self.out = out
        self.created: list[FakePod] = []

    def pod(self, name: str = "agent", namespace: str = "agents", *,
            known: bool = True, **kw: Any) -> FakePod:
        """A new pod cgroup (removed at the end of the test); ``known``: its manifest is
        in the pod index."""
        pod = FakePod(name, namespace, **kw)
        self.created.append(pod)
        pod.create()
        if known:
            self.index.apply("ADDED", PodInfo.from_manifest(pod.manifest()))
        return pod

    def cleanup(self) -> None:
        for pod in reversed(self.created):
            pod.remove()
        self.created.clear()

    def drain(self) -> None:
        while self.collector.poll(50):
            pass

    def wait_for(self, predicate: Callable[[Envelope], bool], *, count: int = 1,
                 timeout_s: float = 10.0) -> list[Envelope]:
        """Poll until ``count`` emitted envelopes match (or the timeout: then what was
        found, for the assertion to report)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.collector.poll(50)
            found = [e for e in self.out if predicate(e)]
            if len(found) >= count or time.monotonic() > deadline:
                return found


def make_harness(**kwargs: Any) -> tuple[Harness, Any]:
    from collectors.kernel.loader import KernelCollector

    index = PodIndex()
    out: list[Envelope] = []
    collector = KernelCollector("test-node", Attributor(index, CgroupResolver()), out.append,
                                **kwargs)
    collector.start()
    return Harness(collector, index, out), collector


