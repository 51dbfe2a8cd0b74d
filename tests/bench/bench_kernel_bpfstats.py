"""Cost of the kernel collector from the kernel's own BPF run-time statistics.

Run as root: ``.venv/bin/python -m tests.bench.bench_kernel_bpfstats`` (``--quick`` for a
smoke run). Prints a Markdown section for BENCHMARKS.md.

CPU-time A/B comparisons (bench_kernel_overhead) move with the other jobs of a shared
machine. The kernel counts, per BPF program, how often it ran and for how long
(``BPF_ENABLE_STATS`` / ``kernel.bpf_stats_enabled``; read here from
``/proc/<collector pid>/fdinfo/<prog fd>``: ``run_cnt``, ``run_time_ns``). Those figures
do not depend on the load: for each workload this prints the runs per workload event
and the in-kernel nanoseconds per run and per event, per program, and the programs' time
as a share of the workload's own CPU time. What they leave out is the syscall-tracepoint
dispatch itself (the kernel's path into the programs; see the A/B table of
bench_kernel_overhead for the whole). Other processes on the node run the programs too
(filtered out at the first test); their runs only add, so each program's figure is its
repetition with the least BPF time.

Also measured: the collector process's CPU (cores) and RSS at a paced 1k events/s of
distinct file opens from a pod (each one decoded and turned into an envelope; a fresh
collector), and the event rate a pod storm reaches with the loss counted.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.bench.bench_kernel_overhead import (
    AGENT_MIX,
    CPU_S,
    REAL_MIX,
    REPO,
    STORM_DISTINCT,
    STORM_SAME,
    Child,
    run_in_pod,
    run_on_host,
    start_peers,
)

COMMAND = ".venv/bin/python -m tests.bench.bench_kernel_bpfstats"
BPF_SYSCALL = 321  # x86_64
BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0

UNIX_PING = r"""
import os, resource, socket, sys, time
exec(CPU_S)
n = int(sys.argv[1])
a, b = socket.socketpair()
t0 = cpu_s()
start = time.perf_counter()
for _ in range(n):
    a.send(b"x")
    b.recv(1)
print(time.perf_counter() - start, cpu_s() - t0)
"""

PACED = r"""
import os, resource, sys, time
exec(CPU_S)
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
t0 = cpu_s()
start = time.perf_counter()
i = 0
while True:
    now = time.perf_counter() - start
    if now >= seconds:
        break
    due = int(now * rate)
    while i < due:
        try:
            os.close(os.open(f"/nonexistent/agentstory/paced-{i}", os.O_RDONLY))
        except OSError:
            pass
        i += 1
    time.sleep(0.002)
print(time.perf_counter() - start, cpu_s() - t0)
"""


@contextlib.contextmanager
def bpf_stats() -> Iterator[str]:
    """Turn on BPF run-time statistics for the duration: a BPF_ENABLE_STATS fd (off again
    when it closes), else the sysctl (restored)."""
    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_uint32 * 4)(BPF_STATS_RUN_TIME, 0, 0, 0)
    fd = libc.syscall(BPF_SYSCALL, BPF_ENABLE_STATS, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd >= 0:
        try:
            yield "BPF_ENABLE_STATS"
        finally:
            os.close(fd)
        return
    sysctl = Path("/proc/sys/kernel/bpf_stats_enabled")
    old = sysctl.read_text().strip()
    sysctl.write_text("1")
    try:
        yield "kernel.bpf_stats_enabled=1"
    finally:
        sysctl.write_text(old)


def prog_stats(pid: int, progs: dict[str, int]) -> dict[str, tuple[int, int]]:
    """name → (run_time_ns, run_cnt) of the collector's programs, from fdinfo."""
    out = {}
    for name, fd in progs.items():
        fields = {}
        for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        out[name] = (int(fields.get("run_time_ns", 0)), int(fields.get("run_cnt", 0)))
    return out


@contextlib.contextmanager
def measured(pod: Any, spec: tuple[str, int, str, bool, tuple[object, ...]]
             ) -> Iterator[dict[str, tuple[float, float]]]:
    """Start the workload, stop it after its imports; the body runs (takes the
    statistics) then the loop runs; on exit the workload has finished its loop and waits,
    still alive, so neither its start nor its exit is counted. Yields a dict that gets
    ``result``: (wall s, CPU s) of the loop."""
    code, n, _, in_pod, extra = spec
    code = code.replace("t0 = cpu_s()\n", "print('ready', flush=True)\nsys.stdin.readline()\n"
                        "t0 = cpu_s()\n", 1) + "\nsys.stdout.flush()\nsys.stdin.readline()\n"
    argv = [sys.executable, "-c", f"CPU_S = {CPU_S!r}\n{code}", str(n), *map(str, extra)]
    kwargs: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE,
                              "text": True, "cwd": REPO}
    proc = pod.popen(argv, **kwargs) if in_pod else subprocess.Popen(argv, **kwargs)
    assert proc.stdin is not None and proc.stdout is not None
    box: dict[str, tuple[float, float]] = {}
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("workload did not start")
        yield box
        proc.stdin.write("\n")
        proc.stdin.flush()
        wall, cpu = proc.stdout.readline().split()
        box["result"] = (float(wall), float(cpu))
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.write("\n")
            proc.stdin.close()
        proc.wait(60)


def compare_trees(reps: int, other: Path, concerns: tuple[str, ...], scale: int) -> int:
    """A/B/C of workload CPU on the host and pod storms and a host unix-socket ping:
    without a collector, with this tree's, with ``other``'s (e.g. a checkout before a
    change), rotated each repetition so that no mode always runs first; paired
    differences per repetition."""
    from collectors.kernel.sandbox import FakePod

    pod = FakePod("bench-agent", "bench").create()
    n = 200_000 // scale
    specs = {"host storm (not a pod), same path": (STORM_SAME, False),
             "host unix-socket ping (not a pod)": (UNIX_PING, False),
             "pod storm, same path": (STORM_SAME, True)}
    modes = ("off", "this", "other")
    cpu: dict[str, dict[str, list[float]]] = {w: {m: [] for m in modes} for w in specs}
    load = os.getloadavg()[0]
    try:
        for rep in range(reps):
            for mode in modes[rep % 3:] + modes[: rep % 3]:
                child = (None if mode == "off" else
                         Child(concerns, REPO if mode == "this" else other))
                try:
                    for w, (code, in_pod) in specs.items():
                        cpu[w][mode].append((run_in_pod(pod, code, n) if in_pod
                                             else run_on_host(code, n))[1])
                finally:
                    if child is not None:
                        child.stop()
    finally:
        pod.remove()
    print(f"A/B/C: `{COMMAND} --compare-tree {other} --reps {reps}` — {n:,} open+close "
          f"(or send+recv) per run; workload CPU (user+sys), median of {reps}; load average "
          f"{load:.1f} before, {os.getloadavg()[0]:.1f} after.\n")
    print("| workload | CPU without (s) | with this tree | with the other tree "
          "| overhead, this (median of per-rep) | overhead, other (median of per-rep) |")
    print("|---|---|---|---|---|---|")
    for w in specs:
        c = cpu[w]

        def paired(m: str, c: dict[str, list[float]] = c) -> float:
            return statistics.median((a - b) / b * 100 for a, b in zip(c[m], c["off"],
                                                                        strict=True))

        print(f"| {w} | {statistics.median(c['off']):.3f} | {statistics.median(c['this']):.3f} "
              f"| {statistics.median(c['other']):.3f} | {paired('this'):+.1f}% "
              f"| {paired('other'):+.1f}% |")
    print()
    return 0


def delta(after: dict[str, tuple[int, int]],
          before: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    return {n: (after[n][0] - before[n][0], after[n][1] - before[n][1]) for n in after}


def short(name: str) -> str:
    return name.removeprefix("tracepoint__").replace("__", ":")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition")
    parser.add_argument("--concerns", default="default",
                        help="'default' (the CLI's), 'all', or a comma-separated list")
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--compare-tree", type=Path, metavar="CHECKOUT",
                        help="only the A/B/C of CPU time on the storms: no collector, this "
                             "tree's, CHECKOUT's (a copy of another version of the repo)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_kernel_bpfstats: needs root (loads eBPF programs)", file=sys.stderr)
        return 2
    from collectors.kernel.loader import ALL_CONCERNS, DEFAULT_CONCERNS
    from collectors.kernel.sandbox import FakePod

    concerns = {"default": DEFAULT_CONCERNS, "all": ALL_CONCERNS}.get(
        args.concerns, tuple(args.concerns.split(",")))
    reps = 1 if args.quick else args.reps
    scale = 10 if args.quick else 1
    if args.compare_tree:
        return compare_trees(reps, args.compare_tree.resolve(), concerns, scale)
    # the API peer answers at once: the loop's events and CPU are the same as with a
    # remote API's latency, its wall time (during which others' runs add up) shorter
    port, api_port, peers = start_peers(api_delay_s=0.0)
    pod = FakePod("bench-agent", "bench").create()
    # name → (code, size, unit, in pod?, extra args)
    workloads: dict[str, tuple[str, int, str, bool, tuple[object, ...]]] = {
        "host storm (not a pod), same path": (STORM_SAME, 200_000 // scale, "open+close",
                                              False, ()),
        "host unix-socket ping (not a pod)": (UNIX_PING, 200_000 // scale, "send+recv",
                                              False, ()),
        "pod storm, same path": (STORM_SAME, 200_000 // scale, "open+close", True, ()),
        "pod storm, distinct paths": (STORM_DISTINCT, 100_000 // scale, "open+close", True,
                                      ()),
        "syscall-dense agent mix": (AGENT_MIX, 300 // scale, "iteration", True, (port,)),
        "realistic agent mix": (REAL_MIX, 1000 // scale, "iteration", True, (api_port,)),
    }

    def run(spec: tuple[str, int, str, bool, tuple[object, ...]], n: int) -> tuple[float, float]:
        code, _, _, in_pod, extra = spec
        return run_in_pod(pod, code, n, *extra) if in_pod else run_on_host(code, n, *extra)

    # workload → per repetition: (per-program delta, workload CPU s, wall s, counters)
    runs: dict[str, list[tuple[dict[str, tuple[int, int]], float, float, dict[str, int]]]] = {
        w: [] for w in workloads}
    idle: list[dict[str, tuple[int, int]]] = []
    idle_s = 2.0
    paced: dict[str, float] = {}
    rss_after_storms = 0.0
    bursts: dict[str, tuple[int, float, int, int]] = {}
    started = time.monotonic()
    load_before = os.getloadavg()
    try:
        for spec in workloads.values():  # warm-up (page cache, pyc), not measured
            run(spec, max(1, spec[1] // 20))
        with bpf_stats() as how:
            child = Child(concerns)
            pid = child.proc.pid
            try:
                for _rep in range(reps):
                    s0 = prog_stats(pid, child.progs)
                    time.sleep(idle_s)
                    idle.append(delta(prog_stats(pid, child.progs), s0))
                    for w, spec in workloads.items():
                        snap0 = child.snapshot()
                        with measured(pod, spec) as box:
                            s0 = prog_stats(pid, child.progs)
                        s1 = prog_stats(pid, child.progs)
                        wall, cpu = box["result"]
                        time.sleep(0.2)
                        snap1 = child.snapshot()
                        counters = {k: snap1[k] - snap0[k]
                                    for k in ("emitted", "deduplicated", "lost")}
                        runs[w].append((delta(s1, s0), cpu, wall, counters))
                # the highest event rate: two storm processes in the pod at once
                for name, code, n in (("same path", STORM_SAME, 300_000 // scale),
                                      ("distinct paths", STORM_DISTINCT, 150_000 // scale)):
                    snap0 = child.snapshot()
                    procs = [pod.popen([sys.executable, "-c", f"CPU_S = {CPU_S!r}\n{code}",
                                        str(n)], stdout=subprocess.PIPE, text=True, cwd=REPO)
                             for _ in range(2)]
                    # the loops' own wall time (the interpreters' start apart)
                    wall = max(float(proc.communicate(timeout=300)[0].split()[-2])
                               for proc in procs)
                    time.sleep(1.0)
                    snap1 = child.snapshot()
                    d = {k: snap1[k] - snap0[k] for k in ("emitted", "deduplicated", "lost")}
                    bursts[name] = (2 * n, wall, sum(d.values()), d["lost"])
                rss_after_storms = child.rss_kib() / 1024
            finally:
                child.stop()
            # the collector process itself at a paced event rate, started afresh
            child = Child(concerns)
            try:
                rate = 1000
                time.sleep(1.0)
                ticks, rss0, t0 = child.cpu_ticks(), child.rss_kib(), time.monotonic()
                snap0 = child.snapshot()
                out = pod.run([sys.executable, "-c", f"CPU_S = {CPU_S!r}\n{PACED}",
                               str(rate), str(args.paced_seconds)],
                              capture_output=True, text=True, timeout=600)
                time.sleep(0.5)
                snap1 = child.snapshot()
                elapsed = time.monotonic() - t0
                clk = os.sysconf("SC_CLK_TCK")
                paced = {
                    "rate": (snap1["envelopes"] - snap0["envelopes"]) / elapsed,
                    "cores": (child.cpu_ticks() - ticks) / clk / elapsed,
                    "rss_mib": child.rss_kib() / 1024, "rss_idle_mib": rss0 / 1024,
                    "lost": snap1["lost"] - snap0["lost"], "ok": float(out.returncode == 0),
                }
            finally:
                child.stop()
    finally:
        pod.remove()
        for sock in peers:
            sock.close()
    load_after = os.getloadavg()

    label = ",".join(concerns) if args.concerns not in ("default", "all") else (
        f"{args.concerns} concerns ({','.join(concerns)})")
    print("### Kernel collector cost from BPF run-time statistics\n")
    print(f"`{COMMAND}{' --quick' if args.quick else ''}"
          f"{'' if args.concerns == 'default' else ' --concerns ' + args.concerns}` — "
          f"{label}; statistics via {how}; {reps} repetition(s); load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; kernel "
          f"{os.uname().release}; {time.monotonic() - started:.0f} s in all.\n")
    idle_ns = min(sum(t for t, _ in d.values()) for d in idle) / idle_s
    idle_runs = min(sum(c for _, c in d.values()) for d in idle) / idle_s
    print("The statistics are read around the workload's loop (after its imports, before "
          "its exit). Other processes of the node run the programs too (filtered out at "
          f"the first test; idle here: {idle_runs:,.0f} runs/s, {idle_ns / 1e6:.2f} ms of "
          "BPF time per second, the quietest of the repetitions): their runs only add, so "
          "each program's figure is its repetition with the least BPF time, and the totals "
          "are the sums of those — upper bounds that reach the workload's own cost when "
          "one repetition was quiet for that program.\n")
    print("| workload | size | runs per event | BPF ns per run | BPF ns per event "
          "| BPF time / workload CPU | workload CPU (s), median | events/s observed "
          "| lost (all reps) |")
    print("|---|---|---|---|---|---|---|---|---|")
    best: dict[str, dict[str, tuple[int, int]]] = {}
    for w, spec in workloads.items():
        n = spec[1]
        per = {p: min((r[0][p] for r in runs[w]), key=lambda v: v[0]) for p in runs[w][0][0]}
        best[w] = per
        cpu = statistics.median(r[1] for r in runs[w])
        rate = statistics.median(sum(r[3].values()) / r[2] for r in runs[w])
        lost = sum(r[3]["lost"] for r in runs[w])
        total_ns = sum(t for t, _ in per.values())
        total_runs = sum(c for _, c in per.values())
        print(f"| {w} | {n:,} x {spec[2]} | {total_runs / n:.2f} "
              f"| {total_ns / max(total_runs, 1):.0f} | {total_ns / n:,.0f} "
              f"| {total_ns / 1e9 / cpu * 100:.2f}% | {cpu:.3f} | {rate:,.0f} | {lost} |")
    print()
    print("Per program (runs per workload event / ns per run; programs that ran at least "
          "once per 100 events):\n")
    names = list(workloads)
    print("| program | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    programs = sorted({p for per in best.values() for p in per})
    for p in programs:
        cells = []
        shown = False
        for w in names:
            t, c = best[w].get(p, (0, 0))
            n = workloads[w][1]
            if c and c / n >= 0.01:
                shown = True
                cells.append(f"{c / n:.2f} / {t / c:.0f}")
            else:
                cells.append("")
        if shown:
            print(f"| {short(p)} | " + " | ".join(cells) + " |")
    print()
    for name, (n, wall, seen, lost) in bursts.items():
        print(f"Two storm processes in the pod at once, {name}: {n:,} opens in {wall:.2f} s "
              f"(the longer loop), {seen / wall:,.0f} events/s observed "
              f"(emitted + folded + lost), {lost:,} lost.\n")
    if paced:
        print(f"Collector process (a fresh one) at a paced {paced['rate']:,.0f} envelopes/s "
              f"(distinct file opens from a pod, {args.paced_seconds:.0f} s): "
              f"{paced['cores']:.3f} cores, RSS {paced['rss_mib']:.0f} MiB "
              f"({paced['rss_idle_mib']:.0f} MiB before), lost {paced['lost']:.0f}. The one "
              f"that ran the workloads above: RSS {rss_after_storms:.0f} MiB at the end.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
