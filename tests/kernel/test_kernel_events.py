"""file.open, net.*, net.dns and syscall.profile from real tracepoints: a process in a
kubelet-shaped pod cgroup does the thing, the collector reports it with the right pod
and fields; the same action on the host is not reported."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.events import Envelope

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _run_host(code: str) -> int:
    proc = subprocess.run(_python(code), cwd=REPO, check=True, capture_output=True, text=True)
    return int(proc.stdout.split()[-1])


def _of_pid(out: list[Envelope], pid: int) -> list[Envelope]:
    return [e for e in out if e.proc is not None and e.proc.pid == pid]


@pytest.fixture
def listener() -> Iterator[int]:
    """A loopback TCP server that reads everything and closes; yields its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                while conn.recv(65536):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        srv.close()


# -- file.open ---------------------------------------------------------------------------
def test_open_of_token_path_is_reported_and_marked_sensitive(kernel, tmp_path: Path) -> None:
    pod = kernel.pod("coder", "agents")
    written = tmp_path / "notes.txt"
    code = (f"import os\ntry:\n    open({TOKEN!r})\nexcept OSError:\n    pass\n"
            f"open({str(written)!r}, 'w').write('x')\nprint(os.getpid())")
    out = pod.run(_python(code), capture_output=True, text=True)
    pid = int(out.stdout.split()[-1])
    kernel.collector.flush()
    opens = [e for e in _of_pid(kernel.out, pid) if e.kind == "file.open"]
    (token,) = [e for e in opens if e.data["path"] == TOKEN]
    assert token.pod is not None and token.pod.uid == pod.uid and token.pod.name == "coder"
    assert token.data["sensitive"] == {"rule": "k8s-service-account-token", "level": "high",
                                       "class": "token"}
    assert token.data["access"] == "read" and token.data["result"] == -2
    assert token.data["error"] == "ENOENT" and token.data["count"] == 1
    (write,) = [e for e in opens if e.data["path"] == str(written)]
    assert write.data["access"] == "write" and write.data["create"] is True
    assert write.data["truncate"] is True and write.data["result"] >= 0
    assert "sensitive" not in write.data


def test_host_open_is_not_reported(kernel) -> None:
    pid = _run_host(f"import os\ntry:\n    open({TOKEN!r})\nexcept OSError:\n    pass\n"
                    "print(os.getpid())")
    pod = kernel.pod()
    pod.run(["/bin/true"])
    kernel.collector.flush()
    assert kernel.wait_for(lambda e: e.kind == "process.exec" and e.pod.uid == pod.uid)
    assert not _of_pid(kernel.out, pid)
    assert not [e for e in kernel.out if e.kind == "file.open" and e.data["path"] == TOKEN]


def test_dedup_keeps_counts_exact(kernel, tmp_path: Path) -> None:
    target = tmp_path / "config.yaml"
    target.write_text("a: 1\n")
    pod = kernel.pod()
    before = kernel.collector.stats["deduplicated"]
    code = (f"import os\nfor _ in range(250):\n    open({str(target)!r}).close()\n"
            "print(os.getpid())")
    pid = int(pod.run(_python(code), capture_output=True, text=True).stdout.split()[-1])
    kernel.collector.flush()
    opens = [e for e in kernel.out
             if e.kind == "file.open" and e.data["path"] == str(target)]
    assert sum(e.data["count"] for e in opens) == 250
    assert len(opens) < 250  # folded in the kernel
    assert all(e.pod is not None and e.pod.uid == pod.uid for e in opens)
    assert {e.proc.pid for e in opens if e.proc is not None} == {pid}
    repeats = [e for e in opens if e.data.get("repeat")]
    assert repeats and sum(e.data["count"] for e in repeats) == 250 - (len(opens) - len(repeats))
    assert kernel.collector.stats["deduplicated"] - before >= sum(
        e.data["count"] for e in repeats)


# -- net ---------------------------------------------------------------------------------
def test_connect_and_close_with_bytes(kernel, listener: int) -> None:
    pod = kernel.pod("exfil", "agents")
    code = (f"import socket, os\nc = socket.create_connection(('127.0.0.1', {listener}))\n"
            "c.sendall(b'z' * 123456)\nc.close()\nprint(os.getpid())")
    pid = int(pod.run(_python(code), capture_output=True, text=True).stdout.split()[-1])
    closes = kernel.wait_for(lambda e: e.kind == "net.close" and e.proc.pid == pid)
    connects = [e for e in _of_pid(kernel.out, pid) if e.kind == "net.connect"]
    (conn,) = [e for e in connects if e.data.get("dst_port") == listener]
    assert conn.pod is not None and conn.pod.uid == pod.uid and conn.pod.name == "exfil"
    assert conn.data["protocol"] == "tcp" and conn.data["family"] == "inet"
    assert conn.data["dst_addr"] == "127.0.0.1" and conn.data["result"] == 0
    (close,) = closes
    assert close.data["bytes_sent"] == 123456
    assert close.data["dst_port"] == listener and close.data["src_port"] > 0
    assert close.pod is not None and close.pod.uid == pod.uid


def test_refused_udp_and_ipv6_connects(kernel) -> None:
    pod = kernel.pod()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    code = (
        "import socket, os\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {port}))\n"
        "except OSError:\n    pass\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"u.connect(('127.0.0.1', {port}))\n"
        "s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)\n"
        f"try:\n    s6.connect(('::1', {port}))\n"
        "except OSError:\n    pass\nprint(os.getpid())")
    pid = int(pod.run(_python(code), capture_output=True, text=True).stdout.split()[-1])
    kernel.collector.flush()
    connects = [e.data for e in _of_pid(kernel.out, pid) if e.kind == "net.connect"]
    by = {(d["protocol"], d["family"]): d for d in connects if d.get("dst_port") == port}
    assert by[("tcp", "inet")]["error"] == "ECONNREFUSED"
    assert by[("udp", "inet")]["result"] == 0
    v6 = by[("tcp", "inet6")]
    assert v6["dst_addr"] == "::1" and v6["result"] < 0


def test_listen_and_accept_in_pod(kernel) -> None:
    pod = kernel.pod()
    code = (
        "import socket, os\n"
        "s = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen()\n"
        "port = s.getsockname()[1]\n"
        "c = socket.create_connection(('127.0.0.1', port))\n"
        "a, peer = s.accept()\nprint(port, peer[1], os.getpid())")
    port, peer_port, pid = map(int, pod.run(_python(code), capture_output=True,
                                            text=True).stdout.split())
    kernel.collector.flush()
    mine = _of_pid(kernel.out, pid)
    (listen,) = [e for e in mine if e.kind == "net.listen"]
    assert listen.data["local_port"] == port and listen.data["protocol"] == "tcp"
    (accept,) = [e for e in mine if e.kind == "net.accept"]
    assert accept.data["peer_port"] == peer_port and accept.data["peer_addr"] == "127.0.0.1"
    assert accept.data["local_port"] == port
    assert accept.pod is not None and accept.pod.uid == pod.uid


def test_host_connect_is_not_reported(kernel, listener: int) -> None:
    pid = _run_host(f"import socket, os\nc = socket.create_connection(('127.0.0.1', {listener}))"
                    "\nc.sendall(b'x')\nc.close()\nprint(os.getpid())")
    kernel.collector.flush()
    assert not _of_pid(kernel.out, pid)


# -- dns ---------------------------------------------------------------------------------
def test_dns_query_and_answer_then_connect_names_the_domain(
        kernel, resolver: str, listener: int) -> None:
    pod = kernel.pod("rag", "agents")
    code = (
        "import socket, os\nfrom collectors.kernel.dnsmsg import build_query\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.sendto(build_query('exfil.example.net', 1, ident=77), ('127.0.0.1', 53))\n"
        "s.recvfrom(512)\n"
        # the address the answer gave is not routable here: connect to loopback with a
        # connected UDP socket to it instead (no packet leaves the machine)
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"u.connect(({resolver!r}, 443))\n"
        "print(os.getpid())")
    pid = int(pod.run(_python(code), capture_output=True, text=True, cwd=REPO)
              .stdout.split()[-1])
    kernel.collector.flush()
    mine = _of_pid(kernel.out, pid)
    dns = [e for e in mine if e.kind == "net.dns"]
    (query,) = [e for e in dns if e.data["direction"] == "query"]
    assert query.data["questions"] == [{"name": "exfil.example.net", "type": "A"}]
    assert query.data["id"] == 77 and query.data["server"] == "127.0.0.1"
    assert query.pod is not None and query.pod.uid == pod.uid
    (answer,) = [e for e in dns if e.data["direction"] == "answer"]
    assert answer.data["answers"][0]["data"] == resolver
    assert answer.data["rcode"] == "NOERROR"
    (conn,) = [e for e in mine if e.kind == "net.connect" and e.data.get("dst_port") == 443]
    assert conn.data["dst_addr"] == resolver
    assert conn.data["domain"] == "exfil.example.net"


def test_host_dns_query_is_not_reported(kernel, resolver: str) -> None:
    pid = _run_host(
        "import socket, os\nfrom collectors.kernel.dnsmsg import build_query\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.sendto(build_query('host.example.net', 1), ('127.0.0.1', 53))\n"
        "s.recvfrom(512)\nprint(os.getpid())")
    kernel.collector.flush()
    assert not _of_pid(kernel.out, pid)


# -- syscall.profile ---------------------------------------------------------------------
def test_syscall_profile_counts_a_burst(kernel) -> None:
    pod = kernel.pod("seccomp", "agents")
    host_pid = _run_host("import os\nfor _ in range(300):\n    os.sched_yield()\n"
                         "print(os.getpid())")
    assert host_pid
    pod.run(_python("import os\nfor _ in range(777):\n    os.sched_yield()"))
    kernel.collector.flush_profiles()
    profiles = [e for e in kernel.out if e.kind == "syscall.profile"]
    (mine,) = [e for e in profiles if e.pod is not None and e.pod.uid == pod.uid]
    assert mine.pod.name == "seccomp"
    assert mine.data["syscalls"]["sched_yield"] == 777
    assert mine.data["syscalls"]["execve"] >= 1
    assert mine.data["distinct"] == len(mine.data["syscalls"])
    # the host burst is in no profile (only pod cgroups are counted)
    assert all(e.pod is not None for e in profiles)
    assert sum(e.data["syscalls"].get("sched_yield", 0) for e in profiles) < 777 + 300


def test_pid_of_test_runner_never_reported(kernel) -> None:
    assert not _of_pid(kernel.out, os.getpid())


def test_dedup_counts_exact_on_both_sides_of_the_short_key(kernel) -> None:
    """Paths up to 62 characters are folded in the short-key table, longer ones in the
    full one (the kernel picks by length); the repeats of each add up either way."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="ks", dir="/tmp"))
    try:
        targets = []
        for length in (20, 61, 62, 63, 64, 200):
            name = "f" * (length - len(str(folder)) - 1)
            target = folder / name
            assert len(str(target)) == length
            target.write_text("x")
            targets.append(str(target))
        pod = kernel.pod()
        code = (f"import os\nfor _ in range(40):\n    for p in {targets!r}:\n"
                "        open(p).close()\nprint(os.getpid())")
        pod.run(_python(code), capture_output=True, text=True)
        kernel.collector.flush()
        for target in targets:
            opens = [e for e in kernel.out
                     if e.kind == "file.open" and e.data["path"] == target]
            assert sum(e.data["count"] for e in opens) == 40, len(target)
            assert len(opens) < 40, len(target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
