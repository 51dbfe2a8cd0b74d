"""Discovery of statically linked OpenSSL: real ELF files (this machine's libssl, CPython's
``_ssl`` module that only imports it), the per-file cache, and the tracker treating an
executable that defines SSL_write like a libssl (fake /proc, no bcc)."""

from __future__ import annotations

import os
import shutil
import ssl  # noqa: F401  (maps libssl into this process, where the tests find it)
from pathlib import Path

import pytest

from collectors.l7.elfsyms import ExportCache, defines_symbol
from collectors.l7.libssl import LibraryTracker, exec_mappings, libssl_paths


def _this_libssl() -> Path:
    paths = sorted(libssl_paths(Path("/proc/self/maps").read_text()))
    if not paths:
        pytest.skip("this Python's ssl module does not map a libssl.so")
    return Path(paths[0])


def _ssl_extension() -> Path:
    import _ssl

    path = getattr(_ssl, "__file__", None)
    if path is None:
        pytest.skip("_ssl is built into this Python")
    return Path(path)


# -- ELF symbols ----------------------------------------------------------------------
def test_a_library_that_defines_ssl_write_is_a_tls_library() -> None:
    libssl = _this_libssl()
    assert defines_symbol(str(libssl))
    assert defines_symbol(str(libssl), "SSL_read")
    assert not defines_symbol(str(libssl), "SSL_no_such_function")


def test_a_module_that_only_imports_ssl_write_is_not() -> None:
    # CPython's _ssl has SSL_write in .dynsym, undefined: its calls land in libssl.
    assert not defines_symbol(str(_ssl_extension()))


def test_cache_parses_each_file_once_and_survives_bad_files(tmp_path: Path) -> None:
    libssl = _this_libssl()
    calls: list[str] = []

    def check(path: str) -> bool:
        calls.append(path)
        return defines_symbol(path)

    cache = ExportCache(check)
    assert cache.exports_tls(("fe:00", 1), str(libssl))
    assert cache.exports_tls(("fe:00", 1), "/elsewhere/same/inode")  # cached: not read
    assert calls == [str(libssl)]
    assert cache.stats["elf_parsed"] == 1 and cache.stats["elf_parse_us"] >= 0

    text = tmp_path / "script.sh"
    text.write_text("#!/bin/sh\necho not elf\n")
    truncated = tmp_path / "cut.so"
    truncated.write_bytes(libssl.read_bytes()[:200])
    assert not cache.exports_tls(("fe:00", 2), str(text))
    assert not cache.exports_tls(("fe:00", 3), str(truncated))
    assert cache.known[("fe:00", 2)] is False and cache.known[("fe:00", 3)] is False
    assert cache.stats["elf_errors"] == 2

    # Unreadable (the process exited): an error, not cached, asked again next time.
    assert not cache.exports_tls(("fe:00", 4), str(tmp_path / "gone"))
    assert ("fe:00", 4) not in cache.known and cache.stats["elf_errors"] == 3


# -- maps -----------------------------------------------------------------------------
def test_exec_mappings_keep_executable_files_only() -> None:
    maps = (
        "55a-55b r--p 00000000 fe:00 77 /usr/bin/node\n"
        "55b-55c r-xp 00001000 fe:00 77 /usr/bin/node\n"
        "7f0-7f1 r-xp 00000000 fe:01 12 /lib/x86_64-linux-gnu/libc.so.6\n"
        "7f1-7f2 r-xp 00000000 00:00 0 [vdso]\n"
        "7f2-7f3 rw-p 00000000 fe:00 9 /data/file\n"
        "7f3-7f4 r-xp 00000000 00:00 0 \n"
        "7f4-7f5 r-xp 00000000 fe:00 5 /old/node (deleted)\n"
        "7f5-7f6 r-xp 00000000 fe:00 6 /opt/with space/agent\n"
    )
    assert exec_mappings(maps) == {
        "/usr/bin/node": ("fe:00", 77),
        "/lib/x86_64-linux-gnu/libc.so.6": ("fe:01", 12),
        "/opt/with space/agent": ("fe:00", 6),
    }


# -- the tracker ----------------------------------------------------------------------
def test_tracker_probes_an_executable_with_openssl_linked_in(tmp_path: Path) -> None:
    """A pod image whose ``/app/agent`` defines SSL_write (a copy of libssl under another
    name, like node) and whose libc does not: the agent is probed through the process's
    root, once, and the files are parsed once however many processes map them."""
    proc, image = tmp_path / "proc", tmp_path / "image"
    (image / "app").mkdir(parents=True)
    (image / "lib").mkdir()
    shutil.copy(_this_libssl(), image / "app" / "agent")
    shutil.copy(_ssl_extension(), image / "lib" / "_ssl.so")
    maps = ("55b-55c r-xp 00001000 fe:00 70 /app/agent\n"
            "7f0-7f1 r-xp 00000000 fe:00 71 /lib/_ssl.so\n")
    for pid in (30, 31, 32):
        (proc / str(pid)).mkdir(parents=True)
        os.symlink(image, proc / str(pid) / "root")
        (proc / str(pid) / "maps").write_text(maps)
    (proc / "32" / "maps").write_text("7f0-7f1 r-xp 00000000 fe:00 71 /lib/_ssl.so\n")
    attached: list[str] = []
    tracker = LibraryTracker(lambda path: attached.append(path) or ["SSL_write"],
                             proc=str(proc))
    added = tracker.check([30, 31, 32])
    assert [lib.maps_path for lib in added] == ["/app/agent"]
    assert attached == [f"{proc}/30/root/app/agent"]
    assert tracker.exports.stats["elf_parsed"] == 2  # agent and _ssl.so, once each
    # pid 32 (no TLS library yet) is read again; nothing is parsed or attached again
    assert tracker.check([30, 31, 32]) == []
    assert tracker.stats["maps_read"] == 4
    assert tracker.exports.stats["elf_parsed"] == 2 and len(attached) == 1


def test_tracker_does_not_parse_libssl_named_files(tmp_path: Path) -> None:
    (tmp_path / "5").mkdir()
    os.symlink("/", tmp_path / "5" / "root")
    libssl = _this_libssl()
    (tmp_path / "5" / "maps").write_text(f"7f0-7f1 r-xp 0 fe:00 1 {libssl}\n")
    tracker = LibraryTracker(lambda path: ["SSL_write"], proc=str(tmp_path))
    assert [lib.maps_path for lib in tracker.check([5])] == [str(libssl)]
    assert tracker.exports.stats["elf_parsed"] == 0
