"""Typed kernel events → wire envelopes (pure: no bcc, no IO).

The kernel stamps events with CLOCK_MONOTONIC (``bpf_ktime_get_ns``); the envelope
contract wants epoch nanoseconds. The loader measures the offset between the two clocks
once at start (:func:`monotonic_to_epoch_offset`) and every conversion adds it, so event
order and spacing are the kernel's, not the poll loop's.
"""

from __future__ import annotations

import time
from typing import Any

from collectors.kernel.decode import CgroupMkdirEvent, ExecEvent, ExitEvent, Header
from streams.events import Envelope, Pod, Proc

__all__ = ["exec_envelope", "exit_envelope", "monotonic_to_epoch_offset", "proc_of"]


def monotonic_to_epoch_offset() -> int:
    """epoch ns minus CLOCK_MONOTONIC ns, taken as the middle of two wall-clock reads so the
    error is at most half the (sub-microsecond) gap between them."""
    before = time.time_ns()
    mono = time.monotonic_ns()
    after = time.time_ns()
    return (before + after) // 2 - mono


def proc_of(h: Header, *, exe: str = "", ppid: int | None = None) -> Proc:
    """The acting process. ``start_ns`` stays on the kernel's monotonic clock (boot
    relative), so ``node:start_ns:pid`` names one process across pid reuse."""
    return Proc(
        pid=h.pid, ppid=h.ppid if ppid is None else ppid, tid=h.tid, uid=h.uid,
        comm=h.comm, exe=exe, start_ns=h.start_ns,
    )


def exec_envelope(
    ev: ExecEvent, *, node: str, pod: Pod | None, offset_ns: int, ppid: int | None = None,
) -> Envelope:
    data: dict[str, Any] = {
        "argv": ev.argv, "filename": ev.filename, "cgroup_id": ev.header.cgroup_id,
    }
    if ev.parent_comm:
        data["parent_comm"] = ev.parent_comm
    if ev.argv_truncated:
        data["argv_truncated"] = True
    if ev.argv_missing:
        data["argv_missing"] = True
    return Envelope(
        kind="process.exec", ts=ev.header.ts + offset_ns, node=node, source="kernel",
        data=data, pod=pod, proc=proc_of(ev.header, exe=ev.filename, ppid=ppid),
    )


def exit_envelope(
    ev: ExitEvent, *, node: str, pod: Pod | None, offset_ns: int, exe: str = "",
) -> Envelope:
    data: dict[str, Any] = {"cgroup_id": ev.header.cgroup_id}
    if ev.exit_code is not None:
        data["exit_code"] = ev.exit_code
    if ev.signal is not None:
        data["signal"] = ev.signal
    if ev.lifetime_ns is not None:
        data["lifetime_ns"] = ev.lifetime_ns
    return Envelope(
        kind="process.exit", ts=ev.header.ts + offset_ns, node=node, source="kernel",
        data=data, pod=pod, proc=proc_of(ev.header, exe=exe),
    )


def cgroup_path(ev: CgroupMkdirEvent) -> str:
    """The path as the resolver keys it: relative to the v2 root, leading slash."""
    return ev.path if ev.path.startswith("/") else "/" + ev.path
