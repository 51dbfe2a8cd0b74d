"""Cost of the MCP-over-stdio capture (collectors/l7/stdio.bpf.c), side by side.

The program runs on every read() and write() of the node, so what matters most is what
processes that are *not* MCP pipes pay. Conditions alternate within each round:

- ``off``: nothing loaded;
- ``empty tracepoints, host process``: the same four syscall tracepoints with programs
  that return at once (the price of tracing read/write at all);
- ``loaded, host process``: stdio.bpf.c loaded and watching one pod cgroup, the
  process outside it (one cgroup-map lookup per syscall);
- ``loaded, pod process``: the process in the watched pod cgroup, not speaking MCP
  (cgroup lookup, `pipes` lookup, and `seen` on writes; its first write peeked once).

Syscall cost: ``dd if=/dev/zero of=/dev/null bs=1`` (one read and one write per byte),
wall time per syscall. MCP cost: a real ``mcp`` SDK client calling a FastMCP stdio
server's tool (tests/l7/stdio_app.py), latency per tools/call, with the client in the
pod cgroup so its pipes are captured and parsed (``loaded`` conditions) or not (``off``).

Run as root: ``.venv/bin/python -m tests.bench.bench_stdio_overhead``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from collectors.cgroups import CgroupResolver, find_cgroup2_mount
from collectors.kernel.sandbox import FakePod
from collectors.l7.libssl import PodProcesses
from collectors.l7.parser import L7Parser
from collectors.l7.stdio import StdioMcp
from tests.l7.tls_fixture import kube_cgroup

ROOT = Path(__file__).resolve().parents[2]
CONDITIONS = ("off", "empty tracepoints, host process", "loaded, host process",
              "loaded, pod process")
# The same four tracepoints doing nothing: what enabling syscall tracepoints costs by itself.
EMPTY = b"""
TRACEPOINT_PROBE(syscalls, sys_enter_write) { return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_write) { return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_read) { return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_read) { return 0; }
"""


class _Running:
    """stdio.bpf.c loaded, its ring buffer drained and parsed, watching ``pod``."""

    def __init__(self, pod: FakePod, emit: Any) -> None:
        from collectors.l7.stdio_loader import StdioCollector, StdioProbes, find_server

        self.probes = StdioProbes()
        root = str(pod.root)
        self.mcp = StdioMcp(L7Parser(), node="bench", emit=emit, attribute=lambda _c: None,
                            find_server=lambda p, f: find_server(p, f, cgroup_root=root),
                            watch=self.probes.watch, unwatch=self.probes.unwatch,
                            settle=self.probes.settle)
        self.collector = StdioCollector(self.probes, self.mcp,
                                        PodProcesses(CgroupResolver(pod.root)), rescan_s=0.5)
        self.collector.start()
        if pod.cgroup_id not in self.probes.watched:
            raise RuntimeError("the pod cgroup is not watched")

    def stop(self) -> dict[str, Any]:
        self.collector.stop()
        snap = self.collector.snapshot()
        self.probes.close()
        return snap


def _in_pod(argv: list[str], pod: FakePod | None) -> list[str]:
    if pod is None:
        return argv
    procs = pod.path / "cgroup.procs"
    return ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv]


def _dd_ns_per_syscall(n: int, pod: FakePod | None) -> float:
    argv = _in_pod(["dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={n}",
                    "status=none"], pod)
    start = time.perf_counter_ns()
    subprocess.run(argv, check=True)
    return (time.perf_counter_ns() - start) / (2 * n)


def _mcp_call_ns(calls: int, pod: FakePod | None) -> list[int]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.l7.stdio_app", "bench", str(calls)],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("the MCP client did not start")
    if pod is not None:
        pod.add(proc.pid)
    out, _ = proc.communicate("go\n", timeout=300)
    return [int(v) for v in json.loads(out.strip().splitlines()[-1].split(" ", 1)[1])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", type=int, default=300_000, help="dd blocks of 1 byte per run")
    ap.add_argument("--calls", type=int, default=200, help="tools/call per run")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (tracepoints, cgroups)", file=sys.stderr)
        return 2
    dd: dict[str, list[float]] = {c: [] for c in CONDITIONS}
    calls: dict[str, list[int]] = {c: [] for c in CONDITIONS}
    events = {"n": 0}
    lock = threading.Lock()

    def emit(_e: Any) -> bool:
        with lock:
            events["n"] += 1
        return True

    totals = {"sessions": 0, "lost": 0, "records": 0, "candidates": 0}
    started = time.monotonic()
    with kube_cgroup(find_cgroup2_mount()) as pod:
        for round_no in range(args.rounds):
            order = CONDITIONS[round_no % 4:] + CONDITIONS[: round_no % 4]
            for cond in order:
                empty = None
                if cond.startswith("empty"):
                    from bcc import BPF

                    empty = BPF(text=EMPTY)
                running = None if cond == "off" or empty else _Running(pod, emit)
                where = pod if cond.endswith("pod process") else None
                try:
                    dd[cond].append(_dd_ns_per_syscall(args.bytes, where))
                    # MCP latency: 'off' and 'loaded, pod process' put the client in the
                    # pod (captured only when loaded); the host case is not captured.
                    calls[cond].extend(_mcp_call_ns(args.calls // args.rounds,
                                                    None if cond.endswith("host process")
                                                    else pod))
                finally:
                    if empty is not None:
                        empty.cleanup()
                    if running is not None:
                        snap = running.stop()
                        totals["sessions"] += snap["stdio"]["sessions"]
                        for k in ("lost", "records", "candidates"):
                            totals[k] += snap["kernel"][k]
    elapsed = time.monotonic() - started

    print("### MCP over stdio capture: cost per syscall and per tool call (stdio.bpf.c)\n")
    print("`.venv/bin/python -m tests.bench.bench_stdio_overhead` as root "
          f"(rounds={args.rounds}, conditions alternate within each round; dd of "
          f"{args.bytes} one-byte blocks; {args.calls} tools/call in total per condition, "
          "mcp SDK client ↔ FastMCP stdio server)\n")
    print("| condition | dd ns per read/write (median) | added ns | tools/call median µs | "
          "p95 µs | added median µs |")
    print("|---|---:|---:|---:|---:|---:|")
    base_dd = statistics.median(dd["off"])
    base_call = statistics.median(calls["off"]) / 1000
    for cond in CONDITIONS:
        med = statistics.median(dd[cond])
        cmed = statistics.median(calls[cond]) / 1000
        p95 = sorted(calls[cond])[int(0.95 * (len(calls[cond]) - 1))] / 1000
        added = "" if cond == "off" else f"{med - base_dd:+.0f}"
        cadded = "" if cond == "off" else f"{cmed - base_call:+.0f}"
        print(f"| {cond} | {med:.0f} | {added} | {cmed:.0f} | {p95:.0f} | {cadded} |")
    host = statistics.median(dd["loaded, host process"]) - base_dd
    podc = statistics.median(dd["loaded, pod process"]) - base_dd
    bare = statistics.median(dd["empty tracepoints, host process"]) - base_dd
    print(f"\nCaptured: {totals['sessions']} stdio MCP sessions, {events['n']} events, "
          f"{totals['records']} ring-buffer records, {totals['candidates']} candidate "
          f"writes peeked, {totals['lost']} lost; run took {elapsed:.0f} s.\n")
    print(f"A read or write of a process outside the pods costs {host:+.0f} ns with the "
          f"stdio capture loaded ({bare:+.0f} ns of it is tracing the syscalls at all: the "
          f"empty programs), one of a pod process that is not an MCP pipe {podc:+.0f} ns "
          f"(over {base_dd:.0f} ns). The tools/call rows compare a client in the pod "
          "(captured and parsed when loaded) and a host client while the program is "
          "loaded; on this shared 2-core machine their differences are within the noise "
          "(compare the p95 column).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
