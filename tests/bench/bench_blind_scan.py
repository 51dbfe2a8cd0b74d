"""Blind-spot discovery cost: scanning a mapped file once for the markers of TLS
implementations the probes cannot attach to (collectors/l7/blind.py).

Each file a pod process maps executable, is not a libssl and exports no ``SSL_write`` is
scanned once per (device, inode); this times that scan (median of rounds, page cache
warm) for real TLS-carrying binaries when present (Bun, uv) and for the files this
Python process maps, which is what a typical Python agent costs on first sight.

Run: ``.venv/bin/python -m tests.bench.bench_blind_scan [--rounds 5]`` (Bun through
AGENTSTORY_TEST_BUN, uv on PATH or beside the interpreter).
"""

from __future__ import annotations

import argparse
import os
import shutil
import ssl  # noqa: F401  (maps libssl, as an agent that speaks TLS does)
import statistics
import sys
import time
from pathlib import Path

from collectors.l7.blind import tls_families
from collectors.l7.libssl import LIBSSL_NAME, exec_mappings


def _time(path: str, rounds: int) -> tuple[float, tuple[str, ...]]:
    took, found = [], ()
    for _ in range(rounds):
        start = time.perf_counter_ns()
        found = tls_families(path)
        took.append(time.perf_counter_ns() - start)
    return statistics.median(took) / 1e6, found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    named = {"bun (npm @oven/bun-linux-x64-baseline)": os.environ.get("AGENTSTORY_TEST_BUN"),
             "uv (PyPI)": shutil.which("uv") or str(Path(sys.executable).parent / "uv")}
    mine = sorted(p for p in exec_mappings(Path("/proc/self/maps").read_text())
                  if not LIBSSL_NAME.search(p))  # libssl is probed, never scanned
    print("### L7 blind-spot discovery: one marker scan per new file\n")
    print(f"`.venv/bin/python -m tests.bench.bench_blind_scan --rounds {args.rounds}` "
          "(mmap + one search per marker; median of rounds, page cache warm)\n")
    print("| file | size MB | TLS found | scan ms |")
    print("|---|---:|---|---:|")
    for label, path in named.items():
        if path and os.path.exists(path):
            ms, found = _time(path, args.rounds)
            size = os.path.getsize(path) / 1e6
            print(f"| {label} | {size:.1f} | {', '.join(found) or '-'} | {ms:.1f} |")
    total, biggest = 0.0, (0.0, "")
    for path in mine:
        ms, _found = _time(path, args.rounds)
        total += ms
        biggest = max(biggest, (ms, os.path.basename(path)))
    print(f"| the {len(mine)} other files this Python process maps executable | "
          f"{sum(os.path.getsize(p) for p in mine) / 1e6:.1f} | - | {total:.1f} |")
    print(f"\nA Python agent's files cost {total:.0f} ms once (largest: {biggest[1]}, "
          f"{biggest[0]:.1f} ms); later processes of the same image hit the cache. A "
          "100 MB single binary costs its scan once per node.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
