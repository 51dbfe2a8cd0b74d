"""Real HTTP/2 capture: httpx (``http2=True``, ALPN h2 over CPython's ssl, so the libssl
uprobes) in a kubelet-shaped pod cgroup talks to a local h2 TLS server; every stream's
request and response comes out, a host client doing the same is unseen, and a client
whose connection was already open when it entered the pod is counted and skipped.
Needs root and bcc; skipped elsewhere."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from collectors.cgroups import CgroupResolver
from collectors.kernel.sandbox import FakePod
from collectors.l7.capture import Capture
from collectors.l7.libssl import PodProcesses
from streams.events import Envelope, Pod

from .h2_fixture import H2Server
from .test_capture_live import _bcc_ready, wait_for
from .tls_fixture import make_cert, reap

if TYPE_CHECKING:
    from collectors.l7.loader import SslProbes, TlsCollector

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]
if (_reason := _bcc_ready()) is not None:
    pytestmark.append(pytest.mark.skip(reason=_reason))

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def h2_server(tmp_path: Path) -> Iterator[tuple[H2Server, Path]]:
    cert, key = make_cert(tmp_path)
    server = H2Server(cert, key)
    try:
        yield server, cert
    finally:
        server.close()


def start(url: str, cafile: Path, tag: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.l7.h2_fixture", "client", url,
                             str(cafile), tag], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        reap(proc)
        raise AssertionError("the httpx client did not start")
    return proc


def step(proc: subprocess.Popen[str]) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def _collector(pod_cgroup: FakePod) -> tuple[SslProbes, TlsCollector, list[Envelope], Pod]:
    from collectors.l7.loader import SslProbes, TlsCollector
    from collectors.l7.parser import L7Parser

    pod = Pod(uid=pod_cgroup.uid)
    emitted: list[Envelope] = []
    capture = Capture(L7Parser(), node="test-node", emit=emitted.append,
                      attribute=lambda cgid: pod if cgid == pod_cgroup.cgroup_id else None)
    probes = SslProbes()
    collector = TlsCollector(probes, capture, PodProcesses(CgroupResolver(pod_cgroup.root)),
                             rescan_s=0.1)
    return probes, collector, emitted, pod


def test_httpx_http2_in_a_pod_is_captured_per_stream_and_a_host_client_is_not(
    h2_server: tuple[H2Server, Path], pod_cgroup: FakePod,
) -> None:
    server, cafile = h2_server
    probes, collector, emitted, pod = _collector(pod_cgroup)
    pod_client = start(server.url, cafile, "pod")
    host_client = start(server.url, cafile, "host")
    try:
        pod_cgroup.add(pod_client.pid)
        collector.start()
        wait_for(lambda: pod_cgroup.cgroup_id in probes.watched
                 and bool(probes.libraries),
                 "libssl probed for the pod client")
        for proc in (pod_client, host_client):
            assert step(proc) == "HTTP/2 200"
            assert step(proc) == "HTTP/2 200 200"
        wait_for(lambda: sum(e.kind == "http.response" for e in emitted) >= 3,
                 lambda: f"three responses: {collector.snapshot()}")
    finally:
        collector.stop()
        parser_stats = dict(collector.capture.parser.stats)
        probes.close()
        for proc in (pod_client, host_client):
            reap(proc)

    assert len(server.seen) == 6  # both clients really made their three requests
    assert emitted and all(e.pod == pod for e in emitted)
    assert {e.proc.pid for e in emitted if e.proc} == {pod_client.pid}
    assert not any(b"-host" in e.to_json() for e in emitted)
    requests = [e.data for e in emitted if e.kind == "http.request"]
    responses = [e.data for e in emitted if e.kind == "http.response"]
    assert [(r["method"], r["path"], r["stream"]) for r in requests] == [
        ("POST", "/v1/chat/completions", 1), ("GET", "/v1/models", 3),
        ("POST", "/v1/chat/completions", 5)]
    assert all(r["version"] == "2" and r["host"].startswith("127.0.0.1") for r in requests)
    assert [(r["status"], r["stream"], r["path"]) for r in responses] == [
        (200, 1, "/v1/chat/completions"), (200, 3, "/v1/models"),
        (200, 5, "/v1/chat/completions")]
    big = requests[2]
    sent = next(b for p, b in server.seen if b"gpt-h2-second-pod" in b)
    assert big["body_size"] == len(sent) and not big["truncated"]
    models = [e.data["model"] for e in emitted if e.kind == "llm.request"]
    assert models == ["gpt-h2-first-pod", "gpt-h2-second-pod"]
    assert [e.data["model"] for e in emitted if e.kind == "llm.response"] == models
    assert not any(b"secret0123456789" in e.to_json() for e in emitted)
    assert parser_stats["h2_conns"] == 1 and parser_stats["h2_errors"] == 0
    assert parser_stats["h2_midstream_conns"] == 0


def test_an_http2_connection_joined_mid_stream_is_counted_and_skipped(
    h2_server: tuple[H2Server, Path], pod_cgroup: FakePod,
) -> None:
    server, cafile = h2_server
    probes, collector, emitted, _pod = _collector(pod_cgroup)
    client = start(server.url, cafile, "late")
    try:
        assert step(client) == "HTTP/2 200"  # preface, SETTINGS, HPACK table: unseen
        pod_cgroup.add(client.pid)
        collector.start()
        wait_for(lambda: pod_cgroup.cgroup_id in probes.watched
                 and bool(probes.libraries),
                 "libssl probed for the client")
        assert step(client) == "HTTP/2 200 200"
        wait_for(lambda: collector.capture.parser.stats["h2_midstream_conns"] >= 1,
                 lambda: f"the mid-stream join counted: {collector.snapshot()}")
    finally:
        collector.stop()
        stats = dict(collector.capture.parser.stats)
        probes.close()
        reap(client)
    assert len(server.seen) == 3
    assert emitted == []  # nothing guessed from a connection whose HPACK state is unknown
    assert stats["h2_midstream_conns"] == 1 and stats["h2_skipped_bytes"] > 0
    assert stats["h2_conns"] == 0 and stats["parse_errors"] == 0
