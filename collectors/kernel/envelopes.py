"""Typed kernel events → wire envelopes (pure: no bcc, no IO).

The kernel stamps events with CLOCK_MONOTONIC (``bpf_ktime_get_ns``); the envelope
contract wants epoch nanoseconds. The loader measures the offset between the two clocks
at start and again every minute (:func:`monotonic_to_epoch_offset`; the drift is a
metric) and every conversion adds it, so event order and spacing are the kernel's, not
the poll loop's.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import re
import time
from typing import Any

from collectors.kernel.decode import (
    AF_INET,
    AF_INET6,
    AF_UNIX,
    NO_ID,
    CgroupMkdirEvent,
    CloseEvent,
    DnsEvent,
    ExecEvent,
    ExitEvent,
    FileOp,
    FileOpEvent,
    Header,
    Kind,
    Namespaces,
    NetEvent,
    NsOp,
    NsOpEvent,
    OpenEvent,
    Outcome,
    Stdio,
)
from collectors.kernel.dnsmsg import parse_dns
from collectors.kernel.paths import normalize
from collectors.kernel.sensitive import SensitivePaths
from streams.events import Envelope, Pod, Proc

__all__ = [
    "close_envelope",
    "connect_outcome",
    "dns_envelope",
    "exec_envelope",
    "exec_facts",
    "exit_envelope",
    "fileop_envelopes",
    "mode_text",
    "monotonic_to_epoch_offset",
    "net_envelope",
    "nsop_envelope",
    "open_envelope",
    "open_flags",
    "opens_for_write",
    "proc_of",
    "profile_envelope",
    "resolved_addresses",
    "resolved_answers",
    "script_argument",
    "stdio_fact",
    "write_envelope",
]


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


# -- exec facts -------------------------------------------------------------------------
S_IFMT, S_IFSOCK, S_IFIFO, S_IFCHR, S_IFREG = 0o170000, 0o140000, 0o010000, 0o020000, 0o100000
_TTY_MAJORS = frozenset({4, 5, *range(136, 144)})  # vt/ttyS, tty/console, pts
_NULL_DEV = (1 << 20) | 3  # /dev/null as the kernel's dev_t (major << 20 | minor)


def stdio_fact(s: Stdio) -> dict[str, Any] | None:
    """One fd of a new program: ``{"type": socket|pipe|tty|file|null|other, …}``; for
    sockets the protocol and the peer (``ip:port``). None when the fd was closed.

    >>> stdio_fact(Stdio(mode=S_IFSOCK, family=2, sotype=1, protocol=6, peer="10.0.0.9",
    ...                  port=4444))
    {'type': 'socket', 'protocol': 'tcp', 'peer': '10.0.0.9:4444'}
    >>> stdio_fact(Stdio(mode=S_IFCHR | 0o620, rdev=(136 << 20) | 3))
    {'type': 'tty'}
    """
    kind = s.mode & S_IFMT
    if not kind:
        return None
    if kind == S_IFSOCK:
        out: dict[str, Any] = {"type": "socket"}
        if s.family == AF_UNIX:
            out["protocol"] = "unix"
        elif s.family in (AF_INET, AF_INET6):
            out["protocol"] = {6: "tcp", 17: "udp"}.get(s.protocol, str(s.protocol))
            if s.port:
                host = f"[{s.peer}]" if ":" in s.peer else s.peer
                out["peer"] = f"{host}:{s.port}"
        return out
    if kind == S_IFIFO:
        return {"type": "pipe"}
    if kind == S_IFREG:
        return {"type": "file"}
    if kind == S_IFCHR:
        if s.rdev == _NULL_DEV:
            return {"type": "null"}
        return {"type": "tty" if (s.rdev >> 20) in _TTY_MAJORS else "other"}
    return {"type": "other"}


def ns_fact(ns: Namespaces | None) -> dict[str, int] | None:
    return None if ns is None else {"mnt": ns.mnt, "pid": ns.pid, "net": ns.net}


_SHELLS = re.compile(r"^(?:sh|bash|dash|zsh|ksh|mksh|ash|busybox|fish)$")
_PYTHONS = re.compile(r"^(?:python[0-9.]*|pypy[0-9.]*)$")
_OTHERS = re.compile(r"^(?:perl[0-9.]*|ruby[0-9.]*|node|nodejs|deno|bun|php[0-9.]*|lua[0-9.]*"
                     r"|Rscript|tclsh)$")
# per family: short flags that make the next argument inline code (or a module), and
# options that take a value
_FAMILIES = ((_SHELLS, frozenset("c"), frozenset({"-o", "-O", "+o", "+O"})),
             (_PYTHONS, frozenset("cm"), frozenset({"-W", "-X", "-Q"})),
             (_OTHERS, frozenset("eEpr"), frozenset({"-I", "-M", "-r", "--require"})))
_INLINE_LONG = frozenset({"--eval", "--print", "--command", "-"})


def script_argument(filename: str, argv: list[str]) -> str | None:
    """The script an interpreter run by path was given (``sh /app/run.sh``,
    ``python3 -u tool.py``), None for inline code (``-c``, ``-lc``, ``-e``, ``-m``) or a
    program that is not an interpreter.

    >>> script_argument("/usr/bin/python3", ["python3", "-u", "agent/tool.py", "--x"])
    'agent/tool.py'
    >>> script_argument("/bin/bash", ["bash", "-e", "run.sh"])
    'run.sh'
    >>> script_argument("/bin/bash", ["bash", "-lc", "id"]) is None
    True
    >>> script_argument("/usr/bin/python3", ["python3", "-W", "ignore", "-m", "http.server"])
    >>> script_argument("/usr/bin/ls", ["ls", "/tmp"]) is None
    True
    """
    name = filename.rsplit("/", 1)[-1]
    found = next(((inline, valued) for family, inline, valued in _FAMILIES
                  if family.match(name)), None)
    if found is None:
        return None
    inline, valued = found
    args = iter(argv[1:])
    for arg in args:
        if arg in _INLINE_LONG:
            return None
        if arg == "--":
            return next(args, None)
        if arg in valued:
            next(args, None)
            continue
        if arg.startswith("-") or arg.startswith("+"):
            if not arg.startswith("--") and inline & set(arg[1:]):
                return None
            continue
        return arg
    return None


def exec_facts(ev: ExecEvent) -> dict[str, Any]:
    """The kernel's facts about a new program beyond argv: interpreter and script,
    stdio, namespaces, and the exe file's link count (0: memfd or deleted)."""
    data: dict[str, Any] = {}
    if ev.interpreter:
        data["interpreter"] = ev.interpreter
        data["script"] = ev.filename
    if ev.stdio:
        stdio = {}
        for name, fd in zip(("stdin", "stdout", "stderr"), ev.stdio, strict=False):
            fact = stdio_fact(fd)
            if fact is not None:
                stdio[name] = fact
        data["stdio"] = stdio
    ns = ns_fact(ev.namespaces)
    if ns is not None:
        data["ns"] = ns
    if ev.exe_nlink == 0:
        data["exe_origin"] = ("memfd" if ev.exe_name.startswith("memfd:") else "deleted")
        if ev.exe_name:
            data["exe_name"] = ev.exe_name
    return data


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


# -- file.open ---------------------------------------------------------------------------
O_ACCMODE = 0o3
_OPEN_FLAGS = (  # x86_64 values (asm-generic/fcntl.h)
    (0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"), (0o10000, "O_DSYNC"),
    (0o200000, "O_DIRECTORY"), (0o400000, "O_NOFOLLOW"), (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"), (0o4000000, "O_SYNC"), (0o10000000, "O_PATH"),
    (0o20000000, "O_TMPFILE"),
)
_ACCESS = {0: "read", 1: "write", 2: "read_write", 3: "read_write"}
AT_FDCWD = -100


@functools.lru_cache(maxsize=1024)
def _open_flags(flags: int) -> tuple[str, ...]:
    names = [("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")[flags & O_ACCMODE]]
    names.extend(name for bit, name in _OPEN_FLAGS if flags & bit)
    return tuple(names)


def open_flags(flags: int) -> list[str]:
    """Symbolic open(2) flags: the access mode, then each flag bit set.

    >>> open_flags(0o2000101)
    ['O_WRONLY', 'O_CREAT', 'O_CLOEXEC']
    """
    return list(_open_flags(flags))


def errno_name(result: int) -> str:
    """``-2`` → ``ENOENT`` (the name of a negative syscall result)."""
    return errno.errorcode.get(-result, f"E{-result}") if result < 0 else ""


def _path_fields(data: dict[str, Any], raw: str, resolved: str | None,
                 key: str = "path") -> str:
    """``data[key]`` = the resolved path; the spelling the process used goes to
    ``raw_<key>`` when it differs; an unresolvable relative path stays as given and
    is marked ``<key>_unresolved``. Returns the path the verdicts use."""
    if resolved is None:
        data[key] = raw
        if raw and not raw.startswith("/"):
            data[f"{key}_unresolved"] = True
        return raw
    data[key] = resolved
    if resolved != raw:
        data[f"raw_{key}"] = raw
    return resolved


def opens_for_write(flags: int) -> bool:
    """Write access, or a create/truncate (which change the file whatever the mode)."""
    return bool(flags & O_ACCMODE) or bool(flags & (0o100 | 0o1000))


def open_envelope(
    ev: OpenEvent, *, node: str, pod: Pod | None, offset_ns: int,
    sensitive: SensitivePaths | None = None, path: str | None = None,
) -> Envelope:
    """file.open. ``path`` is the resolved absolute path (None: unknown; the path as
    the process gave it is kept then)."""
    data: dict[str, Any] = {}
    if path is None and ev.path.startswith("/"):
        path = normalize(ev.path)
    where = _path_fields(data, ev.path, path)
    data.update({
        "flags": open_flags(ev.flags), "access": _ACCESS[ev.flags & O_ACCMODE],
        "create": bool(ev.flags & 0o100), "truncate": bool(ev.flags & 0o1000),
        "result": ev.result, "count": ev.header.count, "cgroup_id": ev.header.cgroup_id,
    })
    if ev.flags & 0o100 and ev.mode:
        data["mode"] = ev.mode & 0o7777
    if ev.result < 0:
        data["error"] = errno_name(ev.result)
    if ev.dfd != AT_FDCWD and not ev.path.startswith("/"):
        data["dirfd"] = ev.dfd
    if sensitive is not None:
        found = sensitive.match(where, write=opens_for_write(ev.flags))
        if found is not None:
            data["sensitive"] = found.to_data()
    return Envelope(
        kind="file.open", ts=ev.header.ts + offset_ns, node=node, source="kernel",
        data=data, pod=pod, proc=proc_of(ev.header),
    )


_WRITE_KEYS = ("path", "raw_path", "flags", "access", "create", "truncate", "mode", "count",
               "cgroup_id", "sensitive")


def write_envelope(opened: Envelope) -> Envelope | None:
    """file.write for a successful open for writing of a sensitive or persistence path
    (the open itself stays a file.open: both are facts)."""
    data = opened.data
    if ("sensitive" not in data or data.get("result", -1) < 0
            or (data.get("access") == "read" and not (data.get("create")
                                                     or data.get("truncate")))):
        return None
    out = {k: data[k] for k in _WRITE_KEYS if k in data}
    out["via"] = "open"
    return dataclasses.replace(opened, kind="file.write", data=out)


# -- file changes ----------------------------------------------------------------------
def mode_text(mode: int) -> str:
    """``0o755`` → ``"0755"``.

    >>> mode_text(0o4755)
    '4755'
    """
    return f"{mode & 0o7777:04o}"


def fileop_envelopes(
    ev: FileOpEvent, *, node: str, pod: Pod | None, offset_ns: int,
    sensitive: SensitivePaths | None = None, path: str | None = None,
    new_path: str | None = None, mode_before: int | None = None,
) -> list[Envelope]:
    """file.unlink / file.rename / file.chmod / file.chown (and file.write for a
    rename onto a sensitive path). ``path``/``new_path``: resolved (None: unknown)."""
    op = FileOp(ev.op)
    kind = {FileOp.UNLINK: "file.unlink", FileOp.RENAME: "file.rename",
            FileOp.CHMOD: "file.chmod", FileOp.CHOWN: "file.chown"}.get(op)
    if kind is None:
        return []
    data: dict[str, Any] = {}
    where = _path_fields(data, ev.path, path)
    if not ev.path and ev.dfd >= 0:
        data["fd"] = ev.dfd
    elif ev.dfd != AT_FDCWD and not ev.path.startswith("/"):
        data["dirfd"] = ev.dfd
    target = where
    if op == FileOp.RENAME:
        target = _path_fields(data, ev.path2, new_path, "new_path")
    elif op == FileOp.CHMOD:
        mode = ev.mode & 0o7777
        data.update(mode=mode, mode_text=mode_text(mode))
        added = bool(mode & 0o111) and (mode_before is None or not mode_before & 0o111)
        data["exec_bit_added"] = added
        if mode_before is not None:
            data["mode_before"] = mode_before & 0o7777
    elif op == FileOp.CHOWN:
        data.update(uid=-1 if ev.uid == NO_ID else ev.uid,
                    gid=-1 if ev.gid == NO_ID else ev.gid)
    elif op == FileOp.UNLINK and ev.flags & 0x200:  # AT_REMOVEDIR
        data["directory"] = True
    data.update(result=ev.result, cgroup_id=ev.header.cgroup_id)
    if ev.result < 0:
        data["error"] = errno_name(ev.result)
    found = None
    if sensitive is not None:
        found = sensitive.match(target, write=True) or (
            sensitive.match(where, write=True) if target != where else None)
        if found is not None:
            data["sensitive"] = found.to_data()
    ts, proc = ev.header.ts + offset_ns, proc_of(ev.header)
    out = [Envelope(kind=kind, ts=ts, node=node, source="kernel", data=data, pod=pod,
                    proc=proc)]
    if op == FileOp.RENAME and found is not None and ev.result == 0:
        out.append(Envelope(kind="file.write", ts=ts, node=node, source="kernel", data={
            "path": target, "from_path": where, "sensitive": data["sensitive"],
            "via": "rename", "cgroup_id": ev.header.cgroup_id}, pod=pod, proc=proc))
    return out


# -- net.* -------------------------------------------------------------------------------
_SOTYPE = {1: "tcp", 2: "udp", 3: "raw", 5: "seqpacket"}
_FAMILY = {AF_UNIX: "unix", AF_INET: "inet", AF_INET6: "inet6"}


def protocol_of(family: int, sotype: int) -> str:
    if family == AF_UNIX:
        return {1: "unix_stream", 2: "unix_dgram", 5: "unix_seqpacket"}.get(sotype, "unix")
    return _SOTYPE.get(sotype, "unknown")


_OUTCOMES = {Outcome.ESTABLISHED: "established", Outcome.REFUSED: "refused",
             Outcome.FAILED: "failed", Outcome.PENDING: "pending"}


def connect_outcome(outcome: int, result: int) -> str:
    """``established`` | ``refused`` | ``failed`` | ``pending``: the TCP state machine's
    verdict when the kernel had one, else the syscall's result (UDP, unix, or a connect
    that failed before a SYN was sent).

    >>> connect_outcome(0, 0), connect_outcome(0, -111), connect_outcome(0, -115)
    ('established', 'refused', 'pending')
    >>> connect_outcome(1, -115)
    'established'
    """
    if outcome in _OUTCOMES:
        return _OUTCOMES[Outcome(outcome)]
    if result == 0:
        return "established"
    if result == -errno.ECONNREFUSED:
        return "refused"
    if result == -errno.EINPROGRESS:
        return "pending"
    return "failed"


def net_envelope(
    ev: NetEvent, *, node: str, pod: Pod | None, offset_ns: int, domain: str = "",
) -> Envelope:
    kind = {Kind.CONNECT: "net.connect", Kind.ACCEPT: "net.accept",
            Kind.LISTEN: "net.listen"}[Kind(ev.header.kind)]
    data: dict[str, Any] = {
        "family": _FAMILY.get(ev.family, str(ev.family)),
        "protocol": protocol_of(ev.family, ev.sotype), "cgroup_id": ev.header.cgroup_id,
    }
    if kind == "net.connect":
        data.update(result=ev.result, count=ev.header.count,
                    outcome=connect_outcome(ev.outcome, ev.result))
        if ev.result < 0:
            data["error"] = errno_name(ev.result)
        if ev.family == AF_UNIX:
            data["unix_path"] = ev.unix_path
        else:
            data.update(dst_addr=ev.daddr, dst_port=ev.dport)
            if domain:
                data["domain"] = domain
        if ev.lport:
            data["src_port"] = ev.lport
    elif kind == "net.accept":
        data.update(fd=ev.result, listen_fd=ev.fd, local_port=ev.lport)
        if ev.family == AF_UNIX:
            data["unix_path"] = ev.unix_path
        else:
            data.update(peer_addr=ev.daddr, peer_port=ev.dport)
    else:
        data.update(fd=ev.fd, local_port=ev.lport)
    return Envelope(kind=kind, ts=ev.header.ts + offset_ns, node=node, source="kernel",
                    data=data, pod=pod, proc=proc_of(ev.header))


def close_envelope(
    ev: CloseEvent, *, node: str, pod: Pod | None, offset_ns: int, domain: str = "",
) -> Envelope:
    data: dict[str, Any] = {
        "protocol": "tcp", "family": _FAMILY.get(ev.family, str(ev.family)),
        "src_addr": ev.saddr, "src_port": ev.sport, "dst_addr": ev.daddr,
        "dst_port": ev.dport, "bytes_sent": ev.bytes_sent,
        "bytes_received": ev.bytes_received, "duration_ns": ev.duration_ns,
        "cgroup_id": ev.header.cgroup_id,
    }
    if domain:
        data["domain"] = domain
    return Envelope(kind="net.close", ts=ev.header.ts + offset_ns, node=node, source="kernel",
                    data=data, pod=pod, proc=proc_of(ev.header))


def dns_envelope(ev: DnsEvent, *, node: str, pod: Pod | None, offset_ns: int) -> Envelope:
    msg = parse_dns(ev.payload)
    data: dict[str, Any] = {
        "direction": "answer" if ev.answer else "query", "id": msg.id,
        "questions": [{"name": n, "type": t} for n, t in msg.questions],
        "length": ev.length, "cgroup_id": ev.header.cgroup_id,
    }
    if ev.answer or msg.is_response:
        data["rcode"] = msg.rcode
        data["answers"] = [{"name": n, "type": t, "data": d, "ttl": ttl}
                           for n, t, d, ttl in msg.answers]
    if ev.server:
        data.update(server=ev.server, server_port=ev.port)
    if ev.length > len(ev.payload):
        data["capture_truncated"] = True
    if msg.error:
        data["parse_error"] = msg.error
    return Envelope(kind="net.dns", ts=ev.header.ts + offset_ns, node=node, source="kernel",
                    data=data, pod=pod, proc=proc_of(ev.header))


def resolved_addresses(envelope: Envelope) -> list[tuple[str, str]]:
    """(address, domain asked for) pairs of a net.dns answer envelope: every A/AAAA
    answer is credited to the question's name (CNAME chains collapse to it)."""
    return [(address, name) for address, name, _ttl in resolved_answers(envelope)]


def resolved_answers(envelope: Envelope) -> list[tuple[str, str, int]]:
    """(address, domain asked for, ttl in seconds) of a net.dns answer envelope."""
    data = envelope.data
    if data.get("direction") != "answer" or not data.get("questions"):
        return []
    asked = data["questions"][0]["name"]
    return [(a["data"], asked, int(a.get("ttl", 0))) for a in data.get("answers", [])
            if a["type"] in ("A", "AAAA")]


# -- namespaces and mounts --------------------------------------------------------------
_CLONE_NS = ((0x00020000, "mnt"), (0x04000000, "uts"), (0x08000000, "ipc"),
             (0x10000000, "user"), (0x20000000, "pid"), (0x40000000, "net"),
             (0x02000000, "cgroup"), (0x00000080, "time"))


def clone_ns_names(flags: int) -> list[str]:
    """CLONE_NEW* bits as namespace names.

    >>> clone_ns_names(0x40020000)
    ['mnt', 'net']
    """
    return [name for bit, name in _CLONE_NS if flags & bit]


def left_ns(ns: Namespaces | None, pod_ns: Namespaces | None) -> bool:
    """True when any known namespace differs from the pod's reference."""
    if ns is None or pod_ns is None:
        return False
    return any(a and b and a != b for a, b in ((ns.mnt, pod_ns.mnt), (ns.net, pod_ns.net),
                                                (ns.pid, pod_ns.pid),
                                                (ns.pid_children, pod_ns.pid_children)))


def nsop_envelope(
    ev: NsOpEvent, *, node: str, pod: Pod | None, offset_ns: int,
    pod_ns: Namespaces | None = None, target_pid: int | None = None,
    target: str | None = None,
) -> Envelope:
    """process.setns / process.unshare / process.mount. ``left_pod_ns``: after the call
    the process is in a namespace that is not its pod's (``pod_ns``)."""
    op = NsOp(ev.op)
    data: dict[str, Any] = {"result": ev.result, "cgroup_id": ev.header.cgroup_id}
    if ev.result < 0:
        data["error"] = errno_name(ev.result)
    if op == NsOp.SETNS:
        kind = "process.setns"
        names = clone_ns_names(ev.flags)
        data["nstype"] = names[0] if len(names) == 1 else (names or "any")
        data["fd"] = ev.fd
        if target_pid is not None:
            data["target_pid"] = target_pid
    elif op == NsOp.UNSHARE:
        kind = "process.unshare"
        data["flags"] = clone_ns_names(ev.flags)
    else:
        kind = "process.mount"
        data.update(source=ev.source, target=target or ev.target, fstype=ev.fstype,
                    flags=ev.flags)
        if target is not None and target != ev.target:
            data["raw_target"] = ev.target
    before, after = ns_fact(ev.before), ns_fact(ev.after)
    if before is not None:
        data["ns_before"] = before
    if after is not None:
        data["ns_after"] = after
    if op != NsOp.MOUNT:
        data["left_pod_ns"] = left_ns(ev.after, pod_ns)
    if pod_ns is not None:
        data["pod_ns"] = ns_fact(pod_ns)
    return Envelope(kind=kind, ts=ev.header.ts + offset_ns, node=node, source="kernel",
                    data=data, pod=pod, proc=proc_of(ev.header))


# -- syscall.profile ---------------------------------------------------------------------
def profile_envelope(
    cgroup_id: int, counts: dict[str, int], *, node: str, pod: Pod | None, ts: int,
    window_ns: int,
) -> Envelope:
    return Envelope(
        kind="syscall.profile", ts=ts, node=node, source="kernel", pod=pod,
        data={"syscalls": dict(sorted(counts.items())), "distinct": len(counts),
              "total": sum(counts.values()), "window_ns": window_ns, "cgroup_id": cgroup_id},
    )
