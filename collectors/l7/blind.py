"""TLS libraries the probes cannot reach: files a pod process maps that carry a TLS
implementation but neither are a libssl nor export ``SSL_write`` (the blind spots).

Bun-compiled agents carry a stripped BoringSSL, Rust agents rustls, Go programs
crypto/tls, some builds a static OpenSSL without exported symbols; GnuTLS and NSS are
libraries of their own. None has a function the uprobes can attach to, so their
traffic is invisible to the L7 collector. Rather than imply silence, the collector
names them: :func:`tls_families` recognizes the implementation from strings every build
of it carries (its name or its source paths, kept in error and panic messages),
once per file, and :class:`BlindSpots` remembers which process mapped which.
"""

from __future__ import annotations

import mmap
import re
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["MARKERS", "BlindSpot", "BlindSpots", "tls_families"]

# family → byte strings any build of it carries (one is enough)
MARKERS: dict[str, tuple[bytes, ...]] = {
    "boringssl": (b"BoringSSL",),
    "rustls": (b"rustls",),
    "go-crypto-tls": (b"crypto/tls.(*Conn)",),
    # libssl's own source paths (OPENSSL_FILE in its errors); libcrypto has none of them
    "openssl-unexported": (b"ssl/record/rec_layer_s3.c", b"ssl/statem/statem_clnt.c"),
}
# TLS libraries recognized by name (their own APIs, which nothing here probes)
LIBRARY_NAMES: dict[str, re.Pattern[str]] = {
    "gnutls": re.compile(r"(?:^|/)libgnutls\.so"),
    "nss": re.compile(r"(?:^|/)libssl3\.so"),
}


def tls_families(path: str) -> tuple[str, ...]:
    """The TLS implementations whose markers the file at ``path`` contains.

    Raises ``OSError`` if it cannot be read. An empty file has none.
    """
    for family, pattern in LIBRARY_NAMES.items():
        if pattern.search(path):
            return (family,)
    with open(path, "rb") as fh:
        try:
            view = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            return ()
        with view:
            return tuple(family for family, needles in MARKERS.items()
                         if any(view.find(n) >= 0 for n in needles))


@dataclass(frozen=True, slots=True)
class BlindSpot:
    """A TLS-carrying file a process maps and the probes cannot attach to."""

    path: str  # as the process sees it
    ident: Hashable  # (device, inode) of the maps line
    families: tuple[str, ...]
    pid: int


class BlindSpots:
    """Scans each file once (cached by identity) and reports each (file, pid) once.
    ``stats``: files scanned, their total µs, read errors, blind spots reported."""

    def __init__(self, scan: Callable[[str], tuple[str, ...]] = tls_families) -> None:
        self.scan = scan
        self.known: dict[Hashable, tuple[str, ...]] = {}
        self.reported: set[tuple[Hashable, int]] = set()
        self.files: dict[Hashable, BlindSpot] = {}  # first sighting of each blind file
        self.stats: dict[str, int] = {"tls_scanned": 0, "tls_scan_us": 0, "tls_scan_errors": 0,
                                      "blind_spots": 0}

    def check(self, ident: Hashable, host_path: str, maps_path: str,
              pid: int) -> BlindSpot | None:
        """A new blind spot if ``pid`` maps a TLS-carrying file not reported for it yet."""
        families = self.known.get(ident)
        if families is None:
            start = time.perf_counter_ns()
            try:
                families = self.scan(host_path)
            except OSError:
                self.stats["tls_scan_errors"] += 1
                return None  # gone (the process exited): asked again next time
            self.stats["tls_scanned"] += 1
            self.stats["tls_scan_us"] += (time.perf_counter_ns() - start) // 1000
            self.known[ident] = families
        if not families or (ident, pid) in self.reported:
            return None
        self.reported.add((ident, pid))
        spot = BlindSpot(maps_path, ident, families, pid)
        self.files.setdefault(ident, spot)
        self.stats["blind_spots"] += 1
        return spot

    def forget(self, live_pids: set[int]) -> None:
        """Drop what was reported for exited pids (a reused pid is a new process)."""
        self.reported = {(i, p) for i, p in self.reported if p in live_pids}

    def summary(self) -> list[dict[str, object]]:
        """One entry per blind file (for the collector's stats)."""
        return [{"path": s.path, "tls": list(s.families),
                 "pids": sorted(p for i, p in self.reported if i == ident)}
                for ident, s in self.files.items()]
