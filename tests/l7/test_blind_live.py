"""Blind spots, live: a real Bun (BoringSSL linked in, stripped, no SSL_write export) and
a real uv (rustls) run in a kubelet-shaped pod cgroup and make HTTPS requests to a local
server. Neither can be probed: the collector must say so (``collector.blind_spot`` on the
pod, and in its stats) while the server saw the requests and no L7 event claims them.

A real grpcio client (its extension carries BoringSSL) is the third case.

Needs root, bcc, and the binaries: ``bun`` from the npm package
``@oven/bun-linux-x64-baseline`` and ``uv`` from PyPI, found on PATH or through
AGENTSTORY_TEST_BUN / AGENTSTORY_TEST_UV; each case is skipped when its binary is absent.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import os
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collectors.cgroups import CgroupResolver
from collectors.kernel.sandbox import FakePod
from collectors.l7.capture import Capture
from collectors.l7.elfsyms import defines_symbol
from collectors.l7.libssl import PodProcesses
from streams.events import Envelope, Pod

from .test_capture_live import _bcc_ready, wait_for
from .tls_fixture import reap

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]
if (_reason := _bcc_ready()) is not None:
    pytestmark.append(pytest.mark.skip(reason=_reason))


def _binary(env: str, name: str) -> str | None:
    """``$env``, else ``name`` on PATH, else beside this interpreter (a venv's bin)."""
    beside = Path(sys.executable).parent / name
    path = os.environ.get(env) or shutil.which(name) or (str(beside) if beside.exists()
                                                          else None)
    return path if path and os.access(path, os.X_OK) else None


BUN = _binary("AGENTSTORY_TEST_BUN", "bun")
UV = _binary("AGENTSTORY_TEST_UV", "uv")

BUN_AGENT = r"""
const url = process.argv[2];
console.log("ready");
for await (const line of console) { break; }
const r = await fetch(url + "/v1/chat/completions", {method: "POST",
  headers: {"Content-Type": "application/json", "Authorization": "Bearer sk-bun-blind"},
  body: JSON.stringify({model: "gpt-bun-blind", messages: [{role: "user", content: "hi"}]})});
await r.text();
console.log("done " + r.status);
"""


def make_ca_and_leaf(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf for 127.0.0.1 it signed (rustls refuses a CA as end entity)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentstory test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "leaf.pem", folder / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return paths


class HeldServer:
    """HTTPS on 127.0.0.1 that records each request and answers only once released
    (so a short-lived client is still running when the collector rescans)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.seen: list[tuple[str, str]] = []
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length", 0) or 0)
                if length:
                    self.rfile.read(length)
                outer.seen.append((self.command, self.path))
                outer.release.wait(30)
                self.send_response(200 if self.command == "POST" else 404)
                body = b'{"id": "x", "object": "chat.completion", "choices": []}'
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def held(tmp_path: Path) -> Iterator[tuple[HeldServer, Path]]:
    ca, cert, key = make_ca_and_leaf(tmp_path)
    server = HeldServer(cert, key)
    try:
        yield server, ca
    finally:
        server.close()


def _run_blind(pod_cgroup: FakePod, argv: list[str], env: dict[str, str],
               requested: Callable[[], bool], release: Callable[[], None] = lambda: None,
               ) -> tuple[subprocess.Popen[str], list[Envelope], dict[str, object]]:
    """Start ``argv`` in the pod, let it go, wait for the collector to report it and the
    server to see the request (``requested``), then let the server answer."""
    from collectors.l7.loader import SslProbes, TlsCollector
    from collectors.l7.parser import L7Parser

    pod = Pod(uid=pod_cgroup.uid)
    emitted: list[Envelope] = []

    def emit(envelope: Envelope) -> None:  # other pods on this shared machine: not ours
        if envelope.pod == pod:
            emitted.append(envelope)

    capture = Capture(L7Parser(), node="test-node", emit=emit,
                      attribute=lambda cgid: pod if cgid == pod_cgroup.cgroup_id else None)
    probes = SslProbes()
    collector = TlsCollector(probes, capture, PodProcesses(CgroupResolver(pod_cgroup.root)),
                             rescan_s=0.1)
    procs = pod_cgroup.path / "cgroup.procs"
    proc = subprocess.Popen(["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    try:
        collector.start()
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        wait_for(lambda: any(e.kind == "collector.blind_spot" for e in emitted),
                 lambda: f"a blind spot reported: {collector.snapshot()}")
        wait_for(requested, "the request at the server")
        release()
        proc.communicate(timeout=60)
        collector.drain()
    finally:
        collector.stop()
        snapshot = collector.snapshot()
        probes.close()
        reap(proc)
    return proc, emitted, snapshot


@pytest.mark.skipif(BUN is None, reason="no bun binary (npm @oven/bun-linux-x64-baseline)")
def test_bun_boringssl_is_reported_as_a_blind_spot_on_its_pod(
    held: tuple[HeldServer, Path], pod_cgroup: FakePod, tmp_path: Path,
) -> None:
    assert BUN is not None
    assert not defines_symbol(BUN)  # the premise: nothing exported to attach to
    server, ca = held
    script = tmp_path / "agent.js"
    script.write_text(BUN_AGENT)
    proc, emitted, snapshot = _run_blind(pod_cgroup, [BUN, str(script), server.url],
                                         {"NODE_EXTRA_CA_CERTS": str(ca)},
                                         lambda: bool(server.seen), server.release.set)
    assert server.seen == [("POST", "/v1/chat/completions")]  # Bun really sent it
    spots = [e for e in emitted if e.kind == "collector.blind_spot"]
    assert len(spots) == 1 and spots[0].pod == Pod(uid=pod_cgroup.uid)
    assert spots[0].proc is not None and spots[0].proc.pid == proc.pid
    assert spots[0].data["tls"] == ["boringssl"]
    assert spots[0].data["path"] == os.path.realpath(BUN)
    # and what it sent is not claimed by any L7 event
    assert [e.kind for e in emitted] == ["collector.blind_spot"]
    # in the stats too (its pid list empties once the process has exited)
    assert any(b["path"] == os.path.realpath(BUN) and b["tls"] == ["boringssl"]
               for b in snapshot["blind_spots"])  # type: ignore[attr-defined]


@pytest.mark.skipif(UV is None, reason="no uv binary (PyPI uv)")
def test_uv_rustls_is_reported_as_a_blind_spot_on_its_pod(
    held: tuple[HeldServer, Path], pod_cgroup: FakePod,
) -> None:
    assert UV is not None
    assert not defines_symbol(UV)
    server, ca = held
    argv = [UV, "pip", "install", "--dry-run", "--no-cache", "--index-url",
            f"{server.url}/simple/", "--python", sys.executable, "agentstory-no-such-pkg"]
    proc, emitted, snapshot = _run_blind(pod_cgroup, argv, {"SSL_CERT_FILE": str(ca)},
                                         lambda: bool(server.seen), server.release.set)
    assert server.seen and server.seen[0] == ("GET", "/simple/agentstory-no-such-pkg/")
    spots = [e for e in emitted if e.kind == "collector.blind_spot"]
    assert [s.data["tls"] for s in spots] == [["rustls"]]
    assert spots[0].data["path"] == os.path.realpath(UV)
    assert spots[0].proc is not None and spots[0].proc.pid == proc.pid
    assert [e.kind for e in emitted] == ["collector.blind_spot"]
    assert any(b["path"] == os.path.realpath(UV) and b["tls"] == ["rustls"]
               for b in snapshot["blind_spots"])  # type: ignore[attr-defined]


GRPC_CLIENT = r"""
import sys
import grpc  # maps grpc's own BoringSSL (cygrpc), never libssl's SSL_write
target, ca = sys.argv[1], open(sys.argv[2], "rb").read()
channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca))
call = channel.unary_unary("/crm.v1.Customers/Get")
print("ready", flush=True)
sys.stdin.readline()
print("done", call(b"\x0a\x07cust-42", timeout=20).decode(), flush=True)
"""


def test_grpcio_boringssl_is_reported_as_a_blind_spot_on_its_pod(
    pod_cgroup: FakePod, tmp_path: Path,
) -> None:
    """A real gRPC call over TLS from Python's grpcio (BoringSSL inside its extension):
    the server answers, the collector names the extension as a blind spot and emits no
    L7 event for the call."""
    grpc = pytest.importorskip("grpc")
    from concurrent.futures import ThreadPoolExecutor

    ca, cert, key = make_ca_and_leaf(tmp_path)
    seen: list[bytes] = []
    answer = threading.Event()  # held until the collector has looked at the client

    def get(request: bytes, _context: object) -> bytes:
        seen.append(request)
        answer.wait(30)
        return b"Ada Lovelace"

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "crm.v1.Customers", {"Get": grpc.unary_unary_rpc_method_handler(get)}),))
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())]))
    server.start()
    try:
        proc, emitted, snapshot = _run_blind(
            pod_cgroup, [sys.executable, "-c", GRPC_CLIENT, f"127.0.0.1:{port}", str(ca)],
            {}, lambda: bool(seen), answer.set)
    finally:
        server.stop(0)
    assert seen == [b"\x0a\x07cust-42"]
    assert proc.returncode == 0  # the client got its answer
    spots = [e for e in emitted if e.kind == "collector.blind_spot"]
    assert [(Path(s.data["path"]).name.startswith("cygrpc"), s.data["tls"]) for s in spots] \
        == [(True, ["boringssl"])]
    assert spots[0].proc is not None and spots[0].proc.pid == proc.pid
    assert not [e for e in emitted if e.kind != "collector.blind_spot"]
    assert any(b["tls"] == ["boringssl"] for b in snapshot["blind_spots"])  # type: ignore[attr-defined]
