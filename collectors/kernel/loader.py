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

import contextlib
import ctypes
import dataclasses
import errno
import logging
import os
import platform
import re
import struct
import subprocess
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from collectors.cgroups import find_cgroup2_mount
from collectors.kernel import decode as dec
from collectors.kernel.btf import kernel_offsets
from collectors.kernel.dedup import RepeatLedger
from collectors.kernel.dnsnames import PodDnsNames
from collectors.kernel.envelopes import (
    cgroup_path,
    close_envelope,
    dns_envelope,
    exec_envelope,
    exec_facts,
    exit_envelope,
    fileop_envelopes,
    left_ns,
    monotonic_to_epoch_offset,
    net_envelope,
    ns_fact,
    nsop_envelope,
    open_envelope,
    opens_for_write,
    profile_envelope,
    resolved_answers,
    script_argument,
    write_envelope,
)
from collectors.kernel.paths import AT_FDCWD, PathResolver
from collectors.kernel.sensitive import DEFAULT_RULES_FILE, SensitivePaths
from collectors.kernel.syscall_names import syscall_name
from collectors.pods import Attributor
from streams.events import Envelope, Pod

__all__ = [
    "ALL_CONCERNS",
    "DEFAULT_CONCERNS",
    "CollectorError",
    "KernelCollector",
    "assemble_source",
    "btf_defines",
    "preflight",
]

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
HEADER = "common.bpf.h"
_INCLUDE = f'#include "{HEADER}"'

# concern → (source files, defines). lineage.bpf.c and cgroups.bpf.c are always in;
# dns needs net's socket table, so it brings net.bpf.c along, but without CONCERN_NET only
# the socket and connect exits are attached and no net event is emitted.
_CONCERNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "exec": (("exec.bpf.c",), ()),
    "exit": ((), ("CONCERN_EXIT",)),
    "file": (("file.bpf.c",), ()),
    "net": (("net.bpf.c",), ("CONCERN_NET",)),
    "dns": (("net.bpf.c", "dns.bpf.c"), ()),
    "ns": (("ns.bpf.c",), ()),
    "syscalls": (("syscalls.bpf.c",), ()),
}
ALL_CONCERNS: tuple[str, ...] = tuple(_CONCERNS)
# What the CLI loads unless told otherwise: all but syscall.profile, the one concern
# with a program on every syscall of every process on the node (its measured cost is
# in the CLI's --concerns help and BENCHMARKS.md); ask for it with --concerns.
DEFAULT_CONCERNS: tuple[str, ...] = tuple(c for c in ALL_CONCERNS if c != "syscalls")
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
        for source in _CONCERNS[concern][0]:
            if source not in files:
                files.append(source)
    parts = [(directory / HEADER).read_text()]
    for name in files:
        text = (directory / name).read_text().replace(_INCLUDE, f"/* {HEADER} inlined above */")
        parts.append(f"/* ---- {name} ---- */\n{text}")
    return "\n".join(parts)


def concern_defines(concerns: Sequence[str]) -> list[str]:
    return [d for c in concerns for d in _CONCERNS[c][1]]


_OFFSETS: dict[str, int] | None = None


def btf_defines() -> list[str]:
    """``-DOFF_…=n`` for the kernel struct members the programs read (btf.py), read
    once per process. linux_binprm.filename is required: exec reads it."""
    global _OFFSETS
    if _OFFSETS is None:
        _OFFSETS = kernel_offsets()
    if "OFF_BPRM_FILENAME" not in _OFFSETS:
        raise CollectorError("no BTF offset for linux_binprm.filename: the exec probe needs "
                             "/sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)")
    return [f"-D{name}={value}" for name, value in sorted(_OFFSETS.items())]


def _tracefs_ready() -> bool:
    return Path("/sys/kernel/debug/tracing/events").is_dir() or Path(
        "/sys/kernel/tracing/events").is_dir()


def preflight(*, mount_tracefs: bool = True) -> None:
    """Check what bcc needs, in the order an operator would fix it; raise
    :class:`CollectorError` naming the first missing piece."""
    if platform.machine() != "x86_64":
        # the exit probes read syscall arguments at x86_64's pt_regs offsets
        # (common.bpf.h: read_sys_args), and the probes name x86_64's legacy syscalls
        raise CollectorError(f"unsupported architecture {platform.machine()}: the kernel "
                             "probes are built for x86_64")
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
    try:
        find_cgroup2_mount()
    except (FileNotFoundError, OSError) as exc:
        raise CollectorError(
            f"no cgroup v2: {exc}; pod filtering uses bpf_get_current_cgroup_id(), which "
            "names v2 cgroups (use a unified or hybrid cgroup host)") from exc
    if not _tracefs_ready():
        if mount_tracefs:
            # bcc reads tracepoint formats from tracefs; containers often lack the mount.
            for target, fstype in (("/sys/kernel/tracing", "tracefs"),
                                   ("/sys/kernel/debug", "debugfs")):
                subprocess.run(["mount", "-t", fstype, fstype, target],
                               check=False, capture_output=True)
        if not _tracefs_ready():
            raise CollectorError("no tracefs: mount -t tracefs tracefs /sys/kernel/tracing")


def _trim_heap() -> None:
    """Give the heap that bcc's embedded clang freed after the compile back to the
    system (glibc keeps it otherwise: about 20 MiB of the collector's RSS)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


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


def _cwd_from_proc(pid: int) -> str:
    """The working directory, best effort (the process may be gone; cheap: one readlink)."""
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _fd_path_from_proc(pid: int, fd: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return ""


def _exe_from_proc(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _cgroup_id_of(pid: int, root: Path) -> int:
    """The v2 cgroup id of a live process (inode of its folder), 0 when unknown."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            for line in fh:
                if line.startswith("0::"):
                    return os.stat(str(root) + line[3:].strip()).st_ino
    except OSError:
        pass
    return 0


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

    ``emit`` gets every envelope (from the thread that calls :meth:`poll`). ``tuning``:

    - ``ringbuf_pages``: ring buffer size, a power of two (default 1024 pages = 4 MiB)
    - ``dedup_window_ms``: de-duplication window for file.open/net.connect (default 1000;
      ``dedup=False`` turns it off); ``max_dedup``: entries per dedup table (16384)
    - ``dns_port``: the resolver port whose traffic is parsed as DNS (53)
    - ``clock_interval_s``: how often the epoch - monotonic clock offset is measured
      again (60); each change is exported as ``clock_drift_ns``
    - ``exe_recent_s``: how long after a file is written or chmod'ed in a pod its exec
      is reported as ``exe_origin: written_in_pod`` with its age (3600)
    - ``dns_grace_s``: how long past its TTL a pod's DNS answer still names the
      pod's connections to that address (30)
    - ``profile_interval_s``: how often syscall profiles are flushed (30)
    - ``sensitive_paths``: YAML file of sensitive-path rules (default: the packaged list)
    - ``metadata_wait_ms``: how long an event whose pod is known by uid only waits for
      the pod's metadata before it goes out with the uid alone (default 2000, counted)
    - ``max_pod_cgroups``, ``cgroup_scan`` (default True), ``cflags`` (extra)
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
        self.ringbuf_pages = int(tuning.pop("ringbuf_pages", 1024))
        self.max_pod_cgroups = int(tuning.pop("max_pod_cgroups", 16384))
        self.extra_cflags = list(tuning.pop("cflags", []))
        self.cgroup_scan = bool(tuning.pop("cgroup_scan", True))
        self.dedup = bool(tuning.pop("dedup", True))
        self.window_ns = int(float(tuning.pop("dedup_window_ms", 1000)) * 1_000_000)
        self.max_dedup = int(tuning.pop("max_dedup", 16384))
        self.dns_port = int(tuning.pop("dns_port", 53))
        self.profile_interval_s = float(tuning.pop("profile_interval_s", 30.0))
        self.metadata_wait_ns = int(float(tuning.pop("metadata_wait_ms", 2000)) * 1_000_000)
        sensitive = tuning.pop("sensitive_paths", None)
        dns_grace_s = float(tuning.pop("dns_grace_s", 30.0))
        self.exe_recent_ns = int(float(tuning.pop("exe_recent_s", 3600)) * 1e9)
        self.clock_interval_s = float(tuning.pop("clock_interval_s", 60.0))
        if tuning:
            raise TypeError(f"unknown tuning option(s): {sorted(tuning)}")
        if self.ringbuf_pages <= 0 or self.ringbuf_pages & (self.ringbuf_pages - 1):
            raise ValueError("ringbuf_pages must be a power of two")
        if self.window_ns <= 0:
            raise ValueError("dedup_window_ms must be positive")
        assemble_source(self.concerns)  # validate names early
        self.sensitive = (sensitive if isinstance(sensitive, SensitivePaths)
                          else SensitivePaths.load(sensitive or DEFAULT_RULES_FILE))
        self.ledger = RepeatLedger()
        self._bpf: Any = None
        self._offset_ns = 0
        self._batch: list[bytes] = []
        # pid → (ppid, exe, cgroup id) of processes seen exec'ing: exit's exe and the
        # ancestry of later execs (bounded; an exit forgets its entry)
        self._procs: LruDict[int, tuple[int, str, int]] = LruDict(65_536)
        self.dns_names = PodDnsNames(65_536, grace_s=dns_grace_s)
        # relative paths: per-process cwd and directory fds from the events, /proc after
        self.paths = PathResolver(cwd_of=_cwd_from_proc, fd_path_of=_fd_path_from_proc)
        # (cgroup id, path) → (event ts, mode or -1) of files written or chmod'ed in a
        # pod: the mode before a chmod, and the age of a file when it is exec'd
        self._written: LruDict[tuple[int, str], tuple[int, int]] = LruDict(65_536)
        self._pod_ns: LruDict[str, dec.Namespaces] = LruDict(16_384)
        self._parked: deque[tuple[int, int, Envelope]] = deque()  # deadline, cgroup, env
        self._parked_uids: dict[str, int] = {}
        self._pods: LruDict[int, Pod | None] = LruDict(16_384)
        self._pods_version = 0
        self._index_version = 0
        attributor.index.on_change(self._index_changed)
        self._epoch = 0
        self._next_profile = 0.0
        self._next_clock = 0.0
        self._clock = {"clock_offset_ns": 0, "clock_drift_ns": 0, "clock_drift_max_ns": 0,
                       "clock_measurements": 0}
        self._next_sweep = 0
        self._user: dict[str, int] = {
            "records": 0, "undecodable": 0, "envelopes": 0, "emit_errors": 0,
            "repeat_envelopes": 0, "attribution_waited": 0, "attribution_timeout": 0,
            "profiles": 0,
        }

    # -- lifecycle --------------------------------------------------------------------
    def cflags(self) -> list[str]:
        flags = [
            f"-DRINGBUF_PAGES={self.ringbuf_pages}",
            f"-DMAX_POD_CGROUPS={self.max_pod_cgroups}",
            f"-DDEDUP_WINDOW_NS={self.window_ns}ULL",
            f"-DMAX_DEDUP={self.max_dedup}",
            f"-DDNS_PORT={self.dns_port}",
            *(f"-D{d}" for d in concern_defines(self.concerns)),
            *btf_defines(),
        ]
        if self.include_host:
            flags.append("-DINCLUDE_HOST")
        if not self.dedup:
            flags.append("-DNO_DEDUP")
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
        _trim_heap()
        self._offset_ns = monotonic_to_epoch_offset()
        self._clock["clock_offset_ns"] = self._offset_ns
        self._next_clock = time.monotonic() + self.clock_interval_s
        self._bpf[b"events"].open_ring_buffer(self._on_record)
        self._next_profile = time.monotonic() + self.profile_interval_s
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
        gen = self._bpf[b"pod_gen"]  # the in-kernel verdict caches see the change
        gen[gen.Key(0)] = gen.Leaf(gen[gen.Key(0)].value + 1)
        return len(found)

    def flush(self) -> int:
        """Everything held back goes out now: the ring buffer, the repeat counts of
        every dedup window (open ones too), the syscall profiles, and the events still
        waiting for pod metadata. Call before stopping the publisher."""
        if self._bpf is None:
            return 0
        emitted = self.poll(0)
        emitted += self._flush_connecting()
        emitted += self.sweep_dedup(force=True)
        emitted += self.flush_profiles()
        emitted += self._release_parked(force=True)
        return emitted

    def close(self) -> None:
        if self._bpf is not None:
            try:
                self.flush()
            finally:
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
        hand each event to ``emit``; also sweeps closed dedup windows and flushes the
        syscall profiles when due. Returns how many envelopes were emitted."""
        if self._bpf is None:
            raise CollectorError("poll() before start()")
        # Records are written without a wakeup until the buffer is 1/8 full (see submit()
        # in common.bpf.h): poll sleeps until then or the timeout, consume drains the rest.
        self._bpf.ring_buffer_poll(timeout_ms)
        self._bpf.ring_buffer_consume()
        batch, self._batch = self._batch, []
        emitted = 0
        for raw in batch:
            emitted += self._handle(raw)
        emitted += self._release_parked()
        now = time.monotonic_ns()
        if self.dedup and now >= self._next_sweep:
            emitted += self.sweep_dedup()
            self._next_sweep = now + self.window_ns // 2
        if "syscalls" in self.concerns and time.monotonic() >= self._next_profile:
            emitted += self.flush_profiles()
        if time.monotonic() >= self._next_clock:
            self.remeasure_clock()
        return emitted

    def remeasure_clock(self) -> int:
        """Measure the epoch - CLOCK_MONOTONIC offset again (NTP slews the wall clock;
        the monotonic clock does not follow a step) and use it from now on. Returns the
        drift since the last measurement, also exported as ``clock_drift_ns`` (and the
        largest seen as ``clock_drift_max_ns``)."""
        self._next_clock = time.monotonic() + self.clock_interval_s
        offset = monotonic_to_epoch_offset()
        drift = offset - self._offset_ns
        self._offset_ns = offset
        self._clock["clock_offset_ns"] = offset
        self._clock["clock_drift_ns"] = drift
        self._clock["clock_drift_max_ns"] = max(self._clock["clock_drift_max_ns"], abs(drift))
        self._clock["clock_measurements"] += 1
        return drift

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
        h = event.header
        pod = self._pod_for(h.cgroup_id)
        common = {"node": self.node, "pod": pod, "offset_ns": self._offset_ns}
        if isinstance(event, dec.ExecEvent):
            if "exec" not in self.concerns:
                return 0
            ppid = h.ppid or _ppid_from_proc(h.pid)
            self._procs[h.pid] = (ppid, event.filename, h.cgroup_id)
            envelope = exec_envelope(event, ppid=ppid, **common)
            extra: dict[str, Any] = {"ancestry": self._ancestry(ppid, h.cgroup_id)}
            cwd = _cwd_from_proc(h.pid)
            if cwd:
                self.paths.set_cwd(h.pid, cwd)
            else:  # gone already: what the chdir events (its own or its parent's) said
                cwd = self.paths.cwd(h.pid, ppid) or ""
            if cwd:
                extra["cwd"] = cwd
            extra.update(self._exec_facts(event, ppid, pod))
            envelope = dataclasses.replace(envelope, data={**envelope.data, **extra})
        elif isinstance(event, dec.ExitEvent):
            known = self._procs.pop(h.pid, None)
            self.paths.exited(h.pid)
            envelope = exit_envelope(event, exe=known[1] if known else "", **common)
        elif isinstance(event, dec.OpenEvent):
            return self._on_open(event, common)
        elif isinstance(event, dec.FileOpEvent):
            return self._on_fileop(event, common)
        elif isinstance(event, dec.NsOpEvent):
            envelope = self._nsop(event, pod, common)
        elif isinstance(event, dec.NetEvent):
            if "net" not in self.concerns:
                return 0
            domain = self.dns_names.name_for(_dns_scope(pod, h.cgroup_id), event.daddr,
                                             ts=h.ts + self._offset_ns)
            envelope = net_envelope(event, domain=domain, **common)
            if self.dedup and event.header.kind == dec.Kind.CONNECT:
                self.ledger.opened(_net_key(event), envelope)
        elif isinstance(event, dec.CloseEvent):
            if "net" not in self.concerns:
                return 0
            domain = self.dns_names.name_for(_dns_scope(pod, h.cgroup_id), event.daddr,
                                             ts=h.ts + self._offset_ns)
            envelope = close_envelope(event, domain=domain, **common)
        elif isinstance(event, dec.DnsEvent):
            envelope = dns_envelope(event, **common)
            scope = _dns_scope(pod, h.cgroup_id)
            for address, name, ttl in resolved_answers(envelope):
                self.dns_names.learn(scope, address, name, ts=envelope.ts, ttl_s=ttl)
        else:  # pragma: no cover - every decoded kind is handled above
            return 0
        return self._emit_or_park(envelope, h.cgroup_id)

    def _pod_ns_ref(self, pod: Pod | None, cgroup_id: int,
                    seen: dec.Namespaces | None) -> dec.Namespaces | None:
        """The pod's reference namespaces: those of the first process the collector saw
        in it (an exec, or a namespace call before it ran)."""
        scope = _dns_scope(pod, cgroup_id)
        ref = self._pod_ns.get(scope)
        if ref is None and seen is not None:
            self._pod_ns[scope] = ref = seen
        return ref

    def _exec_facts(self, ev: dec.ExecEvent, ppid: int, pod: Pod | None) -> dict[str, Any]:
        """Interpreter and script, stdio, namespaces (with the pod's), and where the
        program came from: a memfd, a deleted file, or a file written or made
        executable in this pod shortly before (``exe_age_ns``)."""
        h = ev.header
        facts = exec_facts(ev)
        exe = self.paths.resolve(h.pid, ppid, AT_FDCWD, ev.filename) or ev.filename
        if exe != ev.filename:
            facts["exe_path"] = exe
        if "script" in facts:
            facts["script"] = exe
        else:
            arg = script_argument(ev.filename, ev.argv)
            if arg is not None:
                facts["script"] = self.paths.resolve(h.pid, ppid, AT_FDCWD, arg) or arg
                facts["interpreter"] = ev.filename
        if "exe_origin" not in facts:
            age = self._written_age(h.cgroup_id, exe, h.ts)
            if age is not None:
                facts.update(exe_origin="written_in_pod", exe_age_ns=age)
        if "script" in facts and facts["script"] != exe:
            age = self._written_age(h.cgroup_id, facts["script"], h.ts)
            if age is not None:
                facts.update(script_origin="written_in_pod", script_age_ns=age)
        ref = self._pod_ns_ref(pod, h.cgroup_id, ev.namespaces)
        if ref is not None:
            facts["pod_ns"] = ns_fact(ref)
            facts["left_pod_ns"] = left_ns(ev.namespaces, ref)
        return facts

    def _written_age(self, cgroup_id: int, path: str, ts: int) -> int | None:
        known = self._written.get((cgroup_id, path))
        if known is None or not 0 <= ts - known[0] <= self.exe_recent_ns:
            return None
        return ts - known[0]

    def _nsop(self, ev: dec.NsOpEvent, pod: Pod | None, common: dict[str, Any]) -> Envelope:
        h = ev.header
        ref = self._pod_ns_ref(pod, h.cgroup_id, ev.before)
        target_pid = target = None
        if ev.op == dec.NsOp.SETNS:
            where = self.paths.resolve_fd(h.pid, ev.fd) or ""
            found = _PROC_NS.match(where)
            if found is not None:
                target_pid = int(found.group(1))
        elif ev.op == dec.NsOp.MOUNT and ev.target:
            target = self.paths.resolve(h.pid, h.ppid, AT_FDCWD, ev.target)
        return nsop_envelope(ev, pod_ns=ref, target_pid=target_pid, target=target, **common)

    def _on_open(self, ev: dec.OpenEvent, common: dict[str, Any]) -> int:
        h = ev.header
        path = self.paths.resolve(h.pid, h.ppid, ev.dfd, ev.path)
        if path is not None and ev.result >= 0:
            # every fd the events show (directories are never folded by the dedup; a
            # folded repeat of a file leaves its fd unknown: fchmod/fchown on it may
            # then name an older file of that fd number, a stated limit)
            self.paths.opened(h.pid, ev.result, path)
            if opens_for_write(ev.flags):
                mode = ev.mode & 0o7777 if ev.flags & O_CREAT else -1
                old = self._written.get((h.cgroup_id, path))
                if mode < 0 and old is not None:
                    mode = old[1]
                self._written[(h.cgroup_id, path)] = (h.ts, mode)
        envelope = open_envelope(ev, sensitive=self.sensitive, path=path, **common)
        if self.dedup:
            self.ledger.opened(_open_key(ev), envelope)
        emitted = self._emit_or_park(envelope, h.cgroup_id)
        written = write_envelope(envelope)
        if written is not None:
            emitted += self._emit_or_park(written, h.cgroup_id)
        return emitted

    def _on_fileop(self, ev: dec.FileOpEvent, common: dict[str, Any]) -> int:
        h = ev.header
        if ev.op == dec.FileOp.CHDIR:
            if ev.result == 0:
                self.paths.chdir(h.pid, h.ppid, ev.path, ev.dfd)
            return 0
        if ev.op == dec.FileOp.MEMFD:
            return 0
        if ev.path:
            path = self.paths.resolve(h.pid, h.ppid, ev.dfd, ev.path)
        else:  # fchmod/fchown name an fd
            path = self.paths.resolve_fd(h.pid, ev.dfd)
        new_path = (self.paths.resolve(h.pid, h.ppid, ev.dfd2, ev.path2)
                    if ev.op == dec.FileOp.RENAME else None)
        mode_before = None
        if path is not None and ev.result == 0:
            key = (h.cgroup_id, path)
            known = self._written.get(key)
            if ev.op == dec.FileOp.CHMOD:
                if known is not None and known[1] >= 0:
                    mode_before = known[1]
                self._written[key] = (h.ts, ev.mode & 0o7777)
            elif ev.op == dec.FileOp.UNLINK:
                self._written.pop(key, None)
            elif ev.op == dec.FileOp.RENAME and new_path is not None:
                self._written.pop(key, None)
                if known is not None:
                    self._written[(h.cgroup_id, new_path)] = known
        emitted = 0
        for envelope in fileop_envelopes(ev, sensitive=self.sensitive, path=path,
                                         new_path=new_path, mode_before=mode_before,
                                         **common):
            emitted += self._emit_or_park(envelope, h.cgroup_id)
        return emitted

    def _ancestry(self, ppid: int, cgroup_id: int, depth: int = 8) -> list[dict[str, Any]]:
        """Parents up the chain while they are in the same container: from the execs
        seen, else (for a parent that predates the collector) from /proc."""
        chain: list[dict[str, Any]] = []
        pid = ppid
        while pid > 1 and len(chain) < depth:
            known = self._procs.get(pid)
            if known is not None:
                parent, exe, cgroup = known
                if cgroup != cgroup_id:
                    break
            else:
                parent, exe = _ppid_from_proc(pid), _exe_from_proc(pid)
                if not exe or _cgroup_id_of(pid, self.attributor.resolver.root) != cgroup_id:
                    break
            chain.append({"pid": pid, "exe": exe})
            pid = parent
        return chain

    def _pod_for(self, cgroup_id: int) -> Pod | None:
        """Attribution, cached per cgroup until the pod index changes (a regex and a
        lock per event otherwise; the cache is bounded and dropped on any change)."""
        cached = self._pods.get(cgroup_id, _MISSING)
        if cached is not _MISSING and self._pods_version == self._index_version:
            return cached  # type: ignore[return-value]
        if self._pods_version != self._index_version:
            self._pods.clear()
            self._pods_version = self._index_version
        pod = self.attributor.pod_for_cgroup(cgroup_id)
        if pod is not None:  # a miss may heal on the next rescan: do not cache it
            self._pods[cgroup_id] = pod
        return pod

    def _index_changed(self, _change: str, _pod: object) -> None:
        self._index_version += 1

    # -- waiting for pod metadata (Tetragon's eventcache, bounded) ------------------------
    def _emit_or_park(self, envelope: Envelope, cgroup_id: int) -> int:
        pod = envelope.pod
        waiting = pod is not None and (not pod.name or pod.uid in self._parked_uids)
        if waiting and self.metadata_wait_ns > 0 and pod is not None:
            deadline = time.monotonic_ns() + self.metadata_wait_ns
            self._parked.append((deadline, cgroup_id, envelope))
            self._parked_uids[pod.uid] = self._parked_uids.get(pod.uid, 0) + 1
            self._user["attribution_waited"] += 1
            return 0
        return self._emit(envelope)

    def _release_parked(self, force: bool = False) -> int:
        """Emit parked events, in order, whose pod metadata arrived or whose wait is
        over (then with the pod uid alone, counted as ``attribution_timeout``)."""
        emitted = 0
        now = time.monotonic_ns()
        while self._parked:
            deadline, _cgroup_id, envelope = self._parked[0]
            assert envelope.pod is not None
            pod = envelope.pod
            info = self.attributor.index.get(pod.uid) if not pod.name else None
            if info is not None:
                envelope = dataclasses.replace(envelope, pod=info.to_pod(pod.container_id))
            elif pod.name:
                pass  # parked only to keep order behind an earlier event of this pod
            elif now < deadline and not force:
                break
            else:
                self._user["attribution_timeout"] += 1
            self._parked.popleft()
            left = self._parked_uids[pod.uid] - 1
            if left:
                self._parked_uids[pod.uid] = left
            else:
                del self._parked_uids[pod.uid]
            emitted += self._emit(envelope)
        return emitted

    def _emit(self, envelope: Envelope) -> int:
        try:
            self.emit(envelope)
        except Exception:
            self._user["emit_errors"] += 1
            log.exception("emit failed for %s", envelope.kind)
            return 0
        self._user["envelopes"] += 1
        return 1

    # -- dedup windows ----------------------------------------------------------------------
    def sweep_dedup(self, force: bool = False) -> int:
        """Report the repeats of closed dedup windows (all windows when ``force``) and
        remove them from the kernel tables."""
        if self._bpf is None or not self.dedup:
            return 0
        current = time.monotonic_ns() // self.window_ns
        emitted = 0
        for name, make_key, fallback in (
            (b"open_dedup", _open_table_key, self._open_fallback),
            (b"open_dedup_short", _open_table_key, self._open_fallback),
            (b"net_dedup", _net_table_key, self._net_fallback),
        ):
            if not self._has_table(name):
                continue
            table = self._bpf[name]
            closed = [(k, total) for k, total in _read_table(table)
                      if force or k.window < current - 1]
            _delete_keys(table, [k for k, _total in closed])
            for k, total in closed:
                end_ts = (k.window + 1) * self.window_ns + self._offset_ns
                key = make_key(k)
                # the stand-in first event is only built when it is needed
                stand_in = (fallback(k, end_ts) if total > 1 and key not in self.ledger
                            else None)
                envelope = self.ledger.closed(key, total=total, ts=end_ts,
                                              fallback=stand_in)
                if envelope is not None:
                    self._user["repeat_envelopes"] += 1
                    emitted += self._emit(envelope)
        # what is left of the swept windows had no table entry: no repeats to report
        self.ledger.forget_before(current + 1 if force else current - 1, _key_window)
        return emitted

    def _flush_connecting(self) -> int:
        """Connects whose handshake is still running go out as ``pending`` (flush is
        called before stopping: their outcome would never be sent)."""
        if "net" not in self.concerns or not self._has_table(b"connecting"):
            return 0
        table = self._bpf[b"connecting"]
        emitted = 0
        for key, value in list(table.items()):
            if value.owner != 1:
                continue
            with contextlib.suppress(KeyError):
                del table[key]
            raw = bytearray(bytes(value.e))
            struct.pack_into("<I", raw, dec.NetRecord.outcome.offset, dec.Outcome.PENDING)
            emitted += self._handle(bytes(raw))
        return emitted

    def _has_table(self, name: bytes) -> bool:
        try:
            self._bpf[name]
        except KeyError:
            return False
        return True

    def _open_fallback(self, k: Any, ts: int) -> Envelope:
        header = dec.Header(dec.Kind.OPEN, 0, 0, 0, 0, 1, 0, k.cgroup_id, 0, "")
        path = bytes(k.path)
        ev = dec.OpenEvent(header, k.window, path.decode("utf-8", "backslashreplace"),
                           k.flags, k.result, -100, path)
        env = open_envelope(ev, node=self.node, pod=self.attributor.pod_for_cgroup(k.cgroup_id),
                            offset_ns=0, sensitive=self.sensitive)
        return dataclasses.replace(env, ts=ts, proc=None)

    def _net_fallback(self, k: Any, ts: int) -> Envelope:
        header = dec.Header(dec.Kind.CONNECT, 0, 0, 0, 0, 1, 0, k.cgroup_id, 0, "")
        daddr = bytes(k.daddr)
        unix = bytes(k.unix_path)
        ev = dec.NetEvent(header, k.window, k.result, 0, k.family, k.sotype, k.dport, 0,
                          dec.ip_text(k.family, daddr),
                          unix.decode("utf-8", "backslashreplace"), daddr, unix)
        env = net_envelope(ev, node=self.node, pod=self.attributor.pod_for_cgroup(k.cgroup_id),
                           offset_ns=0)
        return dataclasses.replace(env, ts=ts, proc=None)

    # -- syscall profiles -------------------------------------------------------------------
    def flush_profiles(self) -> int:
        """Flip the epoch, let in-flight updates of the old one finish, then read and
        delete the old epoch's per-container counts and emit one syscall.profile each."""
        self._next_profile = time.monotonic() + self.profile_interval_s
        if self._bpf is None or "syscalls" not in self.concerns:
            return 0
        old = self._epoch & 1
        self._epoch += 1
        epochs = self._bpf[b"profile_epoch"]
        epochs[epochs.Key(0)] = epochs.Leaf(self._epoch)
        time.sleep(0.005)  # programs run under RCU, microseconds; this is plenty
        profiles = self._bpf[b"profiles"]
        keys = [k for k in profiles if k.epoch == old]
        emitted = 0
        now = time.time_ns()
        window = int(self.profile_interval_s * 1e9)
        for k in keys:
            try:
                per_cpu = profiles[k]
            except KeyError:
                continue
            with contextlib.suppress(KeyError):
                del profiles[k]
            counts: dict[str, int] = {}
            for leaf in per_cpu:
                for nr, n in enumerate(leaf.counts):
                    if n:
                        name = syscall_name(nr)
                        counts[name] = counts.get(name, 0) + n
            if not counts:
                continue
            pod = self.attributor.pod_for_cgroup(k.cgroup_id)
            self._user["profiles"] += 1
            emitted += self._emit(profile_envelope(
                k.cgroup_id, counts, node=self.node, pod=pod, ts=now, window_ns=window))
        return emitted

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
        out["pending_attribution"] = len(self._parked)
        out["ledger_evicted"] = self.ledger.evicted
        out.update({f"attribution_{k}": v for k, v in self.attributor.counts.items()})
        out.update({f"path_{k}": v for k, v in self.paths.counts.items()})
        out.update({f"dns_names_{k}": v for k, v in self.dns_names.counts.items()})
        out.update(self._clock)
        return out


_MISSING = object()
_PROC_NS = re.compile(r"^/proc/(\d+)/ns/")
O_CREAT = 0o100
K = TypeVar("K")
V = TypeVar("V")


class LruDict(OrderedDict[K, V]):
    """A bounded mapping: the least recently set entry goes first."""

    def __init__(self, max_entries: int) -> None:
        super().__init__()
        self.max_entries = max_entries

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.max_entries:
            self.popitem(last=False)


def _read_table(table: Any) -> list[tuple[Any, int]]:
    """Every (key, u64 value) of a BPF hash in a few BPF_MAP_LOOKUP_BATCH calls: bcc's
    iterator costs a get-next-key and a lookup syscall per entry, and a table of distinct
    opens holds one entry per event. Falls back to the iterator if batching fails."""
    from bcc.libbcc import lib

    n = int(table.max_entries)
    keys, values = (table.Key * n)(), (table.Leaf * n)()
    in_batch, out_batch, count = ctypes.c_uint32(0), ctypes.c_uint32(0), ctypes.c_uint32(0)
    key_size, value_size = ctypes.sizeof(table.Key), ctypes.sizeof(table.Leaf)
    total, first = 0, True
    while total < n:
        count.value = n - total
        res = lib.bpf_lookup_batch(
            table.map_fd, None if first else ctypes.byref(in_batch), ctypes.byref(out_batch),
            ctypes.byref(keys, key_size * total), ctypes.byref(values, value_size * total),
            ctypes.byref(count))
        err = ctypes.get_errno()
        total += count.value
        if res != 0:
            if err == errno.ENOENT:  # the whole table was read
                break
            log.debug("BPF_MAP_LOOKUP_BATCH failed (%s): iterating", os.strerror(err))
            return [(k, int(v.value)) for k, v in table.items()]
        if count.value == 0:
            break
        in_batch.value, first = out_batch.value, False
    return [(keys[i], int(values[i])) for i in range(total)]  # c_uint64 items are ints


def _delete_keys(table: Any, keys: list[Any]) -> None:
    """Delete ``keys`` in one BPF_MAP_DELETE_BATCH call (one by one if that fails)."""
    if not keys:
        return
    try:
        table.items_delete_batch((table.Key * len(keys))(*keys))
        return
    except Exception as exc:  # bcc raises a bare Exception; fall back below
        log.debug("BPF_MAP_DELETE_BATCH failed (%s): deleting one by one", exc)
    for k in keys:
        with contextlib.suppress(KeyError):
            del table[k]


def _dns_scope(pod: Pod | None, cgroup_id: int) -> str:
    """Whose DNS answers name a connection: the pod's (its containers share the
    network namespace and resolver), else the container cgroup's."""
    return pod.uid if pod is not None and pod.uid else f"cgroup/{cgroup_id}"


def _key_window(key: Any) -> int:
    """The dedup window of an :func:`_open_key` / :func:`_net_key` tuple."""
    return int(key[2])


def _open_key(ev: dec.OpenEvent) -> tuple[Any, ...]:
    return ("open", ev.header.cgroup_id, ev.window, ev.flags,
            ev.result if ev.result < 0 else 0, ev.path_raw)


def _open_table_key(k: Any) -> tuple[Any, ...]:
    return ("open", k.cgroup_id, k.window, k.flags, k.result, bytes(k.path))


def _net_key(ev: dec.NetEvent) -> tuple[Any, ...]:
    return ("net", ev.header.cgroup_id, ev.window, ev.result if ev.result < 0 else 0,
            ev.family, ev.sotype, ev.dport, ev.daddr_raw, ev.unix_raw.split(b"\0", 1)[0])


def _net_table_key(k: Any) -> tuple[Any, ...]:
    return ("net", k.cgroup_id, k.window, k.result, k.family, k.sotype, k.dport,
            bytes(k.daddr), bytes(k.unix_path))
