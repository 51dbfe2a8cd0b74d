"""``./taskw bench``: run every benchmark on this machine and write BENCHMARKS.md.

Each ``tests/bench/bench_*.py`` prints one Markdown section (its command, a table, a line
of reading). This runner adds the machine and the date, runs them one after another (they
compare variants side by side inside one run; running two at once would skew both), and
keeps a failed benchmark's error in the file rather than hiding it.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), platform.processor())
    mem_kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                  if ln.startswith("MemTotal"))
    return (f"{os.cpu_count()} cores ({cpu}), {mem_kb / 2**20:.0f} GiB, Linux "
            f"{platform.release()}, Python {platform.python_version()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="bench module names (default: all)")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    names = args.names or sorted(p.stem for p in HERE.glob("bench_*.py"))
    sections, failed = [], 0
    for name in names:
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        start = time.monotonic()
        try:
            out = subprocess.run([sys.executable, "-m", f"tests.bench.{name}"], cwd=ROOT,
                                 capture_output=True, text=True, timeout=args.timeout)
            ok, body = out.returncode == 0, out.stdout.strip()
            error = out.stderr[-3000:]
        except subprocess.TimeoutExpired:
            ok, body, error = False, "", f"timed out after {args.timeout:.0f}s"
        took = time.monotonic() - start
        if not ok:
            failed += 1
            body = (f"### {name}: FAILED\n\nCommand: `.venv/bin/python -m tests.bench.{name}`"
                    f"\n\n```\n{error.strip()}\n```")
        sections.append(f"{body}\n\n_{name}: {took:.0f} s wall time._")
        print(f"bench: {name} {'ok' if ok else 'FAILED'} in {took:.0f} s", file=sys.stderr)
    header = (
        "# Benchmarks\n\n"
        f"Written by `./taskw bench` (`python -m tests.bench.run`) on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.\n\n"
        f"Machine: {machine()}. These machines are shared and noisy: compare the variants "
        "inside one table (they ran side by side in one run), not across runs.\n"
    )
    args.output.write_text(header + "\n" + "\n\n".join(sections) + "\n")
    print(f"bench: wrote {args.output} ({failed} failed)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
