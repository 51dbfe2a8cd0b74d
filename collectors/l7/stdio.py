"""MCP over stdio: pipe records from ``stdio.bpf.c`` → ``mcp.call`` / ``mcp.result``.

The MCP stdio transport is newline-delimited JSON-RPC on the pipes between an agent (the
client) and the server process it spawned. The kernel submits the first write of each
pod fd that starts with ``{"`` as a *candidate*; :class:`StdioMcp` accepts it only when
the line is an MCP ``initialize`` request and ``find_server`` names the process at the
other end of the pipe (and the client's fd that reads the server's replies). It then
asks ``watch`` to add both client fds to the kernel's map, and from then on frames what
the client wrote and read into lines and hands the JSON-RPC messages to the L7 parser's
MCP logic, so the events are the same as MCP over HTTP (redaction, content policy,
injection scoring, id matching) with ``transport: "stdio"``, the server's process and a
``host`` of ``stdio:<server>`` (the server's stable name, where HTTP has a host).

Pure apart from the injected callables (the loader passes procfs and bcc ones).
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson

from collectors.l7 import mcp
from streams.events import Envelope, Pod, Proc

__all__ = [
    "CANDIDATE",
    "CLOSE",
    "DATA",
    "EARLY_READ",
    "HEADER",
    "LineFramer",
    "PipeRecord",
    "ServerProcess",
    "StdioMcp",
    "decode_record",
    "encode_record",
    "server_label",
]

log = logging.getLogger(__name__)

# ts_ns cgroup_id | pid tid fd total_len offset len | kind direction truncated pad
# | comm[16] | pad2
HEADER = struct.Struct("<QQIIiIIIBBBB16sI")
DATA, CANDIDATE, CLOSE, EARLY_READ = 0, 1, 2, 3
DIRECTIONS = ("egress", "ingress")
_INTERPRETERS = ("python", "node", "bun", "deno", "uv", "uvx", "npx", "java", "ruby", "perl")


@dataclass(frozen=True, slots=True)
class PipeRecord:
    """One record of ``stdio.bpf.c`` (mirror of ``struct stdio_hdr`` + payload)."""

    ts_ns: int
    cgroup_id: int
    pid: int
    tid: int
    fd: int
    total_len: int
    offset: int
    kind: int
    direction: str
    truncated: bool
    comm: str
    data: bytes


def decode_record(raw: bytes) -> PipeRecord:
    """Ring-buffer bytes → :class:`PipeRecord`; ``ValueError`` on a short record."""
    if len(raw) < HEADER.size:
        raise ValueError(f"record of {len(raw)} bytes is shorter than the header")
    (ts, cgid, pid, tid, fd, total, offset, length, kind, direction, truncated, _pad,
     comm, _pad2) = HEADER.unpack_from(raw)
    data = bytes(raw[HEADER.size : HEADER.size + length])
    if len(data) != length:
        raise ValueError(f"record says {length} payload bytes, carries {len(data)}")
    return PipeRecord(ts, cgid, pid, tid, fd, total, offset, kind,
                      DIRECTIONS[direction] if direction < 2 else "unknown", bool(truncated),
                      comm.split(b"\0", 1)[0].decode("utf-8", "replace"), data)


def encode_record(rec: PipeRecord) -> bytes:
    """The inverse of :func:`decode_record` (tests build records with it)."""
    return HEADER.pack(rec.ts_ns, rec.cgroup_id, rec.pid, rec.tid, rec.fd, rec.total_len,
                       rec.offset, len(rec.data), rec.kind, DIRECTIONS.index(rec.direction),
                       int(rec.truncated), 0, rec.comm.encode()[:16], 0) + rec.data


@dataclass(frozen=True, slots=True)
class ServerProcess:
    """The process at the other end of the client's pipes, and the client's read fd."""

    pid: int
    exe: str
    argv: tuple[str, ...]
    read_fd: int  # the client's fd that reads what the server writes

    @property
    def label(self) -> str:
        return server_label(self.exe, self.argv)


def server_label(exe: str, argv: tuple[str, ...] | list[str]) -> str:
    """A stable name for a stdio server: its program, and for an interpreter the script
    or module it runs (pids and paths of temporary files would make every run new).

    >>> server_label("/usr/bin/python3.11", ["python3", "-u", "-m", "tickets.server", "--x"])
    'python3.11 -m tickets.server'
    >>> server_label("/usr/local/bin/node", ["node", "/app/dist/index.js"])
    'node index.js'
    >>> server_label("/opt/bin/github-mcp-server", ["github-mcp-server", "stdio"])
    'github-mcp-server'
    """
    prog = os.path.basename(exe) or (os.path.basename(argv[0]) if argv else "?")
    if not prog.startswith(_INTERPRETERS):
        return prog
    args = list(argv[1:])
    for i, arg in enumerate(args):
        if arg == "-m" and i + 1 < len(args):
            return f"{prog} -m {args[i + 1]}"
        if not arg.startswith("-"):
            return f"{prog} {os.path.basename(arg)}"
    return prog


class LineFramer:
    """Newline framing of one byte stream, each line capped at ``max_line`` bytes
    (a longer one is dropped whole, up to its newline, and counted by the caller)."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._skipping = False
        self.overlong = 0

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            piece = data[start:nl]
            if self._skipping:
                self._skipping = False
            else:
                self._buf += piece
                if len(self._buf) <= self.max_line:
                    lines.append(bytes(self._buf))
                else:
                    self.overlong += 1
            self._buf.clear()
            start = nl + 1
        rest = data[start:]
        if not self._skipping:
            self._buf += rest
            if len(self._buf) > self.max_line:
                self.overlong += 1
                self._buf.clear()
                self._skipping = True
        return lines


class RpcParser(Protocol):
    """What :class:`StdioMcp` needs from :class:`collectors.l7.parser.L7Parser`."""

    def rpc_events(self, conn: Any, messages: list[mcp.RpcMessage], origin: str, ts: int,
                   extra: dict[str, Any]) -> list[Any]: ...

    def close(self, conn: Any) -> list[Any]: ...


@dataclass(slots=True)
class _Session:
    client_pid: int
    write_fd: int
    server: ServerProcess
    framers: dict[str, LineFramer] = field(default_factory=dict)
    gap: dict[str, bool] = field(default_factory=dict)  # direction lost bytes: resync at \n
    init_id: str = ""  # the initialize request's id (JSON), while the read fd is unknown

    @property
    def key(self) -> tuple[str, int, int]:
        return ("stdio", self.client_pid, self.write_fd)


class StdioMcp:
    """Candidate → session → events. ``find_server(pid, fd)`` looks for the process at
    the other end of the pipe ``fd`` of ``pid`` (None: not a spawned server);
    ``watch(pid, fds)`` / ``unwatch(pid, fds)`` edit the kernel's map, ``settle(pid)``
    ends the kernel's look at the early reads of a judged candidate; ``attribute`` and
    ``emit`` are as for :class:`~collectors.l7.capture.Capture`.

    A server that answers ``initialize`` before its pipe is watched is still seen: the
    kernel submits the candidate's early reads that start a JSON object, and those on the
    session's read fd are taken as its data (the ring buffer keeps the order: the
    candidate write comes first)."""

    def __init__(
        self,
        parser: RpcParser,
        *,
        node: str,
        attribute: Callable[[int], Pod | None],
        emit: Callable[[Envelope], object],
        find_server: Callable[[int, int], ServerProcess | None],
        watch: Callable[[int, list[int]], None],
        unwatch: Callable[[int, list[int]], None],
        settle: Callable[[int], None] = lambda _pid: None,
        clock_offset_ns: int = 0,
        max_capture: int = 256 * 1024,
        max_line: int = 4 * 1024 * 1024,
        max_sessions: int = 4096,
    ) -> None:
        self.parser = parser
        self.node = node
        self.attribute = attribute
        self.emit = emit
        self.find_server = find_server
        self.watch = watch
        self.unwatch = unwatch
        self.settle = settle
        self.clock_offset_ns = clock_offset_ns
        self.max_capture = max_capture
        self.max_line = max_line
        self.max_sessions = max_sessions
        self._sessions: dict[tuple[int, int], _Session] = {}  # (pid, fd) -> session
        self._awaiting: dict[int, _Session] = {}  # client pid -> session without a read fd
        self.stats: dict[str, int] = dict.fromkeys(
            ("records", "bad_records", "candidates", "candidates_not_mcp",
             "candidates_no_server", "sessions", "sessions_closed", "sessions_refused",
             "lines", "bad_lines", "overlong_lines", "lost_bytes", "events", "emitted",
             "emit_failures", "early_reads", "early_reads_ignored", "sessions_adopted",
             "read_fds_found"), 0)

    @property
    def sessions(self) -> list[dict[str, Any]]:
        """The sessions being watched (for stats)."""
        seen = {id(s): s for s in self._sessions.values()}
        return [{"client_pid": s.client_pid, "server_pid": s.server.pid,
                 "server": s.server.label} for s in seen.values()]

    def handle_raw(self, raw: bytes) -> None:
        try:
            rec = decode_record(raw)
        except ValueError:
            self.stats["bad_records"] += 1
            return
        self.handle(rec)

    def handle(self, rec: PipeRecord) -> None:
        """Take one record. Never raises on its content."""
        self.stats["records"] += 1
        if rec.kind == CANDIDATE and rec.offset == 0:
            self._candidate(rec)
        elif rec.kind == CLOSE:
            self._close(rec.pid, rec.fd)
        else:  # data, an early read, or the later pieces of a long candidate write
            session = self._sessions.get((rec.pid, rec.fd))
            if rec.kind == EARLY_READ and session is None:
                session = self._read_fd_found(rec)
            if rec.kind == EARLY_READ:
                self.stats["early_reads" if session else "early_reads_ignored"] += 1
            if session is not None:
                self._data(session, rec)

    def close_pids(self, alive: Callable[[int], bool]) -> int:
        """End the sessions of clients that exited (no close() is seen for those)."""
        dead = {k for k, s in self._sessions.items() if not alive(s.client_pid)}
        for pid, fd in dead:
            self._close(pid, fd)
        return len(dead)

    # -- internals --------------------------------------------------------------------
    def _candidate(self, rec: PipeRecord) -> None:
        self.stats["candidates"] += 1
        session = None
        try:
            session = self._judge(rec)
        finally:
            if session is None or session.server.read_fd >= 0:
                self.settle(rec.pid)
            # else: the early reads are still needed, to find the read fd

    def _read_fd_found(self, rec: PipeRecord) -> _Session | None:
        """An early read that answers a session's initialize (same id) names the fd
        the client reads the server on (socket pairs: the ends cannot be matched from
        procfs)."""
        waiting = self._awaiting.get(rec.pid)
        if waiting is None or rec.offset != 0 or not waiting.init_id:
            return None
        try:
            obj = orjson.loads(rec.data.split(b"\n", 1)[0])
        except orjson.JSONDecodeError:
            return None
        if not (isinstance(obj, dict) and ("result" in obj or "error" in obj)
                and orjson.dumps(obj.get("id")).decode() == waiting.init_id):
            return None
        del self._awaiting[rec.pid]
        waiting.server = replace(waiting.server, read_fd=rec.fd)
        waiting.init_id = ""
        self._sessions[(rec.pid, rec.fd)] = waiting
        self.watch(rec.pid, [rec.fd])
        self.settle(rec.pid)
        self.stats["read_fds_found"] += 1
        return waiting

    def _judge(self, rec: PipeRecord) -> _Session | None:
        if not _is_initialize(rec.data):
            self.stats["candidates_not_mcp"] += 1
            return None
        if len({id(s) for s in self._sessions.values()}) >= self.max_sessions:
            self.stats["sessions_refused"] += 1
            return None
        try:
            server = self.find_server(rec.pid, rec.fd)
        except OSError:
            server = None
        if server is None:
            self.stats["candidates_no_server"] += 1
            return None
        session = self._open(rec.pid, rec.fd, server)
        if server.read_fd < 0:
            obj = orjson.loads(rec.data.split(b"\n", 1)[0])  # parsed by _is_initialize
            session.init_id = orjson.dumps(obj.get("id")).decode()
            self._awaiting[rec.pid] = session
        self._data(session, rec)
        return session

    def _open(self, client_pid: int, write_fd: int, server: ServerProcess) -> _Session:
        session = _Session(client_pid, write_fd, server)
        fds = [write_fd] if server.read_fd < 0 else [write_fd, server.read_fd]
        self.watch(client_pid, fds)
        for fd in fds:
            self._sessions[(client_pid, fd)] = session
        self.stats["sessions"] += 1
        log.info("MCP over stdio: pid %d ↔ server pid %d (%s)", client_pid, server.pid,
                 server.label)
        return session

    def adopt(self, client_pid: int, write_fd: int, server: ServerProcess) -> bool:
        """Watch a session already under way (a configured server executable found by a
        rescan, its ``initialize`` unseen). Lines are taken from the first one that
        opens a JSON value in each direction; calls made before are not matched."""
        if (client_pid, write_fd) in self._sessions:
            return False
        if len({id(s) for s in self._sessions.values()}) >= self.max_sessions:
            self.stats["sessions_refused"] += 1
            return False
        session = self._open(client_pid, write_fd, server)
        session.gap = {"egress": True, "ingress": True}
        self.stats["sessions_adopted"] += 1
        return True

    @property
    def server_pids(self) -> set[int]:
        return {s.server.pid for s in self._sessions.values()}

    def _close(self, pid: int, fd: int) -> None:
        session = self._sessions.get((pid, fd))
        if session is None:
            return
        fds = [k[1] for k, s in self._sessions.items() if s is session]
        for other in fds:
            del self._sessions[(pid, other)]
        if self._awaiting.get(pid) is session:
            del self._awaiting[pid]
            self.settle(pid)
        self.unwatch(pid, fds)
        self.parser.close(session.key)
        self.stats["sessions_closed"] += 1

    def _data(self, session: _Session, rec: PipeRecord) -> None:
        direction = rec.direction
        framer = session.framers.get(direction)
        if framer is None:
            framer = session.framers[direction] = LineFramer(self.max_line)
        data = rec.data
        if session.gap.get(direction):
            # Bytes were lost: resume at a line that opens a JSON value, else after the
            # next newline (the rest of the cut line).
            if data.lstrip()[:1] not in (b"{", b"["):
                nl = data.find(b"\n")
                if nl < 0:
                    return
                data = data[nl + 1 :]
            session.gap[direction] = False
        lines = framer.feed(data)
        if rec.truncated and rec.offset + len(rec.data) >= min(rec.total_len, self.max_capture):
            self.stats["lost_bytes"] += rec.total_len - rec.offset - len(rec.data)
            framer.feed(b"\n")  # drop the partial line the loss cut
            session.gap[direction] = True
        self.stats["overlong_lines"] += framer.overlong
        framer.overlong = 0
        if not lines:
            return
        # Lines the client wrote are its messages ("c"); lines it read, the server's.
        origin = "c" if direction == "egress" else "s"
        messages: list[mcp.RpcMessage] = []
        for line in lines:
            self.stats["lines"] += 1
            got = _messages(line)
            if got is None:
                self.stats["bad_lines"] += 1
                continue
            messages.extend(got)
        if not messages:
            return
        server = session.server
        extra = {
            "transport": "stdio",
            "host": f"stdio:{server.label}",
            "path": "",
            "server_process": {"pid": server.pid, "exe": server.exe,
                               "argv": list(server.argv)},
        }
        ts = rec.ts_ns + self.clock_offset_ns
        try:
            events = self.parser.rpc_events(session.key, messages, origin, ts, extra)
        except Exception:  # the parser promises not to raise; capture must go on
            log.exception("stdio MCP parse failed")
            return
        pod = self.attribute(rec.cgroup_id)
        proc = Proc(pid=rec.pid, tid=rec.tid, comm=rec.comm)
        conn = {"id": f"{session.client_pid}:stdio{session.write_fd}", "tls": False,
                "transport": "stdio"}
        for event in events:
            self.stats["events"] += 1
            envelope = Envelope(kind=event.kind, ts=event.ts, node=self.node, source="l7",
                                data={**event.data, "conn": conn}, pod=pod, proc=proc)
            try:
                accepted = self.emit(envelope)
            except Exception:
                self.stats["emit_failures"] += 1
                log.exception("emit failed for %s", event.kind)
                continue
            self.stats["emitted" if accepted is not False else "emit_failures"] += 1


def _messages(line: bytes) -> list[mcp.RpcMessage] | None:
    line = line.strip()
    if not line:
        return []
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    out = [m for obj in (value if isinstance(value, list) else [value])
           if (m := mcp.classify(obj)) is not None]
    return out if out else None


def _is_initialize(data: bytes) -> bool:
    """Whether the first line of ``data`` is a JSON-RPC ``initialize`` request."""
    line = data.split(b"\n", 1)[0]
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return (isinstance(obj, dict) and obj.get("jsonrpc") == "2.0"
            and obj.get("method") == "initialize" and "id" in obj)
