"""bcc side of the TLS capture: load ``ssl.bpf.c``, attach, fill the cgroup filter, and
drive :class:`~collectors.l7.capture.Capture` from the ring buffer.

:class:`SslProbes` is the thin IO layer (one BPF program, uprobes per libssl file, or per
executable with OpenSSL linked in, such as ``node``).
:class:`TlsCollector` runs it: a rescan loop keeps the kernel's cgroup filter equal to the
pod cgroups on the node and attaches to the libssl copies their processes map; a poll
loop drains the ring buffer into the capture. Both are plain threads, so the caller
(``cli.run`` or a test) owns the asyncio loop the publisher runs on.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from collectors.l7.blind import BlindSpot, BlindSpots
from collectors.l7.capture import Capture
from collectors.l7.chunks import decode
from collectors.l7.libssl import LibraryTracker, PodProcesses
from collectors.packages import ai_packages, site_dirs
from streams.events import Envelope, Proc

__all__ = ["COUNTERS", "SYMBOLS", "SslProbes", "TlsCollector"]

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "ssl.bpf.c"
COUNTERS = ("calls", "chunks", "lost", "truncated", "read_failures")  # CNT_* order
# symbol → (entry program, return program); all optional except that one must attach
SYMBOLS: dict[str, tuple[str, str | None]] = {
    "SSL_write": ("write_enter", "call_return"),
    "SSL_write_ex": ("write_ex_enter", "call_return"),
    "SSL_read": ("read_enter", "call_return"),
    "SSL_read_ex": ("read_ex_enter", "call_return"),
    "SSL_set_fd": ("set_fd_enter", None),
    "SSL_free": ("free_enter", None),
}
_DATA_SYMBOLS = ("SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex")


class SslProbes:
    """One loaded ``ssl.bpf.c``. ``max_capture`` (bytes per SSL call) and ``chunk_size``
    (bytes per ring-buffer record, a power of two) become ``-D`` defines; ``plain_http``
    adds the syscall tracepoints that capture unencrypted HTTP on pod sockets."""

    def __init__(
        self,
        *,
        max_capture: int = 128 * 1024,
        chunk_size: int = 4096,
        ringbuf_pages: int = 4096,
        include_host: bool = False,
        plain_http: bool = True,
    ) -> None:
        from bcc import BPF  # imported here so that the pure modules never need bcc

        if chunk_size & (chunk_size - 1) or not 256 <= chunk_size <= 32768:
            raise ValueError("chunk_size must be a power of two in [256, 32768]")
        if ringbuf_pages & (ringbuf_pages - 1):
            raise ValueError("ringbuf_pages must be a power of two")
        if max_capture < 1:
            raise ValueError("max_capture must be >= 1")
        self.max_capture = max_capture
        self.chunk_size = chunk_size
        self.include_host = include_host
        cflags = [
            f"-I{HERE}",
            f"-DMAX_CAPTURE={max_capture}",
            f"-DCHUNK_SIZE={chunk_size}",
            f"-DRINGBUF_PAGES={ringbuf_pages}",
        ]
        if include_host:
            cflags.append("-DINCLUDE_HOST")
        if plain_http:  # syscall tracepoints, attached by bcc as the program loads
            cflags.append("-DPLAIN_HTTP")
        self.plain_http = plain_http
        # bcc warns (DeprecationWarning) on str arguments: hand it bytes throughout
        self.bpf = BPF(src_file=str(SOURCE).encode(), cflags=cflags)
        self._watched = self.bpf[b"watched_cgroups"]
        self._watched_ids: set[int] = set()
        self._attached: dict[str, list[str]] = {}
        self._callback: Any = None

    # -- attaching ------------------------------------------------------------------
    def attach_library(self, path: str) -> list[str]:
        """Probe every known symbol ``path`` exports; return the ones probed.

        A library without any of the four data functions is not a libssl we can read,
        and gets nothing attached (returns ``[]``).
        """
        from bcc import BPF

        name = path.encode()
        exported = {n.decode() for n in BPF.get_user_functions(name, rb"SSL_")}
        present = [s for s in SYMBOLS if s in exported]
        if not any(s in present for s in _DATA_SYMBOLS):
            return []
        done: list[str] = []
        for sym in present:
            entry, ret = SYMBOLS[sym]
            self.bpf.attach_uprobe(name=name, sym=sym.encode(), fn_name=entry.encode())
            if ret is not None:
                self.bpf.attach_uretprobe(name=name, sym=sym.encode(), fn_name=ret.encode())
            done.append(sym)
        self._attached[path] = done
        return done

    def detach_library(self, path: str) -> None:
        for sym in self._attached.pop(path, []):
            _entry, ret = SYMBOLS[sym]
            self.bpf.detach_uprobe(name=path.encode(), sym=sym.encode())
            if ret is not None:
                self.bpf.detach_uretprobe(name=path.encode(), sym=sym.encode())

    @property
    def libraries(self) -> dict[str, list[str]]:
        return dict(self._attached)

    # -- the cgroup filter ----------------------------------------------------------
    def set_watched(self, cgroup_ids: Iterable[int]) -> tuple[int, int]:
        """Make the kernel filter equal ``cgroup_ids``; returns (added, removed)."""
        wanted = set(cgroup_ids)
        added = wanted - self._watched_ids
        removed = self._watched_ids - wanted
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

    # -- output ---------------------------------------------------------------------
    def open(self, on_record: Callable[[bytes], None]) -> None:
        """Deliver each ring-buffer record's bytes to ``on_record`` during :meth:`poll`."""

        def callback(_ctx: Any, data: Any, size: int) -> int:
            on_record(ctypes.string_at(data, size))
            return 0

        self._callback = callback  # bcc keeps a ctypes pointer; keep the function alive
        self.bpf[b"chunks"].open_ring_buffer(callback)

    def poll(self, timeout_ms: int = 100) -> None:
        self.bpf.ring_buffer_poll(timeout_ms)

    def counters(self) -> dict[str, int]:
        """Kernel-side counters summed over CPUs (see ``CNT_*`` in ssl_event.h)."""
        table = self.bpf[b"counters"]
        out = dict.fromkeys(COUNTERS, 0)
        for key, values in table.items():
            if key.value < len(COUNTERS):
                out[COUNTERS[key.value]] = int(sum(values))
        return out

    def close(self) -> None:
        self.bpf.cleanup()


class TlsCollector:
    """Keeps probes, cgroup filter and libraries current, and drains the ring buffer.

    ``rescan_s`` is how often pod cgroups and their processes are listed; a pod's TLS
    traffic is captured from the first scan that sees both its cgroup and its libssl.
    """

    def __init__(
        self,
        probes: SslProbes,
        capture: Capture,
        pods: PodProcesses,
        *,
        rescan_s: float = 1.0,
        poll_ms: int = 100,
        report_packages: bool = False,
    ) -> None:
        self.probes = probes
        self.report_packages_on = report_packages
        self.capture = capture
        self.pods = pods
        self.tracker = LibraryTracker(probes.attach_library, blind=BlindSpots())
        self.rescan_s = rescan_s
        self.poll_ms = poll_ms
        self.stats: dict[str, int] = {"rescans": 0, "rescan_errors": 0, "watched_pids": 0,
                                      "package_reports": 0,
                                      "blind_spots_reported": 0}
        # pid → the site dirs its AI packages were last read from (bounded; issue 17)
        self._package_sites: OrderedDict[int, tuple[str, ...]] = OrderedDict()
        self._packages_sent: OrderedDict[tuple[int, tuple[tuple[str, str], ...]], None] = \
            OrderedDict()
        self._blind_reported: set[tuple[object, int]] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # capture is single-threaded: poll and sweep share it
        probes.open(self._on_record)

    def _on_record(self, raw: bytes) -> None:
        try:
            chunk = decode(raw)
        except ValueError:
            self.capture.stats["bad_records"] += 1
            return
        self.capture.handle(chunk)

    def rescan(self) -> None:
        """One pass: cgroup filter, new libraries, connections of exited processes."""
        cgroups = self.pods.cgroups()
        self.probes.set_watched(cgroups)
        pid_cgroups = self.pods.pid_cgroups(cgroups)
        self.tracker.check(pid_cgroups)
        self.stats["rescans"] += 1
        self.stats["watched_pids"] = len(pid_cgroups)
        spots = self.tracker.take_blind()
        with self._lock:
            for spot in spots:
                self._report_blind(spot, pid_cgroups.get(spot.pid))
            self.capture.close_pids(lambda pid: os.path.exists(f"/proc/{pid}"))
        if self.report_packages_on:
            self.report_packages(cgroups)

    def report_packages(self, cgroups: dict[int, str], limit: int = 4096) -> None:
        """A ``process.packages`` event (AI SDKs installed where the process loads its
        packages from, read in its own root) once per pod container and package set; a
        pid is read again only when the site dirs it maps change."""
        for cgid, path in cgroups.items():
            pod = self.capture.attribute(cgid)
            if pod is None:
                continue
            for pid in sorted(self.pods.pids({cgid: path})):
                try:
                    sites = tuple(site_dirs(Path(f"/proc/{pid}/maps").read_text()))
                except OSError:
                    continue
                if not sites or self._package_sites.get(pid) == sites:
                    continue
                self._package_sites[pid] = sites
                self._package_sites.move_to_end(pid)
                while len(self._package_sites) > limit:
                    self._package_sites.popitem(last=False)
                packages = ai_packages(pid)
                key = (cgid, tuple((p["name"], p["version"]) for p in packages))
                if not packages or key in self._packages_sent:
                    continue
                self._packages_sent[key] = None
                while len(self._packages_sent) > limit:
                    self._packages_sent.popitem(last=False)
                envelope = Envelope("process.packages", time.time_ns(), self.capture.node, "l7",
                                    {"packages": packages}, pod=pod, proc=Proc(pid=pid))
                with self._lock:
                    self.capture.emit(envelope)
                self.stats["package_reports"] += 1

    def _report_blind(self, spot: BlindSpot, cgroup_id: int | None) -> None:
        """``collector.blind_spot`` on the pod: its process speaks TLS we cannot read, so
        a story can say what it did not see instead of implying silence."""
        key = (spot.ident, cgroup_id)
        if cgroup_id is None or key in self._blind_reported:
            return
        self._blind_reported.add(key)
        comm = ""
        with contextlib.suppress(OSError):
            comm = Path(f"/proc/{spot.pid}/comm").read_text().strip()
        envelope = Envelope(
            kind="collector.blind_spot", ts=time.time_ns(), node=self.capture.node,
            source="l7", pod=self.capture.attribute(cgroup_id),
            proc=Proc(pid=spot.pid, comm=comm),
            data={"layer": "l7", "path": spot.path, "tls": list(spot.families),
                  "reason": "carries a TLS implementation without a probeable SSL_write "
                            "(not a libssl, no exported symbol): TLS through it is not seen"},
        )
        self.stats["blind_spots_reported"] += 1
        try:
            self.capture.emit(envelope)
        except Exception:  # the publisher's problem must not end the scans
            log.exception("emit failed for collector.blind_spot")

    def start(self) -> None:
        self.rescan()
        for name, target in (("l7-rescan", self._rescan_loop), ("l7-poll", self._poll_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _rescan_loop(self) -> None:
        while not self._stop.wait(self.rescan_s):
            try:
                self.rescan()
            except Exception:  # a transient procfs/cgroupfs race must not end the scans
                self.stats["rescan_errors"] += 1
                log.exception("l7 rescan failed")

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self.probes.poll(self.poll_ms)

    def drain(self) -> None:
        """Deliver what is in the ring buffer now (tests and shutdown)."""
        with self._lock:
            self.probes.poll(0)

    def stop(self) -> None:
        """Stop the loops, drain the ring buffer, flush the parser's open connections."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        with self._lock:
            self.probes.poll(0)
            self.capture.close_all()

    def snapshot(self) -> dict[str, Any]:
        """Every counter, for logs and the collector.stats event."""
        parser_stats = dict(getattr(self.capture.parser, "stats", {}))
        return {
            "kernel": self.probes.counters(),
            "capture": dict(self.capture.stats),
            "parser": parser_stats,
            "collector": dict(self.stats),
            "discovery": {**self.tracker.stats, **self.tracker.exports.stats,
                          **(self.tracker.blind.stats if self.tracker.blind else {})},
            "libraries": sorted(self.probes.libraries),
            "blind_spots": self.tracker.blind.summary() if self.tracker.blind else [],
            "watched_cgroups": len(self.probes.watched),
            "connections": self.capture.connections,
        }
