"""Overhead of the kernel collector, measured side by side in one run.

Run as root: ``.venv/bin/python -m tests.bench.bench_kernel_overhead`` (add ``--quick``
for a short smoke run). Prints a Markdown section for BENCHMARKS.md.

Each workload runs inside a kubelet-shaped pod cgroup (so every event is really
captured, attributed and handed to user space), alternately without and with the
collector attached, several times; the medians are compared. The collector runs in its
own process (``--collector-child``: envelopes counted, not published), so its RSS and
CPU are measured apart from the workload. Three modes rotate: without the collector,
with all concerns, and with all but syscall.profile (the one probe on every syscall).

- **syscall-dense agent mix**: per iteration an exec of a small program, five file
  reads, a DNS query to a loopback resolver, a loopback TCP connect with 2 KiB sent, and
  ~0.1 ms of hashing. Far denser in syscalls and events than a real agent (hundreds of
  syscalls per 0.1 ms of compute): an upper bound, not the typical case.
- **realistic agent mix**: what an agent process mostly does: Python work on JSON
  (parse a ~40 KiB tool result, build a ~10 KiB request), one small file read, one
  HTTPS-like loopback request/response on a kept-alive connection (the peer answers
  after ~2 ms, like a remote API), a DNS query every 10 iterations, a new connection
  every 10, a subprocess every 25.
- **host storm**: the same-path open/close storm run by a host process (not in a pod
  cgroup) while the collector is attached: what a node sensor costs the processes it
  filters out in the kernel.

Each workload reports its wall time and its CPU time (user+sys, children included);
the CPU time is what the probes add to the workload and is far less disturbed by other
jobs on a shared machine, so the overhead is computed on it (wall time shown too).
- **open/close storm (same path)**: the worst case for a file hook; identical opens
  are de-duplicated in the kernel, so this measures the probe cost.
- **open/close storm (distinct paths)**: nothing to de-duplicate, every open goes
  through the ring buffer to user space: the event rate handled and the loss.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]
COMMAND = ".venv/bin/python -m tests.bench.bench_kernel_overhead"

CPU_S = r"""
def cpu_s():
    # user+sys of this process and its reaped children, microsecond resolution
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
"""

AGENT_MIX = r"""
import hashlib, os, resource, socket, subprocess, sys, time
from collectors.kernel.dnsmsg import build_query
exec(CPU_S)
n, port = int(sys.argv[1]), int(sys.argv[2])
files = ["/etc/hosts", "/etc/passwd", "/etc/os-release", "/etc/services", "/etc/hostname"]
blob = os.urandom(65536)
t0 = cpu_s()
start = time.perf_counter()
for i in range(n):
    subprocess.run(["/bin/true"], check=True)
    for f in files:
        with open(f, "rb") as fh:
            fh.read()
    d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    d.sendto(build_query(f"svc{i % 50}.example.com", 1, ident=i & 0xFFFF), ("127.0.0.1", 53))
    d.recvfrom(512)
    d.close()
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"x" * 2048)
    c.close()
    for _ in range(4):
        hashlib.sha256(blob).digest()
print(time.perf_counter() - start, cpu_s() - t0)
"""

STORM_SAME = r"""
import os, resource, sys, time
exec(CPU_S)
n = int(sys.argv[1])
path = "/etc/hostname"
t0 = cpu_s()
start = time.perf_counter()
for _ in range(n):
    os.close(os.open(path, os.O_RDONLY))
print(time.perf_counter() - start, cpu_s() - t0)
"""

STORM_DISTINCT = r"""
import os, resource, sys, time
exec(CPU_S)
n = int(sys.argv[1])
t0 = cpu_s()
start = time.perf_counter()
for i in range(n):
    try:
        os.close(os.open(f"/nonexistent/agentstory/bench-{i}", os.O_RDONLY))
    except OSError:
        pass
print(time.perf_counter() - start, cpu_s() - t0)
"""


# -- the collector, in its own process ---------------------------------------------------
REAL_MIX = r"""
import json, os, resource, socket, subprocess, sys, time
from collectors.kernel.dnsmsg import build_query
exec(CPU_S)
n, port = int(sys.argv[1]), int(sys.argv[2])
doc = {"results": [{"id": i, "title": f"item {i}", "score": i * 0.37,
                    "tags": ["a", "b", str(i)], "body": "lorem ipsum " * 8}
                   for i in range(200)]}
payload = json.dumps(doc)
conn = None
t0 = cpu_s()
start = time.perf_counter()
for i in range(n):
    if i % 10 == 0:
        if conn is not None:
            conn.close()
        d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        d.sendto(build_query(f"api{i % 7}.example.com", 1, ident=i & 0xFFFF),
                 ("127.0.0.1", 53))
        d.recvfrom(512)
        d.close()
        conn = socket.create_connection(("127.0.0.1", port))
    if i % 25 == 0:
        subprocess.run(["/bin/true"], check=True)
    with open("/etc/os-release", "rb") as fh:
        fh.read()
    parsed = json.loads(payload)
    best = sorted(parsed["results"], key=lambda r: -r["score"])[:20]
    request = json.dumps({"model": "m", "messages": [{"role": "tool", "content": best}]})
    conn.sendall(len(request).to_bytes(4, "big") + request.encode())
    size = int.from_bytes(conn.recv(4, socket.MSG_WAITALL), "big")
    conn.recv(size, socket.MSG_WAITALL)
if conn is not None:
    conn.close()
print(time.perf_counter() - start, cpu_s() - t0)
"""


def collector_child(concerns: tuple[str, ...]) -> int:
    """Start the collector, count envelopes, print stats as JSON lines: one on start
    ("ready"), one per SIGUSR1 (snapshot), one on SIGTERM (final)."""
    from collectors.cgroups import CgroupResolver
    from collectors.kernel.loader import KernelCollector
    from collectors.pods import Attributor, PodIndex

    counted = {"envelopes": 0}

    def emit(_envelope: Any) -> None:
        counted["envelopes"] += 1

    collector = KernelCollector("bench", Attributor(PodIndex(), CgroupResolver()), emit,
                                concerns=concerns, metadata_wait_ms=0)
    collector.start()
    stop = threading.Event()
    snap = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: snap.set())

    def report(tag: str) -> None:
        sys.stdout.write(orjson.dumps({"tag": tag, **collector.stats, **counted}).decode()
                         + "\n")
        sys.stdout.flush()

    # program name → fd, for the BPF run-time statistics read from /proc/<pid>/fdinfo
    progs = {name.decode(): fn.fd for name, fn in collector._bpf.funcs.items()}
    sys.stdout.write(orjson.dumps({"tag": "progs", "progs": progs}).decode() + "\n")
    report("ready")
    while not stop.is_set():
        collector.poll(100)
        if snap.is_set():
            snap.clear()
            report("snapshot")
    collector.flush()
    report("final")
    collector.close()
    return 0


def user_cost(n: int) -> int:
    """Microseconds of user-space handling per ring-buffer record (decode, path
    resolution, sensitive verdict, envelope), per record kind, without the kernel: the
    part of the collector's CPU that grows with the event rate. Runs against whichever
    tree is first on the path, so two versions compare with the same records
    (``PYTHONPATH=<tree> python tests/bench/bench_kernel_overhead.py --user-cost``)."""
    import ctypes
    import secrets
    import tempfile
    import timeit
    import uuid

    from collectors.cgroups import CgroupResolver
    from collectors.kernel import decode as dec
    from collectors.kernel.dnsmsg import build_answer, build_query
    from collectors.kernel.loader import KernelCollector
    from collectors.kernel.sandbox import pod_manifest
    from collectors.pods import Attributor, PodIndex, PodInfo

    # the records come from a known pod's container (cgroup id 1), as they do on a node
    # (the kernel passes pod cgroups only); an unknown cgroup would cost a rescan of the
    # hierarchy instead, rate-limited, which is not the per-record cost
    uid, cid = str(uuid.uuid4()), secrets.token_hex(32)
    index = PodIndex()
    index.apply("ADDED", PodInfo.from_manifest(pod_manifest(uid, "bench", "bench", cid)))
    resolver = CgroupResolver(Path(tempfile.mkdtemp(prefix="agentstory-bench-")))
    resolver.remember(1, "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
                         f"{uid.replace('-', '_')}.slice/cri-containerd-{cid}.scope")
    collector = KernelCollector("bench", Attributor(index, resolver), lambda _e: None,
                                metadata_wait_ms=0)
    pid = os.getpid()

    def header(kind: int) -> Any:
        h = dec.EventHeader()
        h.kind, h.pid, h.tid, h.ppid, h.count, h.ts = kind, pid, pid, 1, 1, 10**12
        h.cgroup_id, h.start_ns, h.comm = 1, 1, b"python3"
        return h

    def put(record: Any, name: str, data: bytes) -> None:
        ctypes.memmove(ctypes.addressof(record) + getattr(type(record), name).offset, data,
                       len(data))

    records: dict[str, list[bytes]] = {}
    for name, path in (("file.open absolute", "/etc/hosts"),
                       ("file.open relative", "src/app/config.yaml")):
        batch = []
        for i in range(512):  # distinct paths: no memo hit on every record
            r = dec.OpenRecord()
            r.h, r.ret, r.flags, r.dfd = header(dec.Kind.OPEN), 3, 0, -100
            put(r, "path", f"{path}.{i}".encode() + b"\0")
            batch.append(bytes(r))
        records[name] = batch
    c = dec.NetRecord()
    c.h, c.family, c.sotype, c.dport = header(dec.Kind.CONNECT), 2, 1, 443
    c.daddr[:4] = [10, 1, 2, 3]
    records["net.connect"] = [bytes(c)]
    d = dec.DnsRecord()
    answer = build_answer(build_query("api.example.com", 1, ident=7), ["10.1.2.3"])
    d.h, d.direction, d.len = header(dec.Kind.DNS), 1, len(answer)
    put(d, "payload", answer)
    records["net.dns answer (repeated)"] = [bytes(d)]
    distinct = []
    for i in range(512):
        ans = build_answer(build_query(f"svc{i}.example.com", 1, ident=i), ["10.1.2.3"])
        r = dec.DnsRecord()
        r.h, r.direction, r.len = header(dec.Kind.DNS), 1, len(ans)
        put(r, "payload", ans)
        distinct.append(bytes(r))
    records["net.dns answer (distinct)"] = distinct
    from collectors.kernel import dnsmsg

    parse = getattr(dnsmsg, "_parse", dnsmsg.parse_dns)  # without the memo, if any
    parse_one = min(timeit.repeat(lambda: parse(answer), number=2000, repeat=5,
                                  timer=time.process_time)) / 2000 * 1e6
    print("| record | CPU µs per record (min of 5) |\n|---|---|")
    print(f"| DNS answer parse alone, no memo | {parse_one:.1f} |")
    for name, batch in records.items():
        size = len(batch)
        best = min(timeit.repeat(lambda b=batch: [collector._handle(x) for x in b],
                                 number=max(1, n // size), repeat=5,
                                 timer=time.process_time))  # CPU: other jobs share it
        print(f"| {name} | {best / (max(1, n // size) * size) * 1e6:.1f} |")
    resolver.root.rmdir()
    return 0


class Child:
    def __init__(self, concerns: tuple[str, ...], tree: Path = REPO) -> None:
        """``tree``: the checkout whose collector runs (another version for an A/B)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.bench_kernel_overhead", "--collector-child",
             ",".join(concerns)],
            cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.progs: dict[str, int] = self._line().get("progs", {})
        ready = self._line()
        if ready.get("tag") != "ready":
            raise RuntimeError(f"collector child did not start: {ready}")

    def _line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("collector child exited")
        return dict(orjson.loads(line))

    def snapshot(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGUSR1)
        return self._line()

    def cpu_ticks(self) -> int:
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return int(fields[11]) + int(fields[12])

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        final = self._line()
        self.proc.wait(30)
        return final


# -- loopback peers -----------------------------------------------------------------------
def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError
        data += chunk
    return data


def start_peers(api_delay_s: float = 0.002) -> tuple[int, int, list[socket.socket]]:
    """A sink (reads until close), a framed request/response API peer answering after
    ``api_delay_s`` (~2 ms) with 4 KiB, and a DNS resolver on 127.0.0.1:53."""
    from collectors.kernel.dnsmsg import build_answer

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    api = socket.socket()
    api.bind(("127.0.0.1", 0))
    api.listen(128)
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 53))

    def serve_tcp() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                while conn.recv(65536):
                    pass

    def serve_api_conn(conn: socket.socket) -> None:
        reply = (4096).to_bytes(4, "big") + b"r" * 4096
        with conn:
            try:
                while True:
                    size = int.from_bytes(_recv_exact(conn, 4), "big")
                    _recv_exact(conn, size)
                    if api_delay_s:
                        time.sleep(api_delay_s)
                    conn.sendall(reply)
            except (ConnectionError, OSError):
                return

    def serve_api() -> None:
        while True:
            try:
                conn, _ = api.accept()
            except OSError:
                return
            threading.Thread(target=serve_api_conn, args=(conn,), daemon=True).start()

    def serve_dns() -> None:
        while True:
            try:
                query, addr = dns.recvfrom(512)
            except OSError:
                return
            dns.sendto(build_answer(query, ["127.0.0.1"]), addr)

    for target in (serve_tcp, serve_api, serve_dns):
        threading.Thread(target=target, daemon=True).start()
    return srv.getsockname()[1], api.getsockname()[1], [srv, api, dns]


def _parse(stdout: str) -> tuple[float, float]:
    wall, cpu = stdout.split()[-2:]
    return float(wall), float(cpu)


def run_in_pod(pod: Any, code: str, *args: object) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the workload and its children)."""
    out = pod.run([sys.executable, "-c", f"CPU_S = {CPU_S!r}\n{code}", *map(str, args)],
                  capture_output=True, text=True, cwd=REPO)
    return _parse(out.stdout)


def run_on_host(code: str, *args: object) -> tuple[float, float]:
    """The same, as a host process (the collector filters it out in the kernel)."""
    out = subprocess.run([sys.executable, "-c", f"CPU_S = {CPU_S!r}\n{code}",
                          *map(str, args)], capture_output=True, text=True, cwd=REPO,
                         check=True)
    return _parse(out.stdout)


def _spread(values: list[float]) -> str:
    """Noise between repetitions: (max - min) / median, in percent."""
    if len(values) < 2:
        return "n/a"
    med = statistics.median(values)
    return f"±{(max(values) - min(values)) / med * 50:.1f}%" if med else "n/a"


def _paired(on: list[float], off: list[float]) -> list[float]:
    """Per-repetition overhead (each repetition runs every mode back to back)."""
    return [(a - b) / b * 100 for a, b in zip(on, off, strict=True) if b]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collector-child", metavar="CONCERNS", help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--user-cost", type=int, metavar="N", default=0,
                        help="only measure user-space handling per record (N records)")
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 repetitions")
    parser.add_argument("--only", default="",
                        help="';'-separated workload name prefixes to run (default all; "
                             "names contain commas)")
    args = parser.parse_args(argv)
    if args.collector_child:
        return collector_child(tuple(args.collector_child.split(",")))
    if args.user_cost:
        return user_cost(args.user_cost)
    if os.geteuid() != 0:
        print("bench_kernel_overhead: needs root (loads eBPF programs)", file=sys.stderr)
        return 2
    from collectors.kernel.loader import ALL_CONCERNS
    from collectors.kernel.sandbox import FakePod

    configs = {"on": ALL_CONCERNS,
               "noprof": tuple(c for c in ALL_CONCERNS if c != "syscalls")}

    reps = 2 if args.quick else args.reps
    scale = 10 if args.quick else 1
    port, api_port, peers = start_peers()
    pod = FakePod("bench-agent", "bench").create()
    # name → (code, size, unit, in pod?, extra args)
    all_workloads: dict[str, tuple[str, int, str, bool, tuple[object, ...]]] = {
        "realistic agent mix": (REAL_MIX, 3000 // scale, "iterations", True, (api_port,)),
        "syscall-dense agent mix": (AGENT_MIX, 400 // scale, "iterations", True, (port,)),
        "open/close storm, same path": (STORM_SAME, 200_000 // scale, "opens", True, ()),
        "open/close storm, distinct paths": (STORM_DISTINCT, 200_000 // scale, "opens",
                                             True, ()),
        "host storm (not a pod)": (STORM_SAME, 200_000 // scale, "opens", False, ()),
    }
    only = [o.strip() for o in args.only.split(";") if o.strip()]
    workloads = {w: spec for w, spec in all_workloads.items()
                 if not only or any(w.startswith(o) for o in only)}

    def run(spec: tuple[str, int, str, bool, tuple[object, ...]], n: int) -> tuple[float, float]:
        code, _, _, in_pod, extra = spec
        return run_in_pod(pod, code, n, *extra) if in_pod else run_on_host(code, n, *extra)

    modes = ("off", "on", "noprof")
    times: dict[str, dict[str, list[float]]] = {w: {m: [] for m in modes} for w in workloads}
    cpus: dict[str, dict[str, list[float]]] = {w: {m: [] for m in modes} for w in workloads}
    handled: dict[str, list[float]] = {w: [] for w in workloads}
    observed: dict[str, list[float]] = {w: [] for w in workloads}
    lost: dict[str, int] = {w: 0 for w in workloads}
    cpu_load: list[float] = []
    rss_load: list[int] = []
    idle_cpu: list[float] = []
    idle_rss: list[int] = []
    clk = os.sysconf("SC_CLK_TCK")
    started = time.monotonic()
    try:
        for spec in workloads.values():  # warm-up (page cache, pyc), not timed
            run(spec, max(1, spec[1] // 20))
        for rep in range(reps):
            order = modes[rep % 3:] + modes[: rep % 3]  # rotate: no mode always first
            for mode in order:
                child = Child(configs[mode]) if mode != "off" else None
                try:
                    if child is not None and mode == "on":
                        ticks, t0 = child.cpu_ticks(), time.monotonic()
                        time.sleep(1.0)
                        idle_cpu.append((child.cpu_ticks() - ticks) / clk
                                        / (time.monotonic() - t0))
                        idle_rss.append(child.rss_kib())
                    for w, spec in workloads.items():
                        before = child.snapshot() if child is not None else None
                        ticks, t0 = (child.cpu_ticks() if child else 0), time.monotonic()
                        elapsed, cpu = run(spec, spec[1])
                        times[w][mode].append(elapsed)
                        cpus[w][mode].append(cpu)
                        if mode == "on" and child is not None and before is not None:
                            time.sleep(0.3)  # let it drain
                            after = child.snapshot()
                            wall = time.monotonic() - t0
                            cpu_load.append((child.cpu_ticks() - ticks) / clk / wall)
                            rss_load.append(child.rss_kib())
                            seen = ((after["emitted"] + after["deduplicated"])
                                    - (before["emitted"] + before["deduplicated"]))
                            handled[w].append(seen / elapsed)
                            observed[w].append((seen + after["lost"] - before["lost"])
                                               / elapsed)
                            lost[w] += after["lost"] - before["lost"]
                finally:
                    if child is not None:
                        child.stop()
    finally:
        pod.remove()
        for sock in peers:
            sock.close()

    print("### Kernel collector overhead (bcc tracepoints)\n")
    print(f"`{COMMAND}{' --quick' if args.quick else ''}` — {reps} repetitions, "
          f"rotating without / with all concerns / with all but syscall.profile, medians; "
          f"{os.cpu_count()} cores, "
          f"kernel {os.uname().release}; {time.monotonic() - started:.0f} s in all.\n")
    print("Overhead is on the workload's CPU time (user+sys, children included): wall "
          "time on a shared machine moves with other jobs. *noise* is half the spread "
          "(max - min) of the repetitions around their median for the run without the "
          "collector; *per-rep* is the range of the overhead computed within each "
          "repetition (modes run back to back).\n")
    print("| workload | size | CPU without (s), noise | CPU with all (s) | overhead, all "
          "(per-rep range) | overhead, CLI default: all but syscall.profile (per-rep range) "
          "| wall without (s) | wall with (s) | events/s observed "
          "| events/s handled (delivered or folded) | lost |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    overheads = {}
    for w, spec in workloads.items():
        c = cpus[w]
        off, on = statistics.median(c["off"]), statistics.median(c["on"])
        overheads[w] = (on - off) / off * 100
        noprof = (statistics.median(c["noprof"]) - off) / off * 100
        p_on, p_np = _paired(c["on"], c["off"]), _paired(c["noprof"], c["off"])
        woff, won = statistics.median(times[w]["off"]), statistics.median(times[w]["on"])
        rate = statistics.median(handled[w]) if handled[w] else 0.0
        seen = statistics.median(observed[w]) if observed[w] else 0.0
        print(f"| {w} | {spec[1]} {spec[2]} | {off:.3f} {_spread(c['off'])} | {on:.3f} "
              f"| {overheads[w]:+.1f}% ({min(p_on):+.1f}..{max(p_on):+.1f}) "
              f"| {noprof:+.1f}% ({min(p_np):+.1f}..{max(p_np):+.1f}) "
              f"| {woff:.3f} | {won:.3f} | {seen:,.0f} | {rate:,.0f} | {lost[w]} |")
    print()
    print(f"Collector process: idle CPU {statistics.median(idle_cpu) * 100:.1f}% of a core, "
          f"RSS {statistics.median(idle_rss) / 1024:.0f} MiB; under load CPU "
          f"{statistics.median(cpu_load) * 100:.1f}% of a core (median over workloads), "
          f"RSS {max(rss_load) / 1024:.0f} MiB (max).\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
