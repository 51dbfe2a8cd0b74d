"""Ring-buffer records → typed kernel events. Pure: bytes in, dataclasses out, no bcc.

Each ctypes structure mirrors a C struct of ``collectors/kernel/*.bpf.c`` /
``common.bpf.h`` field for field; ``tests/kernel/test_layout.py`` compares them with the
layout clang compiled (bcc's own ctypes view of a map value of that type), in the
spirit of Tetragon's alignchecker, so a drift fails a test instead of garbling events.

Decoding is separate from loading so that it is tested without a kernel and reused by
replay tools; :func:`decode` never raises on a short or unknown record, it returns
:class:`Undecodable` with the reason, which the loader counts.
"""

from __future__ import annotations

import ctypes
import enum
from dataclasses import dataclass, field

__all__ = [
    "ARGS_LEN",
    "COMM_LEN",
    "CgroupMkdirEvent",
    "CgroupMkdirRecord",
    "Counter",
    "EventHeader",
    "ExecEvent",
    "ExecRecord",
    "ExitEvent",
    "ExitRecord",
    "Header",
    "KernelEvent",
    "Kind",
    "Undecodable",
    "decode",
    "split_args",
]

COMM_LEN = 16
FILENAME_LEN = 256
ARGS_LEN = 1024
CGROUP_PATH_LEN = 256

EXEC_ARGV_TRUNCATED = 1
EXEC_ARGV_MISSING = 2
EXIT_CODE_KNOWN = 1
EXIT_SIGNAL_KNOWN = 2


class Kind(enum.IntEnum):
    """``EV_*`` in common.bpf.h."""

    EXEC = 1
    EXIT = 2
    CGROUP_MKDIR = 3
    OPEN = 4
    CONNECT = 5
    CLOSE = 6
    DNS = 7
    ACCEPT = 8
    LISTEN = 9


class Counter(enum.IntEnum):
    """Slots of the per-CPU ``counters`` array (``C_*`` in common.bpf.h)."""

    EMITTED = 0
    LOST = 1
    DEDUPLICATED = 2
    DEDUP_FULL = 3
    FILTERED = 4
    PODS_ADDED = 5
    PROFILE_FULL = 6


NR_COUNTERS = 8


# -- ctypes mirrors of the C structs ---------------------------------------------------
class EventHeader(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_uint32),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("ppid", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
        ("ts", ctypes.c_uint64),
        ("cgroup_id", ctypes.c_uint64),
        ("start_ns", ctypes.c_uint64),
        ("comm", ctypes.c_char * COMM_LEN),
    ]


class ExecRecord(ctypes.Structure):
    _fields_ = [
        ("h", EventHeader),
        ("args_len", ctypes.c_uint32),
        ("argc", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("old_pid", ctypes.c_uint32),
        ("pcomm", ctypes.c_char * COMM_LEN),
        ("filename", ctypes.c_char * FILENAME_LEN),
        ("args", ctypes.c_char * ARGS_LEN),
    ]


class ExitRecord(ctypes.Structure):
    _fields_ = [
        ("h", EventHeader),
        ("exit_code", ctypes.c_int32),
        ("signal", ctypes.c_uint32),
        ("exit_flags", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("lifetime_ns", ctypes.c_uint64),
    ]


class CgroupMkdirRecord(ctypes.Structure):
    _fields_ = [
        ("h", EventHeader),
        ("id", ctypes.c_uint64),
        ("level", ctypes.c_int32),
        ("pad", ctypes.c_uint32),
        ("path", ctypes.c_char * CGROUP_PATH_LEN),
    ]


# -- typed events -----------------------------------------------------------------------
def _text(raw: bytes) -> str:
    """A C string field as text: up to the first NUL, undecodable bytes escaped, because
    paths and argv are bytes in Linux and must survive into JSON."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def split_args(raw: bytes, length: int) -> list[str]:
    """NUL-separated argv strings as captured in the kernel.

    >>> split_args(b"ls\\0-l\\0/tmp\\0\\0\\0", 10)
    ['ls', '-l', '/tmp']
    >>> split_args(b"", 0)
    []
    """
    used = raw[: max(0, min(length, len(raw)))]
    if not used:
        return []
    parts = used.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return [p.decode("utf-8", "backslashreplace") for p in parts]


@dataclass(frozen=True, slots=True)
class Header:
    """Who and when, common to every record. ``ts``/``start_ns`` are CLOCK_MONOTONIC ns."""

    kind: int
    pid: int
    tid: int
    ppid: int
    uid: int
    count: int
    ts: int
    cgroup_id: int
    start_ns: int
    comm: str

    @classmethod
    def from_struct(cls, h: EventHeader) -> Header:
        return cls(
            kind=h.kind, pid=h.pid, tid=h.tid, ppid=h.ppid, uid=h.uid, count=h.count,
            ts=h.ts, cgroup_id=h.cgroup_id, start_ns=h.start_ns, comm=_text(h.comm),
        )


@dataclass(frozen=True, slots=True)
class ExecEvent:
    header: Header
    filename: str
    argv: list[str]
    parent_comm: str
    argv_truncated: bool
    argv_missing: bool


@dataclass(frozen=True, slots=True)
class ExitEvent:
    header: Header
    exit_code: int | None  # from exit_group(code); None when not seen
    signal: int | None     # a default-action signal delivered before the exit
    lifetime_ns: int | None


@dataclass(frozen=True, slots=True)
class CgroupMkdirEvent:
    header: Header
    cgroup_id: int
    level: int
    path: str


@dataclass(frozen=True, slots=True)
class Undecodable:
    reason: str
    raw: bytes = field(repr=False)


KernelEvent = ExecEvent | ExitEvent | CgroupMkdirEvent


_ARGS_AT = ExecRecord.args.offset


def _exec(raw: bytes) -> ExecEvent:
    r = ExecRecord.from_buffer_copy(raw)
    return ExecEvent(
        header=Header.from_struct(r.h),
        filename=_text(r.filename),
        # Not r.args: ctypes returns a c_char array only up to its first NUL.
        argv=split_args(raw[_ARGS_AT : _ARGS_AT + ARGS_LEN], r.args_len),
        parent_comm=_text(r.pcomm),
        argv_truncated=bool(r.flags & EXEC_ARGV_TRUNCATED),
        argv_missing=bool(r.flags & EXEC_ARGV_MISSING),
    )


def _exit(raw: bytes) -> ExitEvent:
    r = ExitRecord.from_buffer_copy(raw)
    return ExitEvent(
        header=Header.from_struct(r.h),
        exit_code=(r.exit_code & 0xFF) if r.exit_flags & EXIT_CODE_KNOWN else None,
        signal=r.signal if r.exit_flags & EXIT_SIGNAL_KNOWN and r.signal else None,
        lifetime_ns=r.lifetime_ns or None,
    )


def _cgroup(raw: bytes) -> CgroupMkdirEvent:
    r = CgroupMkdirRecord.from_buffer_copy(raw)
    return CgroupMkdirEvent(
        header=Header.from_struct(r.h), cgroup_id=r.id, level=r.level, path=_text(r.path),
    )


_DECODERS: dict[int, tuple[type[ctypes.Structure], object]] = {
    Kind.EXEC: (ExecRecord, _exec),
    Kind.EXIT: (ExitRecord, _exit),
    Kind.CGROUP_MKDIR: (CgroupMkdirRecord, _cgroup),
}


def register(kind: int, record: type[ctypes.Structure], decoder: object) -> None:
    """Add a record type (used by the other concern modules of this package)."""
    _DECODERS[kind] = (record, decoder)


def decode(raw: bytes) -> KernelEvent | Undecodable:
    """One ring-buffer record → its event, or :class:`Undecodable` saying why."""
    if len(raw) < ctypes.sizeof(EventHeader):
        return Undecodable(f"record of {len(raw)} bytes is shorter than the header", raw)
    kind = int.from_bytes(raw[:4], "little")
    entry = _DECODERS.get(kind)
    if entry is None:
        return Undecodable(f"unknown kind {kind}", raw)
    record, decoder = entry
    if len(raw) < ctypes.sizeof(record):
        return Undecodable(
            f"kind {kind}: {len(raw)} bytes, expected {ctypes.sizeof(record)}", raw)
    return decoder(raw)  # type: ignore[operator,no-any-return]
