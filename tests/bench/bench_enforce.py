"""Added latency of the enforcer per connect and per exec, for an enforced pod, a pod
no policy names, and a host process.

Run as root: ``.venv/bin/python -m tests.bench.bench_enforce`` (``--quick`` for a smoke
run). Prints a Markdown section for BENCHMARKS.md.

The enforced pod runs under an ``enforce``-mode policy that allows the loopback
destination by CIDR (plus a few domains, so the maps are not empty) and the executables
used; its connects therefore go through the whole check and pass. Each context runs a
small worker process (in the pod's cgroup, or on the host) that times batches of:

- **UDP connect**: socket + connect of a datagram socket to 127.0.0.1 + close (no
  packet: the cgroup/connect4 hook is most of the kernel work here);
- **TCP connect**: socket + connect to a loopback listener + close (a real handshake);
- **exec**: posix_spawn of /usr/bin/true + wait (the sched_process_exec program runs
  for every exec on the node, enforced or not).

Rounds alternate without / with the enforcer (programs loaded, pod attached; "without"
unloads everything); medians over rounds of the per-operation medians of batches.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COMMAND = ".venv/bin/python -m tests.bench.bench_enforce"
OPS = ("udp_connect", "tcp_connect", "exec")


def worker(port: int, batches: int, per_batch: int) -> dict[str, float]:
    """Per-op medians (µs) of each workload, run in this process."""

    def timed(fn: Any) -> float:
        samples = []
        for _ in range(batches):
            start = time.perf_counter_ns()
            for _ in range(per_batch):
                fn()
            samples.append((time.perf_counter_ns() - start) / per_batch / 1000)
        return statistics.median(samples)

    def udp() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", port))
        s.close()

    def tcp() -> None:
        s = socket.socket()
        s.connect(("127.0.0.1", port))
        s.close()

    def spawn() -> None:
        pid = os.posix_spawn("/usr/bin/true", ["true"], {})
        os.waitpid(pid, 0)

    out = {"udp_connect": timed(udp), "tcp_connect": timed(tcp)}
    out["exec"] = timed(spawn) if per_batch >= 10 else 0.0
    return out


def _listener() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1024)

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    return srv, srv.getsockname()[1]


def _run_worker(pod: Any, port: int, batches: int, per_batch: int) -> dict[str, float]:
    argv = [sys.executable, "-m", "tests.bench.bench_enforce", "--worker", str(port),
            str(batches), str(per_batch)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if pod is None:
        done = subprocess.run(argv, capture_output=True, text=True, check=True, env=env,
                              cwd=REPO, timeout=600)
    else:
        done = pod.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _start_enforcer(index: Any, policies: list[Any]) -> Any:
    from collectors.cgroups import CgroupResolver
    from collectors.enforce.loader import Enforcer
    from collectors.pods import Attributor

    enforcer = Enforcer("bench", Attributor(index, CgroupResolver()), lambda e: None,
                        policies=policies, resolvers=["127.0.0.1"], node_addresses=[],
                        kill_switch_path=None)
    enforcer.start()
    return enforcer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", nargs=3, type=int, metavar=("PORT", "BATCHES", "N"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    from collectors.enforce import bpfsys
    from collectors.enforce.policy import parse_policy
    from collectors.kernel.sandbox import FakePod
    from collectors.pods import PodIndex, PodInfo

    rounds, batches, per_batch = (2, 3, 50) if args.quick else (5, 7, 200)
    srv, port = _listener()
    index = PodIndex()
    enforced, other = FakePod("bench-enforced", "bench"), FakePod("bench-other", "bench")
    agent = "bench/Deployment/bench-enforced"
    policy = parse_policy({
        "apiVersion": "agentstory/v1", "kind": "EnforcePolicy", "agent": agent,
        "mode": "enforce",
        "egress": {"cidrs": [{"cidr": "127.0.0.1/32", "ports": [port]}, "10.0.0.0/8"],
                   "domains": ["api.openai.com", "*.amazonaws.com"], "loopback": False},
        "exec": {"allowed": ["/usr/bin/true", sys.executable, "/bin/sh"]}})
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    prog_runs: dict[tuple[str, str], tuple[int, int]] = {}
    stats_fd = -1
    try:
        for pod in (enforced, other):
            pod.create()
            index.apply("ADDED", PodInfo.from_manifest(
                pod.manifest(owner=("Deployment", pod.name))))
        contexts = {"enforced pod": enforced, "pod without policy": other, "host process": None}
        stats_fd = bpfsys.enable_stats()
        for round_ in range(rounds):
            # alternate the order, so drift (TIME_WAIT sockets, other jobs) cancels out
            for state in (("without", "with") if round_ % 2 == 0 else ("with", "without")):
                enforcer = _start_enforcer(index, [policy]) if state == "with" else None
                try:
                    if enforcer is not None:
                        assert enforcer.enforced_pods == {enforced.uid: agent}
                    for name, pod in contexts.items():
                        before = bpfsys.program_stats("enf_") if enforcer else {}
                        results.setdefault((name, state), []).append(
                            _run_worker(pod, port, batches, per_batch))
                        if enforcer is None:
                            continue
                        for prog, (runs, ns) in bpfsys.program_stats("enf_").items():
                            runs0, ns0 = before.get(prog, (0, 0))
                            r, t = prog_runs.get((name, prog), (0, 0))
                            prog_runs[(name, prog)] = (r + runs - runs0, t + ns - ns0)
                    if enforcer is not None:
                        counters = enforcer.counters()
                finally:
                    if enforcer is not None:
                        enforcer.close()
    finally:
        if stats_fd >= 0:
            os.close(stats_fd)
        srv.close()
        for pod in (enforced, other):
            pod.remove()
    print(render(results, counters, prog_runs, rounds, batches, per_batch))
    return 0


def render(results: dict[tuple[str, str], list[dict[str, float]]], counters: dict[str, int],
           prog_runs: dict[tuple[str, str], tuple[int, int]], rounds: int, batches: int,
           per_batch: int) -> str:
    lines = [
        "### Enforcer: added latency per connect and per exec (collectors/enforce)",
        "",
        f"`{COMMAND}` (root). {rounds} rounds alternating without / with the enforcer; "
        f"per round, the median of {batches} batches of {per_batch} operations in a worker "
        "process in each context; the table shows the median over rounds (µs per "
        "operation, socket creation and close included).",
        "",
        "| context | operation | without (µs) | with (µs) | added (µs) | added |",
        "|---|---|---:|---:|---:|---:|",
    ]
    contexts = list(dict.fromkeys(c for c, _ in results))
    for context in contexts:
        for op in OPS:
            without = statistics.median(r[op] for r in results[(context, "without")])
            with_ = statistics.median(r[op] for r in results[(context, "with")])
            lines.append(f"| {context} | {op.replace('_', ' ')} | {without:.1f} | "
                         f"{with_:.1f} | {with_ - without:+.1f} | "
                         f"{(with_ - without) / without * 100:+.1f}% |")
    lines += ["", "Time inside the enforcer's programs while each context's worker ran, "
              "measured by the kernel (BPF_ENABLE_STATS run time, all rounds with the "
              "enforcer; other processes of the node exec'ing meanwhile are counted too). "
              "The cgroup programs run only for the enforced pod's sockets (`enf_dns_ingress` "
              "for every packet it receives); `enf_exec` runs for every exec on the node:", "",
              "| context | program | runs | ns per run |", "|---|---|---:|---:|"]
    for (context, name), (runs, ns) in sorted(prog_runs.items()):
        if runs:
            lines.append(f"| {context} | {name} | {runs} | {ns / runs:.0f} |")
    lines += ["", f"Enforcer counters of the last round: {counters} (every check of the "
              "enforced pod passed: no violation, nothing logged)."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
