"""Which processes to watch and which libssl copies to probe (procfs only, no bcc).

A uprobe is attached to a file (an inode), not to a process: attaching once per distinct
libssl makes every process that maps it fire, which is why the kernel program filters on
the pod cgroups this module reports. Pods bring their own images, hence their own libssl
copies; a process's copy is found in ``/proc/<pid>/maps`` and reached from the host
through ``/proc/<pid>/root`` (its mount namespace).

:class:`PodProcesses` lists pod cgroups and their pids on each rescan;
:class:`LibraryTracker` inspects each new pid once it is seen, and again on later scans
until a libssl shows up (Python maps libssl only when ``ssl`` is first imported).

Statically linked OpenSSL counts too: any file a pod process maps executable that
defines ``SSL_write`` in its dynamic symbol table (an official ``node`` binary) is probed
exactly like a libssl, read through the process's root (:mod:`collectors.l7.elfsyms`,
one parse per file, cached by the maps line's device and inode).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from collectors.cgroups import CgroupResolver, parse_cgroup_path
from collectors.l7.blind import BlindSpot, BlindSpots
from collectors.l7.elfsyms import ExportCache

__all__ = [
    "LIBSSL_NAME",
    "Library",
    "LibraryTracker",
    "PodProcesses",
    "exec_mappings",
    "libssl_paths",
]

log = logging.getLogger(__name__)

# libssl.so.3, libssl.so.1.1, libssl.so (a distro's unversioned link); not libssl3.so (NSS)
LIBSSL_NAME = re.compile(r"(?:^|/)libssl\.so(?:\.[0-9][0-9.]*)?$")


def libssl_paths(maps_text: str) -> set[str]:
    """Paths of the OpenSSL libssl copies a ``/proc/<pid>/maps`` text names.

    >>> sorted(libssl_paths(
    ...   "7f0-7f1 r-xp 0001f000 fe:00 339900   /usr/lib/x86_64-linux-gnu/libssl.so.3\\n"
    ...   "7f2-7f3 r--p 00000000 fe:00 1        /usr/lib/libssl3.so\\n"
    ...   "7f4-7f5 r-xp 00000000 fe:00 2        /old/libssl.so.1.1 (deleted)\\n"))
    ['/usr/lib/x86_64-linux-gnu/libssl.so.3']
    """
    found: set[str] = set()
    for line in maps_text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        path = parts[5].strip()
        if path.endswith(" (deleted)"):
            continue  # replaced on disk: the inode lives on, but no path reaches it
        if LIBSSL_NAME.search(path):
            found.add(path)
    return found


def exec_mappings(maps_text: str) -> dict[str, tuple[str, int]]:
    """{path: (device, inode)} of the files a ``/proc/<pid>/maps`` text maps executable.

    >>> exec_mappings(
    ...   "55a-55b r--p 00000000 fe:00 77  /usr/bin/node\n"
    ...   "55b-55c r-xp 00001000 fe:00 77  /usr/bin/node\n"
    ...   "7f0-7f1 r-xp 00000000 00:00 0   [vdso]\n"
    ...   "7f2-7f3 rw-p 00000000 fe:00 9   /data/file\n"
    ...   "7f4-7f5 r-xp 00000000 fe:00 5   /old/node (deleted)\n")
    {'/usr/bin/node': ('fe:00', 77)}
    """
    found: dict[str, tuple[str, int]] = {}
    for line in maps_text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or "x" not in parts[1]:
            continue
        path = parts[5].strip()
        if not path.startswith("/") or path.endswith(" (deleted)"):
            continue
        try:
            found[path] = (parts[3], int(parts[4]))
        except ValueError:
            continue
    return found


@dataclass(frozen=True, slots=True)
class Library:
    """One distinct TLS library file (a libssl, or an executable with OpenSSL linked
    in): ``host_path`` reaches it from this (host) namespace."""

    host_path: str
    maps_path: str  # as the process sees it
    dev: int
    ino: int
    first_pid: int


class LibraryTracker:
    """Attaches ``attach(host_path)`` once per distinct TLS library (device, inode).

    A TLS library is a file named like libssl, or any file mapped executable that
    defines ``SSL_write`` (``exports`` answers that, cached per file). ``attach`` returns
    the symbols it probed (an empty list means the file is not usable, and it is not
    retried). Pids already found with one are not read again; pids without one are
    rechecked on every call until they exit.
    """

    def __init__(
        self, attach: Callable[[str], list[str]], *, proc: str = "/proc",
        exports: ExportCache | None = None, blind: BlindSpots | None = None,
    ) -> None:
        self.attach = attach
        self.proc = proc
        self.exports = exports if exports is not None else ExportCache()
        # Files that carry TLS but cannot be probed (None: not looked for).
        self.blind = blind
        self.new_blind: list[BlindSpot] = []
        self.libraries: dict[tuple[int, int], Library] = {}
        self.rejected: set[tuple[int, int]] = set()
        self._done: set[int] = set()
        self.stats: dict[str, int] = {"maps_read": 0, "attach_failures": 0}

    def check(self, pids: Iterable[int]) -> list[Library]:
        """Inspect ``pids``; attach to libraries not seen before; return those."""
        live = set(pids)
        self._done &= live
        if self.blind is not None:
            self.blind.forget(live)
        added: list[Library] = []
        for pid in sorted(live - self._done):
            try:
                with open(f"{self.proc}/{pid}/maps") as fh:
                    text = fh.read()
            except OSError:
                continue
            self.stats["maps_read"] += 1
            paths = libssl_paths(text) | self._static_tls(pid, text)
            if self.blind is not None:
                self._blind(pid, text, paths)
            if not paths:
                continue
            self._done.add(pid)
            for maps_path in paths:
                lib = self._library(pid, maps_path)
                if lib is not None:
                    added.append(lib)
        return added

    def _static_tls(self, pid: int, maps_text: str) -> set[str]:
        """Executable mappings of ``pid`` (other than libssl-named) that define SSL_write."""
        return {path for path, ident in exec_mappings(maps_text).items()
                if not LIBSSL_NAME.search(path)
                and self.exports.exports_tls(ident, f"{self.proc}/{pid}/root{path}")}

    def _blind(self, pid: int, maps_text: str, probed: set[str]) -> None:
        """Remember the executable mappings of ``pid`` that carry TLS the probes miss."""
        assert self.blind is not None
        for path, ident in exec_mappings(maps_text).items():
            if path in probed or LIBSSL_NAME.search(path):
                continue
            spot = self.blind.check(ident, f"{self.proc}/{pid}/root{path}", path, pid)
            if spot is not None:
                self.new_blind.append(spot)
                log.warning("blind spot: pid %d maps %s (%s): TLS the probes cannot see",
                            pid, path, ", ".join(spot.families))

    def take_blind(self) -> list[BlindSpot]:
        """The blind spots found since the last call."""
        out, self.new_blind = self.new_blind, []
        return out

    def _library(self, pid: int, maps_path: str) -> Library | None:
        host_path = f"{self.proc}/{pid}/root{maps_path}"
        try:
            st = os.stat(host_path)
        except OSError:
            return None
        key = (st.st_dev, st.st_ino)
        if key in self.libraries or key in self.rejected:
            return None
        # A path through /proc/<pid>/root dies with the process; prefer the plain path
        # when it is the same file (a host process, or a shared image layer).
        try:
            plain = os.stat(maps_path)
            if (plain.st_dev, plain.st_ino) == key:
                host_path = maps_path
        except OSError:
            pass
        try:
            symbols = self.attach(host_path)
        except Exception as exc:  # bcc raises plain Exception on attach failure
            self.stats["attach_failures"] += 1
            log.warning("libssl %s (pid %d): attach failed: %s", host_path, pid, exc)
            self.rejected.add(key)
            return None
        if not symbols:
            self.rejected.add(key)
            return None
        lib = Library(host_path, maps_path, st.st_dev, st.st_ino, pid)
        self.libraries[key] = lib
        log.info("probing %s (%s) for pid %d: %s", host_path, key, pid, ", ".join(symbols))
        return lib


class PodProcesses:
    """Pod cgroups of this node (ids and paths) and the pids in them, from cgroupfs.

    ``include`` decides which cgroup paths count (default: kubelet-shaped pod paths, as
    :func:`collectors.cgroups.parse_cgroup_path` reads them).
    """

    def __init__(
        self, resolver: CgroupResolver,
        include: Callable[[str], bool] | None = None,
    ) -> None:
        self.resolver = resolver
        self.include = include or (lambda path: parse_cgroup_path(path) is not None)

    def cgroups(self) -> dict[int, str]:
        """{cgroup id: path relative to the v2 mount} of the pod cgroups now present."""
        return {cgid: path for cgid, path in self.resolver.scan().items()
                if self.include(path)}

    def pids(self, cgroups: dict[int, str]) -> set[int]:
        return set(self.pid_cgroups(cgroups))

    def pid_cgroups(self, cgroups: dict[int, str]) -> dict[int, int]:
        """{pid: cgroup id} of the processes in ``cgroups``."""
        root = Path(self.resolver.root)
        out: dict[int, int] = {}
        for cgid, path in cgroups.items():
            try:
                text = (root / path.lstrip("/") / "cgroup.procs").read_text()
            except OSError:
                continue
            out.update((int(p), cgid) for p in text.split())
        return out
