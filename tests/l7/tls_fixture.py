"""A local HTTPS "LLM provider" + MCP server and a scripted agent, for capture tests and
the overhead benchmark.

The server speaks the OpenAI chat-completions wire format (a non-streamed response with
a tool call, and a streamed one whose tool-call arguments arrive as SSE deltas) and MCP's
JSON-RPC over HTTP (initialize, tools/list, tools/call). The agent is a separate Python
process (so that a test can put it in a pod cgroup) using only the standard library over
TLS, with an ``Authorization: Bearer sk-test-…`` header that must never be published.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.kernel.sandbox import FakePod
from collectors.kernel.sandbox import pod_manifest as sandbox_manifest

__all__ = [
    "AGENT",
    "TlsServer",
    "finish_agent",
    "kube_cgroup",
    "make_cert",
    "pod_manifest",
    "reap",
    "start_agent",
]

TOOL_PLAIN = "get_weather"  # the non-streamed response's tool call
TOOL_STREAMED = "search_tickets"  # the streamed response's tool call
MCP_TOOL = "lookup_customer"


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cryptography, or the openssl CLI)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(private.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert, key


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test1", "object": "chat.completion", "created": 1763700000,
        "model": model,
        "choices": [{
            "index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_plain1", "type": "function",
                "function": {"name": TOOL_PLAIN, "arguments": "{\"city\": \"Paris\"}"},
            }]},
        }],
        "usage": {"prompt_tokens": 42, "completion_tokens": 9, "total_tokens": 51},
    }


def _stream_events(model: str) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-test2", "object": "chat.completion.chunk",
            "created": 1763700001, "model": model}
    pieces = ["{\"que", "ry\": \"refund", " status\", \"lim", "it\": 3}"]
    events = [{**base, "choices": [{"index": 0, "finish_reason": None, "delta": {
        "role": "assistant", "content": None, "tool_calls": [{
            "index": 0, "id": "call_stream1", "type": "function",
            "function": {"name": TOOL_STREAMED, "arguments": ""}}]}}]}]
    events += [{**base, "choices": [{"index": 0, "finish_reason": None, "delta": {
        "tool_calls": [{"index": 0, "function": {"arguments": p}}]}}]} for p in pieces]
    events.append({**base, "choices": [{"index": 0, "delta": {},
                                        "finish_reason": "tool_calls"}]})
    return events


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, doc: Any, status: int = 200) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.path, dict(self.headers), body))
        if self.path == "/v1/chat/completions":
            req = json.loads(body)
            if req.get("stream"):
                self._stream(req.get("model", "gpt-test"))
            else:
                self._json(_completion(req.get("model", "gpt-test")))
        elif self.path == "/mcp":
            self._mcp(json.loads(body))
        elif self.path == "/echo":
            self._echo(body)
        else:
            self._json({"error": "not found"}, 404)

    def _stream(self, model: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in [*(json.dumps(e) for e in _stream_events(model)), "[DONE]"]:
            data = f"data: {event}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _mcp(self, req: dict[str, Any]) -> None:
        method, rid = req.get("method"), req.get("id")
        if method == "initialize":
            result: dict[str, Any] = {
                "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                "serverInfo": {"name": "test-mcp", "version": "1.0"}}
        elif method == "tools/list":
            result = {"tools": [{"name": MCP_TOOL, "description": "Find a customer",
                                 "inputSchema": {"type": "object", "properties": {
                                     "email": {"type": "string"}}}}]}
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": "customer 4711: Jane Doe"}],
                      "isError": False}
        else:
            self._json({"jsonrpc": "2.0", "id": rid,
                        "error": {"code": -32601, "message": "no such method"}})
            return
        self._json({"jsonrpc": "2.0", "id": rid, "result": result})

    def _echo(self, body: bytes) -> None:
        size = int(self.headers.get("X-Reply-Size", "2"))
        reply = b"{}" if size <= 2 else b"x" * size
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    seen: list[tuple[str, dict[str, str], bytes]]


@dataclass
class TlsServer:
    """The HTTPS server on 127.0.0.1 (an ephemeral port), served from a thread; plain
    HTTP when ``cert`` is None."""

    cert: Path | None
    key: Path | None
    server: _Server = field(init=False)

    def __post_init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.seen = []
        if self.cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.cert, self.key)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        scheme = "https" if self.cert is not None else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    @property
    def seen(self) -> list[tuple[str, dict[str, str], bytes]]:
        return self.server.seen

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# The agent: waits for "go" on stdin (so that a test can place it in a cgroup and wait
# for the collector first), then calls the LLM twice over one keep-alive connection
# (plain, then streamed) and the MCP server three times (one connection each, urllib).
AGENT = r'''
import http.client, json, ssl, sys, urllib.request
base, cafile, key, model = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=cafile)
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(3)
host, port = base.split("://")[1].split(":")
conn = http.client.HTTPSConnection(host, int(port), context=ctx)
headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json",
           "User-Agent": "OpenAI/Python 1.54.0"}
tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]
req = {"model": model, "messages": [
    {"role": "system", "content": "You are a support agent."},
    {"role": "user", "content": "What is the weather in Paris?"}], "tools": tools}
conn.request("POST", "/v1/chat/completions", body=json.dumps(req), headers=headers)
reply = json.loads(conn.getresponse().read())
assert reply["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
req["stream"] = True
req["messages"].append({"role": "user", "content": "Find my refund ticket."})
conn.request("POST", "/v1/chat/completions", body=json.dumps(req), headers=headers)
resp = conn.getresponse()
lines = [l for l in resp.read().decode().splitlines() if l.startswith("data: ")]
assert lines[-1] == "data: [DONE]", lines[-1]
conn.close()
for rid, method, params in [
        (1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "agent", "version": "1"}}),
        (2, "tools/list", {}),
        (3, "tools/call", {"name": "lookup_customer",
                           "arguments": {"email": "jane@example.com"}})]:
    body = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
    r = urllib.request.Request(base + "/mcp", data=body.encode(), headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
        "Authorization": "Bearer " + key})
    with urllib.request.urlopen(r, context=ctx) as fh:
        assert json.loads(fh.read())["id"] == rid
print("done", flush=True)
'''


# Plain HTTP: one MCP tools/call to argv[1] (a JSON-RPC endpoint), after "go".
MCP_CLIENT = r'''
import json, sys, urllib.request
print("ready", flush=True)
sys.stdin.readline()
body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": "lookup_customer", "arguments": {"email": "a@b.c"}}})
req = urllib.request.Request(sys.argv[1], data=body.encode(), headers={
    "Content-Type": "application/json", "Authorization": "Bearer " + sys.argv[2]})
with urllib.request.urlopen(req) as fh:
    assert json.loads(fh.read())["id"] == 7
print("done", flush=True)
'''

# Plain HTTP MCP server (the fixture's handler) in its own process; prints its URL.
MCP_SERVER = r'''
import sys
from tests.l7.tls_fixture import TlsServer
server = TlsServer(None, None)
print(server.url, flush=True)
sys.stdin.readline()
'''


def start_agent(url: str, cafile: Path, api_key: str, model: str) -> subprocess.Popen[str]:
    """Start the agent; it imports ssl (maps libssl), prints ``ready`` and waits for
    ``go``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", AGENT, url, str(cafile), api_key, model],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"agent did not start: {line!r} {err}")
    return proc


def reap(proc: subprocess.Popen[str]) -> None:
    """Kill (if still running) and wait for a helper process, and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with suppress(OSError):
                pipe.close()


def finish_agent(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """Send ``go``, wait for the agent to exit, return its stdout (raises if it failed)."""
    out, err = proc.communicate("go\n", timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"agent failed ({proc.returncode}): {err}")
    return out


def pod_manifest(uid: str, name: str, container_id: str, node: str) -> dict[str, Any]:
    """A Pod owned by a Deployment's ReplicaSet, for the file pod source."""
    return sandbox_manifest(uid, name, "support", container_id, node=node, container="bot",
                            service_account="support-bot",
                            owner=("ReplicaSet", "support-bot-7d9f8c"),
                            labels={"pod-template-hash": "7d9f8c"})


@contextmanager
def kube_cgroup(root: Path) -> Iterator[FakePod]:
    """A kubelet-shaped pod cgroup (systemd driver, containerd), removed afterwards."""
    with FakePod("support-bot", "support", root=root) as pod:
        yield pod
