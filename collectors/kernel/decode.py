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
import functools
import ipaddress
import struct
from dataclasses import dataclass, field

__all__ = [
    "ARGS_LEN",
    "COMM_LEN",
    "CgroupMkdirEvent",
    "CgroupMkdirRecord",
    "CloseEvent",
    "CloseRecord",
    "Counter",
    "DnsEvent",
    "DnsRecord",
    "EventHeader",
    "ExecEvent",
    "ExecRecord",
    "ExitEvent",
    "ExitRecord",
    "FileOp",
    "FileOpEvent",
    "FileOpRecord",
    "Header",
    "KernelEvent",
    "Kind",
    "Namespaces",
    "NetEvent",
    "NetKey",
    "NetRecord",
    "NsIds",
    "NsOp",
    "NsOpEvent",
    "NsOpRecord",
    "OpenEvent",
    "OpenKey",
    "OpenKeyShort",
    "OpenRecord",
    "Outcome",
    "Stdio",
    "StdioInfo",
    "Undecodable",
    "decode",
    "ip_text",
    "split_args",
]

COMM_LEN = 16
FILENAME_LEN = 256
ARGS_LEN = 1024
CGROUP_PATH_LEN = 256
UNIX_PATH_LEN = 108
DNS_CAPTURE = 512

EXEC_ARGV_TRUNCATED = 1
EXEC_ARGV_MISSING = 2
EXEC_HAS_INTERP = 4
EXEC_HAS_NS = 8
EXEC_HAS_STDIO = 16
EXEC_HAS_EXE_FILE = 32
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
    FILEOP = 10
    NSOP = 11


class Counter(enum.IntEnum):
    """Slots of the per-CPU ``counters`` array (``C_*`` in common.bpf.h)."""

    EMITTED = 0
    LOST = 1
    DEDUPLICATED = 2
    DEDUP_FULL = 3
    FILTERED = 4
    PODS_ADDED = 5
    PROFILE_FULL = 6
    CONNECT_PARKED = 7


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


class NsIds(ctypes.Structure):
    """common.bpf.h: struct ns_ids (namespace inode numbers, 0 when unknown)."""

    _fields_ = [
        ("mnt", ctypes.c_uint32),
        ("pid", ctypes.c_uint32),
        ("net", ctypes.c_uint32),
        ("pid_children", ctypes.c_uint32),
    ]


class StdioInfo(ctypes.Structure):
    """exec.bpf.c: struct stdio_info (what fd 0, 1 or 2 is at exec)."""

    _fields_ = [
        ("mode", ctypes.c_uint16),
        ("family", ctypes.c_uint16),
        ("sotype", ctypes.c_uint16),
        ("dport", ctypes.c_uint16),
        ("protocol", ctypes.c_uint16),
        ("pad", ctypes.c_uint16),
        ("rdev", ctypes.c_uint32),
        ("daddr", ctypes.c_uint8 * 16),
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
        ("interp", ctypes.c_char * FILENAME_LEN),
        ("ns", NsIds),
        ("exe_nlink", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("stdio", StdioInfo * 3),
        ("exe_name", ctypes.c_char * 32),
    ]


class NsOpRecord(ctypes.Structure):
    """ns.bpf.c: struct nsop_event (setns, unshare, mount)."""

    _fields_ = [
        ("h", EventHeader),
        ("ret", ctypes.c_int64),
        ("flags", ctypes.c_uint64),
        ("op", ctypes.c_uint32),
        ("fd", ctypes.c_int32),
        ("before", NsIds),
        ("after", NsIds),
        ("source", ctypes.c_char * 128),
        ("target", ctypes.c_char * FILENAME_LEN),
        ("fstype", ctypes.c_char * 32),
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


class OpenRecord(ctypes.Structure):
    _fields_ = [
        ("h", EventHeader),
        ("window", ctypes.c_uint64),
        ("ret", ctypes.c_int64),
        ("flags", ctypes.c_uint32),
        ("dfd", ctypes.c_int32),
        ("mode", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("path", ctypes.c_char * FILENAME_LEN),
    ]


class FileOpRecord(ctypes.Structure):
    """file.bpf.c: struct fileop_event (chdir, unlink, rename, chmod, chown, memfd)."""

    _fields_ = [
        ("h", EventHeader),
        ("ret", ctypes.c_int64),
        ("op", ctypes.c_uint32),
        ("dfd", ctypes.c_int32),
        ("dfd2", ctypes.c_int32),
        ("mode", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("path", ctypes.c_char * FILENAME_LEN),
        ("path2", ctypes.c_char * FILENAME_LEN),
    ]


class OpenKey(ctypes.Structure):
    """Key of the in-kernel ``open_dedup`` table (file.bpf.c: struct open_key)."""

    _fields_ = [
        ("cgroup_id", ctypes.c_uint64),
        ("window", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("result", ctypes.c_int32),
        ("path", ctypes.c_char * FILENAME_LEN),
    ]


class OpenKeyShort(ctypes.Structure):
    """Key of ``open_dedup_short`` (file.bpf.c: struct open_key_short): paths of up to
    63 bytes."""

    _fields_ = [
        ("cgroup_id", ctypes.c_uint64),
        ("window", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("result", ctypes.c_int32),
        ("path", ctypes.c_char * 64),
    ]


class NetRecord(ctypes.Structure):
    _fields_ = [
        ("h", EventHeader),
        ("window", ctypes.c_uint64),
        ("ret", ctypes.c_int64),
        ("fd", ctypes.c_uint32),
        ("family", ctypes.c_uint16),
        ("sotype", ctypes.c_uint16),
        ("dport", ctypes.c_uint16),
        ("lport", ctypes.c_uint16),
        ("outcome", ctypes.c_uint32),
        ("daddr", ctypes.c_uint8 * 16),
        ("unix_path", ctypes.c_char * UNIX_PATH_LEN),
    ]


class NetKey(ctypes.Structure):
    """Key of the in-kernel ``net_dedup`` table (net.bpf.c: struct net_key)."""

    _fields_ = [
        ("cgroup_id", ctypes.c_uint64),
        ("window", ctypes.c_uint64),
        ("result", ctypes.c_int32),
        ("family", ctypes.c_uint16),
        ("sotype", ctypes.c_uint16),
        ("dport", ctypes.c_uint16),
        ("pad", ctypes.c_uint16 * 3),
        ("daddr", ctypes.c_uint8 * 16),
        ("unix_path", ctypes.c_char * UNIX_PATH_LEN),
    ]


class CloseRecord(ctypes.Structure):
    _fields_ = [
        ("h", EventHeader),
        ("bytes_sent", ctypes.c_uint64),
        ("bytes_received", ctypes.c_uint64),
        ("duration_ns", ctypes.c_uint64),
        ("family", ctypes.c_uint16),
        ("sport", ctypes.c_uint16),
        ("dport", ctypes.c_uint16),
        ("pad", ctypes.c_uint16),
        ("saddr", ctypes.c_uint8 * 16),
        ("daddr", ctypes.c_uint8 * 16),
    ]


class DnsRecord(ctypes.Structure):
    _fields_ = [
        ("h", EventHeader),
        ("direction", ctypes.c_uint32),
        ("len", ctypes.c_uint32),
        ("fd", ctypes.c_uint32),
        ("family", ctypes.c_uint16),
        ("port", ctypes.c_uint16),
        ("addr", ctypes.c_uint8 * 16),
        ("payload", ctypes.c_uint8 * DNS_CAPTURE),
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

    @classmethod
    def from_bytes(cls, raw: bytes) -> Header:
        """The same from the record's first bytes with one precompiled unpack (the hot
        path: a ctypes copy and a field access per member cost several microseconds)."""
        kind, pid, tid, ppid, uid, count, ts, cgroup_id, start_ns, comm = (
            _HEADER.unpack_from(raw))
        return cls(kind, pid, tid, ppid, uid, count, ts, cgroup_id, start_ns,
                   _comm_text(comm))


# struct event_header as struct sees it (test_kernel_layout checks it against the
# ctypes mirror, which is checked against the compiled layout).
_HEADER = struct.Struct(f"<6I3Q{COMM_LEN}s")


@functools.lru_cache(maxsize=1024)
def _comm_text(raw: bytes) -> str:
    return _text(raw)  # a handful of distinct names per node: cached


@dataclass(frozen=True, slots=True)
class Namespaces:
    mnt: int
    pid: int
    net: int
    pid_children: int = 0

    @classmethod
    def from_struct(cls, ns: NsIds) -> Namespaces | None:
        return cls(ns.mnt, ns.pid, ns.net, ns.pid_children) if ns.mnt else None


@dataclass(frozen=True, slots=True)
class Stdio:
    """What one of fds 0-2 was at exec: ``mode`` (S_IFMT bits, 0 when closed), and for
    sockets the family, type, protocol and peer; ``rdev`` for character devices."""

    mode: int
    family: int = 0
    sotype: int = 0
    protocol: int = 0
    peer: str = ""
    port: int = 0
    rdev: int = 0


@dataclass(frozen=True, slots=True)
class ExecEvent:
    header: Header
    filename: str
    argv: list[str]
    parent_comm: str
    argv_truncated: bool
    argv_missing: bool
    interpreter: str = ""          # binfmt_script / binfmt_misc's choice, "" when none
    namespaces: Namespaces | None = None
    stdio: tuple[Stdio, ...] = ()  # fds 0, 1, 2 (empty when not read)
    exe_nlink: int | None = None   # links of the exe file: 0 for memfd and deleted files
    exe_name: str = ""


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


def ip_text(family: int, raw: bytes) -> str:
    """Address bytes as text ("" for other families).

    >>> ip_text(2, bytes([127, 0, 0, 1]) + bytes(12))
    '127.0.0.1'
    >>> ip_text(10, bytes(15) + b"\\x01")
    '::1'
    """
    if family == AF_INET:
        return str(ipaddress.IPv4Address(bytes(raw[:4])))
    if family == AF_INET6:
        addr = ipaddress.IPv6Address(bytes(raw[:16]))
        mapped = addr.ipv4_mapped
        return str(mapped) if mapped is not None else str(addr)
    return ""


AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10


@dataclass(frozen=True, slots=True)
class OpenEvent:
    header: Header
    window: int
    path: str
    flags: int
    result: int  # fd, or -errno
    dfd: int
    path_raw: bytes = field(repr=False, default=b"")
    mode: int = 0


class FileOp(enum.IntEnum):
    """``FOP_*`` in file.bpf.c."""

    CHDIR = 1
    UNLINK = 2
    RENAME = 3
    CHMOD = 4
    CHOWN = 5
    MEMFD = 6


NO_ID = 0xFFFFFFFF  # chown's "leave unchanged" (-1)


@dataclass(frozen=True, slots=True)
class FileOpEvent:
    """A change of the file system or of the working directory. ``dfd`` is the dirfd
    of ``path`` (AT_FDCWD for the plain calls) or, when ``path`` is empty, the fd the
    call acts on (fchdir, fchmod, fchown)."""

    header: Header
    op: int
    result: int
    dfd: int
    path: str
    dfd2: int = -100
    path2: str = ""
    mode: int = 0
    uid: int = NO_ID
    gid: int = NO_ID
    flags: int = 0


@dataclass(frozen=True, slots=True)
class NetEvent:
    """connect (``kind`` CONNECT), accept (ACCEPT: peer address, ``result`` = new fd)
    or listen (LISTEN: ``lport``)."""

    header: Header
    window: int
    result: int
    fd: int
    family: int
    sotype: int  # 1 stream (TCP), 2 datagram (UDP), 0 unknown
    dport: int
    lport: int
    daddr: str
    unix_path: str
    daddr_raw: bytes = field(repr=False, default=b"")
    unix_raw: bytes = field(repr=False, default=b"")
    outcome: int = 0  # connect: Outcome (0: only the syscall's result is known)


class Outcome(enum.IntEnum):
    """``OUTCOME_*`` in net.bpf.c: how a TCP connect ended, from the state machine."""

    UNKNOWN = 0
    ESTABLISHED = 1
    REFUSED = 2
    FAILED = 3
    PENDING = 4


@dataclass(frozen=True, slots=True)
class CloseEvent:
    header: Header
    family: int
    saddr: str
    sport: int
    daddr: str
    dport: int
    bytes_sent: int
    bytes_received: int
    duration_ns: int


@dataclass(frozen=True, slots=True)
class DnsEvent:
    header: Header
    answer: bool  # False: a query sent, True: a reply read
    length: int
    fd: int
    family: int
    server: str
    port: int
    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Undecodable:
    reason: str
    raw: bytes = field(repr=False)




_ARGS_AT = ExecRecord.args.offset


def _stdio(s: StdioInfo) -> Stdio:
    return Stdio(mode=s.mode, family=s.family, sotype=s.sotype, protocol=s.protocol,
                 peer=ip_text(s.family, bytes(s.daddr)), port=s.dport, rdev=s.rdev)


def _exec(raw: bytes) -> ExecEvent:
    r = ExecRecord.from_buffer_copy(raw)
    has_file = bool(r.flags & EXEC_HAS_EXE_FILE)
    return ExecEvent(
        header=Header.from_bytes(raw),
        filename=_text(r.filename),
        # Not r.args: ctypes returns a c_char array only up to its first NUL.
        argv=split_args(raw[_ARGS_AT : _ARGS_AT + ARGS_LEN], r.args_len),
        parent_comm=_text(r.pcomm),
        argv_truncated=bool(r.flags & EXEC_ARGV_TRUNCATED),
        argv_missing=bool(r.flags & EXEC_ARGV_MISSING),
        interpreter=_text(r.interp) if r.flags & EXEC_HAS_INTERP else "",
        namespaces=Namespaces.from_struct(r.ns) if r.flags & EXEC_HAS_NS else None,
        stdio=(tuple(_stdio(s) for s in r.stdio) if r.flags & EXEC_HAS_STDIO else ()),
        exe_nlink=r.exe_nlink if has_file else None,
        exe_name=_text(r.exe_name) if has_file else "",
    )


class NsOp(enum.IntEnum):
    """``NSOP_*`` in ns.bpf.c."""

    SETNS = 1
    UNSHARE = 2
    MOUNT = 3


@dataclass(frozen=True, slots=True)
class NsOpEvent:
    header: Header
    op: int
    result: int
    flags: int  # setns: nstype; unshare: CLONE_* flags; mount: MS_* flags
    fd: int
    before: Namespaces | None
    after: Namespaces | None
    source: str = ""
    target: str = ""
    fstype: str = ""


def _nsop(raw: bytes) -> NsOpEvent:
    r = NsOpRecord.from_buffer_copy(raw)
    return NsOpEvent(
        header=Header.from_bytes(raw), op=r.op, result=r.ret, flags=r.flags, fd=r.fd,
        before=Namespaces.from_struct(r.before), after=Namespaces.from_struct(r.after),
        source=_text(r.source), target=_text(r.target), fstype=_text(r.fstype),
    )


def _exit(raw: bytes) -> ExitEvent:
    r = ExitRecord.from_buffer_copy(raw)
    return ExitEvent(
        header=Header.from_bytes(raw),
        exit_code=(r.exit_code & 0xFF) if r.exit_flags & EXIT_CODE_KNOWN else None,
        signal=r.signal if r.exit_flags & EXIT_SIGNAL_KNOWN and r.signal else None,
        lifetime_ns=r.lifetime_ns or None,
    )


def _cgroup(raw: bytes) -> CgroupMkdirEvent:
    r = CgroupMkdirRecord.from_buffer_copy(raw)
    return CgroupMkdirEvent(
        header=Header.from_bytes(raw), cgroup_id=r.id, level=r.level, path=_text(r.path),
    )


_OPEN_PATH_AT = OpenRecord.path.offset
_NET_UNIX_AT = NetRecord.unix_path.offset
_DNS_PAYLOAD_AT = DnsRecord.payload.offset


def _cstr(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


# struct open_event after its header: window, ret, flags, dfd, mode, pad (then the path).
_OPEN_TAIL = struct.Struct("<QqIiII")
_OPEN_TAIL_AT = OpenRecord.window.offset


def _open(raw: bytes) -> OpenEvent:
    window, ret, flags, dfd, mode, _pad = _OPEN_TAIL.unpack_from(raw, _OPEN_TAIL_AT)
    end = raw.find(b"\0", _OPEN_PATH_AT, _OPEN_PATH_AT + FILENAME_LEN)
    path = raw[_OPEN_PATH_AT : end if end >= 0 else _OPEN_PATH_AT + FILENAME_LEN]
    return OpenEvent(
        header=Header.from_bytes(raw), window=window,
        path=path.decode("utf-8", "backslashreplace"), flags=flags, result=ret,
        dfd=dfd, path_raw=path, mode=mode,
    )


def _fileop(raw: bytes) -> FileOpEvent:
    r = FileOpRecord.from_buffer_copy(raw)
    return FileOpEvent(
        header=Header.from_bytes(raw), op=r.op, result=r.ret, dfd=r.dfd,
        path=_text(r.path), dfd2=r.dfd2, path2=_text(r.path2), mode=r.mode, uid=r.uid,
        gid=r.gid, flags=r.flags,
    )


def _net(raw: bytes) -> NetEvent:
    r = NetRecord.from_buffer_copy(raw)
    unix = _cstr(raw[_NET_UNIX_AT : _NET_UNIX_AT + UNIX_PATH_LEN])
    if r.family == AF_UNIX and not unix and len(raw) > _NET_UNIX_AT + 1:
        # abstract socket: a leading NUL, then the name
        unix = b"@" + _cstr(raw[_NET_UNIX_AT + 1 : _NET_UNIX_AT + UNIX_PATH_LEN])
        if unix == b"@":
            unix = b""
    daddr = bytes(r.daddr)
    return NetEvent(
        header=Header.from_bytes(raw), window=r.window, result=r.ret, fd=r.fd,
        family=r.family, sotype=r.sotype, dport=r.dport, lport=r.lport,
        daddr=ip_text(r.family, daddr), unix_path=unix.decode("utf-8", "backslashreplace"),
        daddr_raw=daddr, unix_raw=bytes(raw[_NET_UNIX_AT : _NET_UNIX_AT + UNIX_PATH_LEN]),
        outcome=r.outcome,
    )


def _close(raw: bytes) -> CloseEvent:
    r = CloseRecord.from_buffer_copy(raw)
    return CloseEvent(
        header=Header.from_bytes(raw), family=r.family,
        saddr=ip_text(r.family, bytes(r.saddr)), sport=r.sport,
        daddr=ip_text(r.family, bytes(r.daddr)), dport=r.dport,
        bytes_sent=r.bytes_sent, bytes_received=r.bytes_received, duration_ns=r.duration_ns,
    )


def _dns(raw: bytes) -> DnsEvent:
    r = DnsRecord.from_buffer_copy(raw)
    captured = min(r.len, DNS_CAPTURE)
    return DnsEvent(
        header=Header.from_bytes(raw), answer=r.direction == 1, length=r.len, fd=r.fd,
        family=r.family, server=ip_text(r.family, bytes(r.addr)), port=r.port,
        payload=bytes(raw[_DNS_PAYLOAD_AT : _DNS_PAYLOAD_AT + captured]),
    )


_DECODERS: dict[int, tuple[type[ctypes.Structure], object]] = {
    Kind.EXEC: (ExecRecord, _exec),
    Kind.EXIT: (ExitRecord, _exit),
    Kind.CGROUP_MKDIR: (CgroupMkdirRecord, _cgroup),
    Kind.OPEN: (OpenRecord, _open),
    Kind.CONNECT: (NetRecord, _net),
    Kind.ACCEPT: (NetRecord, _net),
    Kind.LISTEN: (NetRecord, _net),
    Kind.CLOSE: (CloseRecord, _close),
    Kind.DNS: (DnsRecord, _dns),
    Kind.FILEOP: (FileOpRecord, _fileop),
    Kind.NSOP: (NsOpRecord, _nsop),
}


KernelEvent = (
    ExecEvent | ExitEvent | CgroupMkdirEvent | OpenEvent | NetEvent | CloseEvent | DnsEvent
    | FileOpEvent | NsOpEvent
)


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
