"""The enforcer's ring-buffer record → :class:`EnforceRecord` (pure: no bcc import).
The ctypes mirror of ``struct enforce_event`` (enforce.bpf.h) is checked against the
compiled layout by tests/enforce/test_enforce_layout.py."""

from __future__ import annotations

import ctypes
import ipaddress
from dataclasses import dataclass

__all__ = ["COUNTERS", "MODES", "OPS", "EnforceRecord", "RawEvent", "decode"]

PATH_LEN = 256
MODES = {0: "off", 1: "audit", 2: "enforce"}
OPS = {1: "connect", 2: "exec", 3: "sendmsg"}
COUNTERS = ("checked", "violations", "learned", "log_suppressed", "lost", "killed")


class RawEvent(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_uint32),
        ("mode", ctypes.c_uint32),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("ts", ctypes.c_uint64),
        ("cgroup_id", ctypes.c_uint64),
        ("pod_cgroup", ctypes.c_uint64),
        ("policy", ctypes.c_uint32),
        ("suppressed", ctypes.c_uint32),
        ("family", ctypes.c_uint16),
        ("port", ctypes.c_uint16),
        ("protocol", ctypes.c_uint32),
        ("addr", ctypes.c_uint8 * 16),
        ("comm", ctypes.c_char * 16),
        ("path", ctypes.c_char * PATH_LEN),
    ]


@dataclass(frozen=True, slots=True)
class EnforceRecord:
    op: str            # connect | sendmsg | exec
    mode: str          # audit | enforce
    pid: int
    tid: int
    ts: int            # CLOCK_MONOTONIC ns
    cgroup_id: int
    pod_cgroup: int
    policy: int
    suppressed: int
    comm: str
    address: str = ""
    port: int = 0
    protocol: str = ""
    path: str = ""


def _address(family: int, raw: bytes) -> str:
    if family == 2 or raw[:12] == b"\0" * 10 + b"\xff\xff":
        return str(ipaddress.IPv4Address(raw[12:16]))
    return str(ipaddress.IPv6Address(raw))


def decode(buf: bytes) -> EnforceRecord:
    """One record; raises ValueError on a short or unknown one."""
    if len(buf) < ctypes.sizeof(RawEvent):
        raise ValueError(f"record of {len(buf)} bytes, expected {ctypes.sizeof(RawEvent)}")
    ev = RawEvent.from_buffer_copy(buf[: ctypes.sizeof(RawEvent)])
    op = OPS.get(ev.kind)
    mode = MODES.get(ev.mode)
    if op is None or mode is None or mode == "off":
        raise ValueError(f"unknown record kind {ev.kind} / mode {ev.mode}")
    common = {
        "op": op, "mode": mode, "pid": ev.pid, "tid": ev.tid, "ts": ev.ts,
        "cgroup_id": ev.cgroup_id, "pod_cgroup": ev.pod_cgroup, "policy": ev.policy,
        "suppressed": ev.suppressed, "comm": ev.comm.decode("utf-8", "replace"),
    }
    if op == "exec":
        return EnforceRecord(**common, path=ev.path.decode("utf-8", "replace"))
    protocol = {6: "tcp", 17: "udp"}.get(ev.protocol, str(ev.protocol))
    return EnforceRecord(**common, address=_address(ev.family, bytes(ev.addr)),
                         port=ev.port, protocol=protocol)
