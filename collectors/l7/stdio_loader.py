"""bcc and procfs side of MCP-over-stdio capture: load ``stdio.bpf.c``, keep its cgroup
filter equal to the pod cgroups, find the server at the other end of a candidate pipe,
and drain the ring buffer into :class:`~collectors.l7.stdio.StdioMcp`.

Separate from the TLS probes (its own BPF object and ring buffer): either can run
without the other, and its cost is measured on its own (tests/bench).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from collectors.l7.libssl import PodProcesses
from collectors.l7.stdio import ServerProcess, StdioMcp

__all__ = ["COUNTERS", "StdioCollector", "StdioProbes", "find_client", "find_server"]

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "stdio.bpf.c"
COUNTERS = ("candidates", "calls", "records", "lost", "truncated", "read_failures",
            "early_reads")


class StdioProbes:
    """One loaded ``stdio.bpf.c`` (read/write/close tracepoints attach as it loads)."""

    def __init__(self, *, max_capture: int = 256 * 1024, chunk_size: int = 4096,
                 ringbuf_pages: int = 1024) -> None:
        from bcc import BPF  # here, so the pure modules never need bcc

        if chunk_size & (chunk_size - 1) or not 256 <= chunk_size <= 32768:
            raise ValueError("chunk_size must be a power of two in [256, 32768]")
        if ringbuf_pages & (ringbuf_pages - 1):
            raise ValueError("ringbuf_pages must be a power of two")
        self.max_capture = max_capture
        cflags = [f"-I{HERE}", f"-DMAX_CAPTURE={max_capture}", f"-DCHUNK_SIZE={chunk_size}",
                  f"-DRINGBUF_PAGES={ringbuf_pages}"]
        self.bpf = BPF(src_file=str(SOURCE).encode(), cflags=cflags)
        self._watched = self.bpf[b"watched_cgroups"]
        self._pipes = self.bpf[b"pipes"]
        self._pending = self.bpf[b"pending"]
        self._watched_ids: set[int] = set()
        self._callback: Any = None

    def set_watched(self, cgroup_ids: Iterable[int]) -> tuple[int, int]:
        """Make the kernel's cgroup filter equal ``cgroup_ids``; returns (added, removed)."""
        wanted = set(cgroup_ids)
        added, removed = wanted - self._watched_ids, self._watched_ids - wanted
        key_t, leaf_t = self._watched.Key, self._watched.Leaf
        for cgid in added:
            self._watched[key_t(cgid)] = leaf_t(1)
        for cgid in removed:
            with contextlib.suppress(KeyError):
                del self._watched[key_t(cgid)]
        self._watched_ids = wanted
        return len(added), len(removed)

    @property
    def watched(self) -> frozenset[int]:
        return frozenset(self._watched_ids)

    def watch(self, pid: int, fds: list[int]) -> None:
        for fd in fds:
            key = self._pipes.Key(pid, fd)
            self._pipes[key] = self._pipes.Leaf(1)

    def unwatch(self, pid: int, fds: list[int]) -> None:
        for fd in fds:
            with contextlib.suppress(KeyError):
                del self._pipes[self._pipes.Key(pid, fd)]

    def settle(self, pid: int) -> None:
        """User space judged ``pid``'s candidate: stop looking at its early reads."""
        with contextlib.suppress(KeyError):
            del self._pending[self._pending.Key(pid)]

    def watched_fds(self) -> list[tuple[int, int]]:
        return sorted((k.pid, k.fd) for k in self._pipes)

    def open(self, on_record: Callable[[bytes], None]) -> None:
        def callback(_ctx: Any, data: Any, size: int) -> int:
            on_record(ctypes.string_at(data, size))
            return 0

        self._callback = callback  # bcc keeps a ctypes pointer; keep the function alive
        self.bpf[b"records"].open_ring_buffer(callback)

    def poll(self, timeout_ms: int = 100) -> None:
        self.bpf.ring_buffer_poll(timeout_ms)

    def counters(self) -> dict[str, int]:
        out = dict.fromkeys(COUNTERS, 0)
        for key, values in self.bpf[b"counters"].items():
            if key.value < len(COUNTERS):
                out[COUNTERS[key.value]] = int(sum(values))
        return out

    def close(self) -> None:
        self.bpf.cleanup()


# -- the other end of a pipe (procfs) -------------------------------------------------
def _fd_links(pid: int, proc: str) -> dict[int, str]:
    out: dict[int, str] = {}
    try:
        names = os.listdir(f"{proc}/{pid}/fd")
    except OSError:
        return out
    for name in names:
        with contextlib.suppress(OSError, ValueError):
            out[int(name)] = os.readlink(f"{proc}/{pid}/fd/{name}")
    return out


def _ppid(pid: int, proc: str) -> int:
    try:
        text = Path(f"{proc}/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(text.rsplit(")", 1)[1].split()[1])


def _same_cgroup_pids(pid: int, proc: str, cgroup_root: str) -> list[int]:
    try:
        lines = Path(f"{proc}/{pid}/cgroup").read_text().splitlines()
        path = next(ln.split(":", 2)[2] for ln in lines if ln.startswith("0::"))
        text = Path(f"{cgroup_root}/{path.lstrip('/')}/cgroup.procs").read_text()
    except (OSError, StopIteration, IndexError):
        return []
    return [int(p) for p in text.split()]


def _start_time(pid: int, proc: str) -> int:
    try:
        text = Path(f"{proc}/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(text.rsplit(")", 1)[1].split()[19])


def _socket_child(pid: int, proc: str, cgroup_root: str) -> ServerProcess | None:
    """libuv (Node) gives a child's stdio Unix socket pairs, not pipes, and procfs does
    not say which end pairs with which: the server is ``pid``'s newest child in its
    cgroup whose stdin is a socket; its read fd is found later, from the answer to
    initialize (``read_fd`` -1)."""
    children = [p for p in _same_cgroup_pids(pid, proc, cgroup_root)
                if p != pid and _ppid(p, proc) == pid
                and _fd_links(p, proc).get(0, "").startswith("socket:[")]
    if not children:
        return None
    return _process(max(children, key=lambda p: _start_time(p, proc)), -1, proc)


def find_server(pid: int, fd: int, *, proc: str = "/proc",
                cgroup_root: str = "/sys/fs/cgroup") -> ServerProcess | None:
    """The process of ``pid``'s cgroup that holds the other end of pipe ``fd`` (the
    deepest one when a launcher such as npx and its child both hold it), and ``pid``'s
    fd that reads the server's stdout. None when ``fd`` is not a pipe shared that way."""
    link = os.readlink(f"{proc}/{pid}/fd/{fd}")
    if link.startswith("socket:["):
        return _socket_child(pid, proc, cgroup_root)
    if not link.startswith("pipe:["):
        return None
    holders: dict[int, dict[int, str]] = {}
    for other in _same_cgroup_pids(pid, proc, cgroup_root):
        if other == pid:
            continue
        links = _fd_links(other, proc)
        if link in links.values():
            holders[other] = links
    if not holders:
        return None
    parents = {_ppid(p, proc) for p in holders}
    server = next((p for p in sorted(holders) if p not in parents), min(holders))
    links = holders[server]
    mine = _fd_links(pid, proc)
    read_fd = -1
    outs = [links[1]] if 1 in links else []
    outs += [v for k, v in sorted(links.items()) if v.startswith("pipe:[") and v != link]
    for out in outs:
        found = sorted(f for f, v in mine.items() if v == out and f != fd)
        if found:
            read_fd = found[0]
            break
    try:
        exe = os.readlink(f"{proc}/{server}/exe").removesuffix(" (deleted)")
    except OSError:
        exe = ""
    try:
        raw = Path(f"{proc}/{server}/cmdline").read_bytes()
        argv = tuple(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a)
    except OSError:
        argv = ()
    return ServerProcess(server, exe, argv, read_fd)


def _writes(pid: int, fd: int, proc: str) -> bool:
    """Whether ``fd`` of ``pid`` is open for writing (the write end of a pipe)."""
    try:
        text = Path(f"{proc}/{pid}/fdinfo/{fd}").read_text()
    except OSError:
        return False
    flags = next((ln.split()[1] for ln in text.splitlines() if ln.startswith("flags:")), "0")
    return int(flags, 8) & 0o3 in (0o1, 0o2)


def _process(pid: int, read_fd: int, proc: str) -> ServerProcess:
    try:
        exe = os.readlink(f"{proc}/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        exe = ""
    try:
        raw = Path(f"{proc}/{pid}/cmdline").read_bytes()
        argv = tuple(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a)
    except OSError:
        argv = ()
    return ServerProcess(pid, exe, argv, read_fd)


def find_client(server_pid: int, within: set[int], *, proc: str = "/proc",
                max_depth: int = 4) -> tuple[int, int, ServerProcess] | None:
    """For a server already running: the ancestor in ``within`` (its pod's pids) that
    writes its stdin (the client, as ``(pid, write fd, server)`` with the client's fd
    reading the server's stdout), found by walking up from its parent through launchers
    such as npx or sh."""
    links = _fd_links(server_pid, proc)
    stdin, stdout = links.get(0, ""), links.get(1, "")
    if not stdin.startswith("pipe:["):
        return None
    pid = server_pid
    for _ in range(max_depth):
        pid = _ppid(pid, proc)
        if pid not in within:
            return None
        mine = _fd_links(pid, proc)
        writes = sorted(f for f, v in mine.items() if v == stdin and _writes(pid, f, proc))
        if not writes:
            continue
        reads = sorted(f for f, v in mine.items() if v == stdout and stdout.startswith("pipe:[")
                       and not _writes(pid, f, proc))
        return pid, writes[0], _process(server_pid, reads[0] if reads else -1, proc)
    return None


class StdioCollector:
    """Keeps the cgroup filter current and drains the ring buffer into ``mcp``."""

    def __init__(self, probes: StdioProbes, mcp: StdioMcp, pods: PodProcesses, *,
                 rescan_s: float = 1.0, poll_ms: int = 100,
                 servers: Iterable[str] = (), proc: str = "/proc") -> None:
        """``servers``: executables known to be MCP stdio servers (a basename such as
        ``github-mcp-server``, or a server label such as ``python3.11 -m tickets``):
        their sessions are taken up by the rescan even when ``initialize`` was missed
        (the collector started later)."""
        self.probes = probes
        self.mcp = mcp
        self.pods = pods
        self.servers = frozenset(servers)
        self.proc = proc
        self._looked: set[tuple[int, str]] = set()  # (pid, exe): a pid that execs is new
        self.rescan_s = rescan_s
        self.poll_ms = poll_ms
        self.stats: dict[str, int] = {"rescans": 0, "rescan_errors": 0,
                                      "configured_adopted": 0, "configured_without_client": 0}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        probes.open(self._on_record)

    def _on_record(self, raw: bytes) -> None:
        self.mcp.handle_raw(raw)

    def rescan(self) -> None:
        cgroups = self.pods.cgroups()
        self.probes.set_watched(cgroups)
        self.stats["rescans"] += 1
        with self._lock:
            self.mcp.close_pids(lambda pid: os.path.exists(f"{self.proc}/{pid}"))
            if self.servers:
                self._adopt(set(self.pods.pid_cgroups(cgroups)))

    def _adopt(self, pids: set[int]) -> None:
        """Take up the sessions of configured server executables not watched yet."""
        self._looked = {k for k in self._looked if k[0] in pids}
        running = self.mcp.server_pids
        for pid in sorted(pids - running):
            try:
                key = (pid, os.readlink(f"{self.proc}/{pid}/exe"))
            except OSError:
                continue
            if key in self._looked:
                continue
            self._looked.add(key)
            server = _process(pid, -1, self.proc)
            names = {server.label, os.path.basename(server.exe)}
            if server.argv:
                names.add(os.path.basename(server.argv[0]))
            if not names & self.servers:
                continue
            found = find_client(pid, pids, proc=self.proc)
            if found is None:
                self.stats["configured_without_client"] += 1
                continue
            client, write_fd, full = found
            if self.mcp.adopt(client, write_fd, full):
                self.stats["configured_adopted"] += 1

    def start(self) -> None:
        self.rescan()
        for name, target in (("stdio-rescan", self._rescan_loop), ("stdio-poll", self._poll)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _rescan_loop(self) -> None:
        while not self._stop.wait(self.rescan_s):
            try:
                self.rescan()
            except Exception:  # a procfs/cgroupfs race must not end the scans
                self.stats["rescan_errors"] += 1
                log.exception("stdio rescan failed")

    def _poll(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self.probes.poll(self.poll_ms)

    def drain(self) -> None:
        with self._lock:
            self.probes.poll(0)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        self.drain()

    def snapshot(self) -> dict[str, Any]:
        return {"kernel": self.probes.counters(), "stdio": dict(self.mcp.stats),
                "collector": dict(self.stats), "sessions": self.mcp.sessions,
                "watched_cgroups": len(self.probes.watched)}
