"""Real capture: uprobes on this machine's libssl, a Python agent in a kubelet-shaped
cgroup calling a local HTTPS LLM provider and MCP server, and a host process doing the
same calls that must not be captured.

These tests need root and bcc; they are skipped elsewhere. They check the capture half
at the chunk level (a recording parser), so they do not depend on the protocol parsers.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from collectors.cgroups import CgroupResolver, find_cgroup2_mount
from collectors.kernel.sandbox import FakePod
from collectors.l7.capture import Capture
from collectors.l7.libssl import PodProcesses
from streams.events import Envelope, Pod

from .tls_fixture import (
    MCP_TOOL,
    TOOL_STREAMED,
    TlsServer,
    finish_agent,
    make_cert,
    reap,
    start_agent,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]


def _bcc_ready() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "bcc is not importable"
    try:
        find_cgroup2_mount()
    except FileNotFoundError:
        return "no cgroup v2 mount"
    return None


if (_reason := _bcc_ready()) is not None:
    pytestmark.append(pytest.mark.skip(reason=_reason))


@dataclass
class _Seen:
    conn: Hashable
    direction: str
    data: bytes
    ts: int


@dataclass(frozen=True, slots=True)
class _Event:
    kind: str
    ts: int
    data: dict[str, Any]


@dataclass
class RecordingParser:
    """Stands in for L7Parser: remembers every chunk, emits one event per chunk."""

    seen: list[_Seen] = field(default_factory=list)
    closed: list[Hashable] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: {"parse_errors": 0})

    def feed(self, conn: Hashable, direction: str, data: bytes, ts_ns: int) -> list[_Event]:
        self.seen.append(_Seen(conn, direction, data, ts_ns))
        return [_Event("http.request", ts_ns, {"bytes": len(data), "direction": direction})]

    def close(self, conn: Hashable) -> list[_Event]:
        self.closed.append(conn)
        return []

    def stream(self, pid: int, direction: str) -> bytes:
        return b"".join(s.data for s in self.seen
                        if s.conn[0] == pid and s.direction == direction)  # type: ignore[index]


def wait_for(check: Callable[[], bool], what: Any, timeout: float = 30.0) -> None:
    """Poll until ``check()``: the kernel and the rescan loop are asynchronous."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(0.05)


@pytest.fixture()
def tls_server(tmp_path: Path) -> Iterator[tuple[TlsServer, Path]]:
    cert, key = make_cert(tmp_path)
    server = TlsServer(cert, key)
    try:
        yield server, cert
    finally:
        server.close()


def test_pod_agent_is_captured_and_host_process_is_not(
    tls_server: tuple[TlsServer, Path], pod_cgroup: FakePod,
) -> None:
    from collectors.l7.loader import SslProbes, TlsCollector

    server, cafile = tls_server
    key = f"sk-test-{uuid.uuid4().hex}"
    pod_agent = start_agent(server.url, cafile, key, "gpt-pod")
    host_agent = start_agent(server.url, cafile, key, "gpt-host")
    pod_cgroup.add(pod_agent.pid)
    parser = RecordingParser()
    emitted: list[Envelope] = []
    pod = Pod(uid=pod_cgroup.uid)
    capture = Capture(parser, node="test-node", emit=emitted.append,
                      attribute=lambda cgid: pod if cgid == pod_cgroup.cgroup_id else None)
    probes = SslProbes(max_capture=64 * 1024)
    collector = TlsCollector(probes, capture, PodProcesses(CgroupResolver(pod_cgroup.root)),
                             rescan_s=0.1)
    try:
        collector.start()
        wait_for(lambda: pod_cgroup.cgroup_id in probes.watched and bool(probes.libraries),
                 "the collector to watch the pod cgroup and probe its libssl")
        finish_agent(pod_agent)
        finish_agent(host_agent)
        wait_for(lambda: b"[DONE]" in parser.stream(pod_agent.pid, "ingress")
                 and MCP_TOOL.encode() in parser.stream(pod_agent.pid, "ingress")
                 and len(parser.closed) >= 4,
                 lambda: f"the pod agent's traffic and SSL_free: {collector.snapshot()}")
    finally:
        collector.stop()
        kernel = probes.counters()
        probes.close()
        for proc in (pod_agent, host_agent):
            reap(proc)

    egress = parser.stream(pod_agent.pid, "egress")
    ingress = parser.stream(pod_agent.pid, "ingress")
    # The plaintext of what the agent wrote and read, in order, on every connection.
    assert egress.count(b"POST /v1/chat/completions HTTP/1.1\r\n") == 2
    assert egress.count(b"POST /mcp HTTP/1.1\r\n") == 3
    assert f"Bearer {key}".encode() in egress  # captured raw; the parser must redact it
    assert b'"gpt-pod"' in egress and b'"tools/call"' in egress
    assert ingress.count(b"HTTP/1.1 200 OK\r\n") == 5 or ingress.count(b"HTTP/1.0 200 OK") == 5
    assert TOOL_STREAMED.encode() in ingress and b"transfer-encoding: chunked" in ingress.lower()
    # The host process used the same library, inode and server: not one byte of it.
    assert not [s for s in parser.seen if s.conn[0] == host_agent.pid]  # type: ignore[index]
    assert {s.conn[0] for s in parser.seen} == {pod_agent.pid}  # type: ignore[index]
    # Four TLS connections (one keep-alive for both chat calls, one per MCP call), each
    # ended by SSL_free; malloc reuses the SSL*, the connection id still tells them apart.
    pod_closes = [c for c in parser.closed if c[0] == pod_agent.pid]  # type: ignore[index]
    assert len(pod_closes) == 4, pod_closes
    assert len({e.data["conn"]["id"] for e in emitted}) == 4
    port = int(server.url.rsplit(":", 1)[1])
    assert emitted and all(e.pod == pod and e.source == "l7" for e in emitted)
    assert all(e.proc is not None and e.proc.pid == pod_agent.pid for e in emitted)
    # The peer comes from the kernel (connect), so even the short MCP connections,
    # gone before user space looks, carry it.
    assert all(e.data["conn"]["dport"] == port and e.data["conn"]["daddr"] == "127.0.0.1"
               and e.data["conn"]["fd"] >= 0 for e in emitted), emitted[0].data
    # Event time is epoch nanoseconds, not boot time.
    assert abs(emitted[0].ts - time.time_ns()) < 3600 * 10**9
    assert kernel["lost"] == 0 and kernel["truncated"] == 0 and kernel["read_failures"] == 0
    assert kernel["chunks"] == len(parser.seen)


# A request body far above --max-capture, then a small request on the same keep-alive
# connection: the truncated tail is counted, and the next request still parses.
BIG_THEN_SMALL = r'''
import http.client, json, ssl, sys
base, cafile = sys.argv[1:3]
ctx = ssl.create_default_context(cafile=cafile)
print("ready", flush=True)
sys.stdin.readline()
host, port = base.split("://")[1].split(":")
conn = http.client.HTTPSConnection(host, int(port), context=ctx)
for model, size in (("gpt-big", 300_000), ("gpt-after-gap", 10)):
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "x" * size}]})
    conn.request("POST", "/v1/chat/completions", body=body,
                 headers={"Content-Type": "application/json", "Authorization": "Bearer k"})
    conn.getresponse().read()
print("done", flush=True)
'''


def test_truncated_call_is_counted_and_the_connection_stays_in_step(
    tls_server: tuple[TlsServer, Path], pod_cgroup: FakePod,
) -> None:
    import subprocess
    import sys

    from collectors.l7.loader import SslProbes, TlsCollector
    from collectors.l7.parser import L7Parser

    server, cafile = tls_server
    emitted: list[Envelope] = []
    capture = Capture(L7Parser(), node="test-node", emit=emitted.append,
                      attribute=lambda _cg: None, max_capture=16 * 1024)
    probes = SslProbes(max_capture=16 * 1024)
    collector = TlsCollector(probes, capture, PodProcesses(CgroupResolver(pod_cgroup.root)),
                             rescan_s=0.1)
    agent = subprocess.Popen([sys.executable, "-c", BIG_THEN_SMALL, server.url, str(cafile)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert agent.stdout is not None and agent.stdout.readline().strip() == "ready"
        pod_cgroup.add(agent.pid)
        collector.start()
        wait_for(lambda: pod_cgroup.cgroup_id in probes.watched and bool(probes.libraries),
                 "the pod cgroup and its libssl")
        out, _ = agent.communicate("go\n", timeout=60)
        assert out.strip() == "done"
        # The answer to the second request is read after it: wait for both responses too.
        wait_for(lambda: any(b"gpt-after-gap" in e.to_json() for e in emitted
                             if e.kind == "llm.request")
                 and sum(e.kind == "http.response" for e in emitted) >= 2,
                 lambda: f"the request after the gap and both answers: {collector.snapshot()}")
    finally:
        collector.stop()
        kernel = probes.counters()
        probes.close()
        reap(agent)
    assert kernel["truncated"] >= 1 and kernel["lost"] == 0
    assert capture.stats["truncated_calls"] >= 1
    assert capture.stats["gap_bytes"] >= 300_000 - 16 * 1024
    assert [e.data.get("status") for e in emitted if e.kind == "http.response"] == [200, 200]


def test_plaintext_http_on_pod_sockets_both_as_client_and_as_server(
    pod_cgroup: FakePod,
) -> None:
    """Unencrypted MCP over HTTP: a pod client calling a host server (connect side), and
    a host client calling a server inside the pod (accept side)."""
    import subprocess
    import sys

    from collectors.l7.loader import SslProbes, TlsCollector
    from collectors.l7.parser import L7Parser

    from .tls_fixture import MCP_CLIENT, MCP_SERVER

    host_server = TlsServer(None, None)
    root = Path(__file__).resolve().parents[2]
    pod_server = subprocess.Popen([sys.executable, "-c", MCP_SERVER], cwd=root,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    key = f"sk-test-{uuid.uuid4().hex}"
    emitted: list[Envelope] = []
    capture = Capture(L7Parser(), node="test-node", emit=emitted.append,
                      attribute=lambda _cg: None)
    probes = SslProbes()
    collector = TlsCollector(probes, capture, PodProcesses(CgroupResolver(pod_cgroup.root)),
                             rescan_s=0.1)
    procs = [pod_server]
    try:
        assert pod_server.stdout is not None
        pod_server_url = pod_server.stdout.readline().strip()
        pod_cgroup.add(pod_server.pid)
        pod_client = subprocess.Popen(
            [sys.executable, "-c", MCP_CLIENT, host_server.url + "/mcp", key],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        host_client = subprocess.Popen(
            [sys.executable, "-c", MCP_CLIENT, pod_server_url + "/mcp", key],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs += [pod_client, host_client]
        for proc in (pod_client, host_client):
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        pod_cgroup.add(pod_client.pid)
        collector.start()
        wait_for(lambda: pod_cgroup.cgroup_id in probes.watched, "the pod cgroup")
        for proc in (pod_client, host_client):
            out, _ = proc.communicate("go\n", timeout=60)
            assert out.strip() == "done"
        wait_for(lambda: {e.proc.pid for e in emitted if e.kind == "mcp.call" and e.proc}
                 >= {pod_client.pid, pod_server.pid},
                 lambda: f"mcp.call from both pod processes: {collector.snapshot()}")
    finally:
        collector.stop()
        probes.close()
        host_server.close()
        for proc in procs:
            reap(proc)
    calls = [e for e in emitted if e.kind == "mcp.call"]
    assert {e.proc.pid for e in calls if e.proc} == {pod_client.pid, pod_server.pid}
    assert all(e.data["conn"]["tls"] is False for e in emitted)
    client_call = next(e for e in calls if e.proc and e.proc.pid == pod_client.pid)
    assert client_call.data["conn"]["dport"] == int(host_server.url.rsplit(":", 1)[1])
    assert MCP_TOOL.encode() in client_call.to_json()
    assert not any(key.encode() in e.to_json() for e in emitted)
    assert {"mcp.result"} <= {e.kind for e in emitted}


# asyncio's TLS (what async OpenAI/httpx clients use) runs OpenSSL over memory BIOs: no
# SSL_set_fd, so connections are known by their SSL* only.
ASYNC_AGENT = r'''
import asyncio, json, ssl, sys
async def main(url, cafile):
    host, port = url.split("://")[1].split(":")
    ctx = ssl.create_default_context(cafile=cafile)
    reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
    body = json.dumps({"model": "gpt-async", "messages": [{"role": "user",
                       "content": "hello from asyncio"}]}).encode()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: " + host.encode()
                 + b"\r\nContent-Type: application/json\r\nAuthorization: Bearer k\r\n"
                 + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    writer.close()
    await writer.wait_closed()
print("ready", flush=True)
sys.stdin.readline()
asyncio.run(main(*sys.argv[1:3]))
print("done", flush=True)
'''


def test_asyncio_memory_bio_tls_is_captured_by_ssl_pointer(
    tls_server: tuple[TlsServer, Path], pod_cgroup: FakePod,
) -> None:
    import subprocess
    import sys

    from collectors.l7.loader import SslProbes, TlsCollector
    from collectors.l7.parser import L7Parser

    server, cafile = tls_server
    emitted: list[Envelope] = []
    capture = Capture(L7Parser(), node="test-node", emit=emitted.append,
                      attribute=lambda _cg: None)
    probes = SslProbes()
    collector = TlsCollector(probes, capture, PodProcesses(CgroupResolver(pod_cgroup.root)),
                             rescan_s=0.1)
    agent = subprocess.Popen([sys.executable, "-c", ASYNC_AGENT, server.url, str(cafile)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert agent.stdout is not None and agent.stdout.readline().strip() == "ready"
        pod_cgroup.add(agent.pid)
        collector.start()
        wait_for(lambda: pod_cgroup.cgroup_id in probes.watched and bool(probes.libraries),
                 "the pod cgroup and its libssl")
        out, _ = agent.communicate("go\n", timeout=60)
        assert out.strip() == "done"
        wait_for(lambda: any(e.kind == "llm.response" for e in emitted),
                 lambda: f"llm.request/response: {collector.snapshot()}")
    finally:
        collector.stop()
        probes.close()
        reap(agent)
    request = next(e for e in emitted if e.kind == "llm.request")
    assert b"gpt-async" in request.to_json()
    assert request.data["conn"]["tls"] is True and "fd" not in request.data["conn"]
    assert request.proc is not None and request.proc.pid == agent.pid
