"""Blind spots without the kernel: which files are recognized as carrying TLS the probes
cannot attach to, the per-file cache, and the tracker reporting them per process next
to the libraries it probes (fake /proc)."""

from __future__ import annotations

import os
import shutil
import ssl  # noqa: F401  (maps libssl into this process)
from pathlib import Path

import pytest

from collectors.l7.blind import BlindSpots, tls_families
from collectors.l7.libssl import LibraryTracker, libssl_paths


def _mapped(name: str) -> Path:
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split(None, 5)[-1]
        if os.path.basename(path).startswith(name):
            return Path(path)
    pytest.skip(f"no {name} mapped in this process")


def test_families_from_markers_and_names(tmp_path: Path) -> None:
    cases = {
        "bun": b"\x7fELF...version BoringSSL...",
        "uv": b"...index.crates.io-6f17d22bba15001f/rustls-0.23.27/src/conn.rs...",
        "goagent": b"...crypto/tls.(*Conn).Write...",
        "static": b"...ssl/statem/statem_clnt.c...",
        "plain": b"nothing to see here",
        "empty": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert {n: tls_families(str(tmp_path / n)) for n in cases} == {
        "bun": ("boringssl",), "uv": ("rustls",), "goagent": ("go-crypto-tls",),
        "static": ("openssl-unexported",), "plain": (), "empty": ()}
    # GnuTLS and NSS by name, without reading (the path need not exist)
    assert tls_families("/usr/lib/x86_64-linux-gnu/libgnutls.so.30") == ("gnutls",)
    assert tls_families("/usr/lib/libssl3.so") == ("nss",)
    with pytest.raises(OSError):
        tls_families(str(tmp_path / "gone"))


def test_real_openssl_libraries() -> None:
    """libcrypto alone is no TLS implementation; libssl's source paths are recognized
    (it is probed, never scanned, but a copy without exports would be reported)."""
    libssl = Path(sorted(libssl_paths(Path("/proc/self/maps").read_text()))[0])
    assert tls_families(str(libssl)) == ("openssl-unexported",)
    assert tls_families(str(_mapped("libcrypto.so"))) == ()


def test_each_file_is_scanned_once_and_each_process_reported_once(tmp_path: Path) -> None:
    scanned: list[str] = []

    def scan(path: str) -> tuple[str, ...]:
        scanned.append(path)
        if "gone" in path:
            raise OSError("exited")
        return ("rustls",) if "agent" in path else ()

    spots = BlindSpots(scan)
    first = spots.check(("fe:00", 1), "/proc/7/root/app/agent", "/app/agent", 7)
    assert first is not None and first.families == ("rustls",) and first.pid == 7
    assert spots.check(("fe:00", 1), "/proc/7/root/app/agent", "/app/agent", 7) is None
    second = spots.check(("fe:00", 1), "/proc/8/root/app/agent", "/app/agent", 8)
    assert second is not None and second.pid == 8
    assert spots.check(("fe:00", 2), "/proc/7/root/lib/libc.so.6", "/lib/libc.so.6", 7) is None
    assert spots.check(("fe:00", 3), "/proc/7/root/gone", "/gone", 7) is None
    assert spots.check(("fe:00", 3), "/proc/7/root/gone", "/gone", 7) is None  # asked again
    assert scanned.count("/proc/7/root/app/agent") == 1 and len(scanned) == 4
    assert spots.stats["tls_scanned"] == 2 and spots.stats["tls_scan_errors"] == 2
    assert spots.summary() == [{"path": "/app/agent", "tls": ["rustls"], "pids": [7, 8]}]
    spots.forget({8})  # pid 7 exited; a new process with its pid is reported anew
    assert spots.check(("fe:00", 1), "/proc/7/root/app/agent", "/app/agent", 7) is not None


def test_tracker_reports_unprobeable_tls_next_to_what_it_probes(tmp_path: Path) -> None:
    proc, image = tmp_path / "proc", tmp_path / "image"
    (image / "app").mkdir(parents=True)
    (image / "lib").mkdir()
    (image / "app" / "agent").write_bytes(b"\x7fELF stripped... BoringSSL ...")
    (image / "lib" / "libc.so.6").write_bytes(b"\x7fELF plain libc")
    libssl = sorted(libssl_paths(Path("/proc/self/maps").read_text()))[0]
    shutil.copy(libssl, image / "lib" / "libssl.so.3")
    maps = {40: "55b-55c r-xp 00001000 fe:00 80 /app/agent\n"
                "7f0-7f1 r-xp 00000000 fe:00 81 /lib/libc.so.6\n",
            41: "7f0-7f1 r-xp 00000000 fe:00 81 /lib/libc.so.6\n"
                "7f2-7f3 r-xp 00000000 fe:00 82 /lib/libssl.so.3\n"}
    for pid, text in maps.items():
        (proc / str(pid)).mkdir(parents=True)
        os.symlink(image, proc / str(pid) / "root")
        (proc / str(pid) / "maps").write_text(text)
    attached: list[str] = []
    tracker = LibraryTracker(lambda path: attached.append(path) or ["SSL_write"],
                             proc=str(proc), blind=BlindSpots())
    tracker.check([40, 41])
    spots = tracker.take_blind()
    assert [(s.pid, s.path, s.families) for s in spots] == [(40, "/app/agent", ("boringssl",))]
    assert [Path(p).name for p in attached] == ["libssl.so.3"]  # probed, not a blind spot
    tracker.check([40, 41])  # pid 40 is read again (no probed library): not reported again
    assert tracker.take_blind() == []
    assert tracker.blind is not None and tracker.blind.stats["tls_scanned"] == 2
