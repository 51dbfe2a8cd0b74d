"""bcc load/attach and the ring-buffer → envelope loop of the kernel collector (IO).

One BPF module is built from the concern files asked for (``exec.bpf.c`` …), sharing one
ring buffer, one pod-cgroup filter map and one counter array (``common.bpf.h``). bcc only
rewrites map calls and tracepoint argument structs in the main source, so
:func:`assemble_source` inlines the header and concatenates the concern files.

Filtering happens in the kernel: only tasks whose cgroup id is in ``pod_cgroups`` emit
(unless ``include_host``). The map is seeded by a scan of the v2 hierarchy at start and
kept current by ``cgroup:cgroup_mkdir`` (``cgroups.bpf.c``), so a container created after
start is caught before its first exec.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from collectors.kernel import decode as dec
from collectors.kernel.envelopes import (
    cgroup_path,
    exec_envelope,
    exit_envelope,
    monotonic_to_epoch_offset,
)
from collectors.pods import Attributor
from streams.events import Envelope, Pod

__all__ = [
    "ALL_CONCERNS",
    "CollectorError",
    "KernelCollector",
    "assemble_source",
    "preflight",
]

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
HEADER = "common.bpf.h"
_INCLUDE = f'#include "{HEADER}"'

# concern → (source file or None, defines). lineage.bpf.c and cgroups.bpf.c are always in.
_CONCERNS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "exec": ("exec.bpf.c", ()),
    "exit": (None, ("CONCERN_EXIT",)),
}
ALL_CONCERNS: tuple[str, ...] = tuple(_CONCERNS)
_ALWAYS = ("cgroups.bpf.c", "lineage.bpf.c")


class CollectorError(RuntimeError):
    """The collector cannot run here; the message names the missing piece."""


def assemble_source(concerns: Sequence[str], *, directory: Path = HERE) -> str:
    """The BPF program text for ``concerns``: the shared header once, then each file
    with its own ``#include "common.bpf.h"`` line removed."""
    unknown = [c for c in concerns if c not in _CONCERNS]
    if unknown:
        raise ValueError(f"unknown concern(s) {unknown}; known: {list(_CONCERNS)}")
    files = list(_ALWAYS)
    for concern in concerns:
        source = _CONCERNS[concern][0]
        if source is not None and source not in files:
            files.append(source)
    parts = [(directory / HEADER).read_text()]
    for name in files:
        text = (directory / name).read_text().replace(_INCLUDE, f"/* {HEADER} inlined above */")
        parts.append(f"/* ---- {name} ---- */\n{text}")
    return "\n".join(parts)


def concern_defines(concerns: Sequence[str]) -> list[str]:
    return [d for c in concerns for d in _CONCERNS[c][1]]


def _tracefs_ready() -> bool:
    return Path("/sys/kernel/debug/tracing/events").is_dir() or Path(
        "/sys/kernel/tracing/events").is_dir()


def preflight(*, mount_tracefs: bool = True) -> None:
    """Check what bcc needs, in the order an operator would fix it; raise
    :class:`CollectorError` naming the first missing piece."""
    if os.geteuid() != 0:
        raise CollectorError("not root: loading BPF programs needs root (CAP_BPF, CAP_PERFMON"
                             " and CAP_SYS_ADMIN for bcc)")
    if not Path("/sys/kernel/btf/vmlinux").exists():
        raise CollectorError("no BTF: /sys/kernel/btf/vmlinux is missing (CONFIG_DEBUG_INFO_BTF)")
    build = Path("/lib/modules") / platform.release() / "build"
    if not (build / "include").is_dir() and not (build / "Makefile").exists():
        raise CollectorError(
            f"no kernel headers: {build} does not exist; install linux-headers and link it "
            "(see DESIGN.md: /lib/modules/$(uname -r)/build)")
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        raise CollectorError(
            f"bcc missing: cannot import bcc ({exc}); install python3-bpfcc and make it "
            "importable from the venv") from exc
    if not _tracefs_ready():
        if mount_tracefs:
            # bcc reads tracepoint formats from tracefs; containers often lack the mount.
            for target, fstype in (("/sys/kernel/tracing", "tracefs"),
                                   ("/sys/kernel/debug", "debugfs")):
                subprocess.run(["mount", "-t", fstype, fstype, target],
                               check=False, capture_output=True)
        if not _tracefs_ready():
            raise CollectorError("no tracefs: mount -t tracefs tracefs /sys/kernel/tracing")


def _pids_in(cgroup_dir: str) -> list[int]:
    try:
        with open(os.path.join(cgroup_dir, "cgroup.procs")) as fh:
            return [int(p) for p in fh.read().split()]
    except (OSError, ValueError):
        return []


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_seed(pid: int) -> tuple[int, int, bytes] | None:
    """(ppid, start in ns since boot, comm) from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    try:
        comm = stat[stat.index(b"(") + 1 : stat.rindex(b")")][:15]
        fields = stat[stat.rindex(b")") + 2 :].split()
        return int(fields[1]), int(fields[19]) * 1_000_000_000 // _CLK_TCK, comm
    except (ValueError, IndexError):
        return None


def _ppid_from_proc(pid: int) -> int:
    """Parent pid from /proc (for processes that predate their fork record)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return 0
    try:
        return int(stat[stat.rindex(b")") + 2 :].split()[1])
    except (ValueError, IndexError):
        return 0


class KernelCollector:
    """Kernel events of the pods on this node, as envelopes.

    ``emit`` gets every envelope (from :meth:`poll`'s thread). ``tuning``: ``ringbuf_pages``
    (power of two, default 256 = 1 MiB), ``max_pod_cgroups``, ``cflags`` (extra),
    ``cgroup_scan`` (default True).
    """

    def __init__(
        self,
        node: str,
        attributor: Attributor,
        emit: Callable[[Envelope], object],
        *,
        concerns: Sequence[str] = ALL_CONCERNS,
        include_host: bool = False,
        **tuning: Any,
    ) -> None:
        self.node = node
        self.attributor = attributor
        self.emit = emit
        self.concerns = tuple(concerns)
        self.include_host = include_host
        self.ringbuf_pages = int(tuning.pop("ringbuf_pages", 256))
        self.max_pod_cgroups = int(tuning.pop("max_pod_cgroups", 16384))
        self.extra_cflags = list(tuning.pop("cflags", []))
        self.cgroup_scan = bool(tuning.pop("cgroup_scan", True))
        if tuning:
            raise TypeError(f"unknown tuning option(s): {sorted(tuning)}")
        if self.ringbuf_pages <= 0 or self.ringbuf_pages & (self.ringbuf_pages - 1):
            raise ValueError("ringbuf_pages must be a power of two")
        assemble_source(self.concerns)  # validate names early
        self._bpf: Any = None
        self._offset_ns = 0
        self._batch: list[bytes] = []
        self._exe: dict[int, str] = {}
        self._user: dict[str, int] = {
            "records": 0, "undecodable": 0, "envelopes": 0, "emit_errors": 0,
        }

    # -- lifecycle --------------------------------------------------------------------
    def cflags(self) -> list[str]:
        flags = [
            f"-DRINGBUF_PAGES={self.ringbuf_pages}",
            f"-DMAX_POD_CGROUPS={self.max_pod_cgroups}",
            *(f"-D{d}" for d in concern_defines(self.concerns)),
        ]
        if self.include_host:
            flags.append("-DINCLUDE_HOST")
        return flags + self.extra_cflags

    def start(self) -> None:
        """Compile, attach and seed the pod-cgroup map; raises :class:`CollectorError`."""
        preflight()
        from bcc import BPF

        text = assemble_source(self.concerns)
        try:
            self._bpf = BPF(text=text.encode(), cflags=self.cflags())
        except Exception as exc:
            message = str(exc)
            if "attach" in message.lower():
                raise CollectorError(f"attach failed: {message}") from exc
            raise CollectorError(
                f"BPF compile/load failed ({message}); check the kernel headers at "
                f"/lib/modules/{platform.release()}/build and the bcc version") from exc
        self._offset_ns = monotonic_to_epoch_offset()
        self._bpf[b"events"].open_ring_buffer(self._on_record)
        if self.cgroup_scan:
            self.scan_cgroups()

    def scan_cgroups(self) -> int:
        """Add every kubepods cgroup that exists now to the in-kernel filter, and give
        the processes already in them their parent and start time (their forks
        happened before the probes were attached)."""
        table = self._bpf[b"pod_cgroups"]
        procs = self._bpf[b"procs"]
        root = str(self.attributor.resolver.root)
        found = self.attributor.resolver.scan()
        for cgroup_id, path in found.items():
            table[table.Key(cgroup_id)] = table.Leaf(1)
            for pid in _pids_in(root + path):
                seed = _proc_seed(pid)
                if seed is None:
                    continue
                key = procs.Key(pid)
                if key in procs:
                    continue
                leaf = procs.Leaf()
                leaf.ppid, leaf.start_ns, leaf.comm = seed
                procs[key] = leaf
        return len(found)

    def close(self) -> None:
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None

    def __enter__(self) -> KernelCollector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop ---------------------------------------------------------------------
    def poll(self, timeout_ms: int = 100) -> int:
        """Drain the ring buffer (waiting up to ``timeout_ms`` for the first record) and
        hand each event to ``emit``; returns how many envelopes were emitted."""
        if self._bpf is None:
            raise CollectorError("poll() before start()")
        self._bpf.ring_buffer_poll(timeout_ms)
        batch, self._batch = self._batch, []
        emitted = 0
        for raw in batch:
            emitted += self._handle(raw)
        return emitted

    def _on_record(self, _ctx: object, data: int, size: int) -> None:
        self._batch.append(ctypes.string_at(data, size))

    def _handle(self, raw: bytes) -> int:
        self._user["records"] += 1
        event = dec.decode(raw)
        if isinstance(event, dec.Undecodable):
            self._user["undecodable"] += 1
            log.debug("undecodable record: %s", event.reason)
            return 0
        if isinstance(event, dec.CgroupMkdirEvent):
            self.attributor.resolver.remember(event.cgroup_id, cgroup_path(event))
            return 0
        pod = self._pod(event.header.cgroup_id)
        if isinstance(event, dec.ExecEvent):
            ppid = event.header.ppid or _ppid_from_proc(event.header.pid)
            self._exe[event.header.pid] = event.filename
            envelope = exec_envelope(
                event, node=self.node, pod=pod, offset_ns=self._offset_ns, ppid=ppid)
        elif isinstance(event, dec.ExitEvent):
            envelope = exit_envelope(
                event, node=self.node, pod=pod, offset_ns=self._offset_ns,
                exe=self._exe.pop(event.header.pid, ""))
        else:  # pragma: no cover - every decoded kind is handled above
            return 0
        return self._emit(envelope)

    def _pod(self, cgroup_id: int) -> Pod | None:
        return self.attributor.pod_for_cgroup(cgroup_id)

    def _emit(self, envelope: Envelope) -> int:
        try:
            self.emit(envelope)
        except Exception:
            self._user["emit_errors"] += 1
            log.exception("emit failed for %s", envelope.kind)
            return 0
        self._user["envelopes"] += 1
        return 1

    # -- counters ---------------------------------------------------------------------
    def kernel_counters(self) -> dict[str, int]:
        if self._bpf is None:
            return {c.name.lower(): 0 for c in dec.Counter}
        table = self._bpf[b"counters"]
        out: dict[str, int] = {}
        for slot in dec.Counter:
            values = table[table.Key(int(slot))]
            out[slot.name.lower()] = int(sum(values))
        return out

    @property
    def stats(self) -> dict[str, int]:
        """Kernel counters (emitted, lost, deduplicated, …), user-space counters and the
        attribution outcomes, as one flat mapping of integers."""
        out = self.kernel_counters()
        out.update(self._user)
        out.update({f"attribution_{k}": v for k, v in self.attributor.counts.items()})
        return out
