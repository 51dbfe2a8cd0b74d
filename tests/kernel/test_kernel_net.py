"""net.connect outcomes from the TCP state machine and per-pod DNS naming, from real
processes in kubelet-shaped pod cgroups."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from streams.events import Envelope

pytestmark = pytest.mark.root


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _connects(out: list[Envelope], pid: int, port: int) -> list[Envelope]:
    return [e for e in out if e.kind == "net.connect" and e.proc is not None
            and e.proc.pid == pid and e.data.get("dst_port") == port]


@pytest.fixture
def server() -> Iterator[int]:
    """A loopback TCP server that accepts and closes; yields its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        srv.close()


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


NONBLOCKING = """
import os, select, socket, sys
port = int(sys.argv[1])
s = socket.socket()
s.setblocking(False)
try:
    s.connect(("127.0.0.1", port))
except BlockingIOError:
    pass
select.select([], [s], [], 5)
print(os.getpid(), s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
"""


def test_nonblocking_connect_that_succeeds_is_established(kernel, server: int) -> None:
    pod = kernel.pod("client", "agents")
    out = pod.run([sys.executable, "-c", NONBLOCKING, str(server)], capture_output=True,
                  text=True).stdout.split()
    pid, so_error = int(out[0]), int(out[1])
    assert so_error == 0
    (conn,) = kernel.wait_for(lambda e: e in _connects(kernel.out, pid, server))
    assert conn.data["outcome"] == "established" and conn.data["result"] == 0
    assert "error" not in conn.data
    assert conn.pod is not None and conn.pod.uid == pod.uid
    assert conn.proc is not None and conn.proc.pid == pid


def test_nonblocking_connect_that_is_refused(kernel) -> None:
    port = _free_port()
    pod = kernel.pod()
    out = pod.run([sys.executable, "-c", NONBLOCKING, str(port)], capture_output=True,
                  text=True).stdout.split()
    pid, so_error = int(out[0]), int(out[1])
    assert so_error == 111  # ECONNREFUSED, as the process itself saw it
    (conn,) = kernel.wait_for(lambda e: e in _connects(kernel.out, pid, port))
    assert conn.data["outcome"] == "refused" and conn.data["error"] == "ECONNREFUSED"


def test_blocking_connects_keep_their_outcome(kernel, server: int) -> None:
    refused = _free_port()
    pod = kernel.pod()
    code = (f"import os, socket\nc = socket.create_connection(('127.0.0.1', {server}))\n"
            f"try:\n    socket.create_connection(('127.0.0.1', {refused}))\n"
            "except OSError:\n    pass\nprint(os.getpid())")
    pid = int(pod.run(_python(code), capture_output=True, text=True).stdout.split()[-1])
    kernel.collector.flush()
    (ok,) = _connects(kernel.out, pid, server)
    assert ok.data["outcome"] == "established" and ok.data["result"] == 0
    (bad,) = _connects(kernel.out, pid, refused)
    assert bad.data["outcome"] == "refused" and bad.data["error"] == "ECONNREFUSED"


RESOLVE_AND_CONNECT = """
import os, socket, sys
from collectors.kernel.dnsmsg import build_query
name = sys.argv[1]
if name != "-":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(build_query(name, 1, ident=9), ("127.0.0.1", 53))
    s.recvfrom(512)
# a connected UDP socket to the answer's address: no packet leaves the machine
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect(("10.1.2.3", 443))
print(os.getpid())
"""


def test_two_pods_resolving_one_address_each_get_their_own_name(
        kernel, resolver: str) -> None:
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    pods = {"a.example.com": kernel.pod("agent-a"), "b.example.com": kernel.pod("agent-b"),
            "-": kernel.pod("bare-ip")}
    pids = {}
    for name, pod in pods.items():
        out = pod.run([sys.executable, "-c", RESOLVE_AND_CONNECT, name],
                      capture_output=True, text=True, cwd=repo)
        pids[name] = int(out.stdout.split()[-1])
    kernel.collector.flush()
    for name, pid in pids.items():
        (conn,) = _connects(kernel.out, pid, 443)
        assert conn.data["dst_addr"] == resolver
        assert conn.pod is not None and conn.pod.uid == pods[name].uid
        if name == "-":
            assert "domain" not in conn.data  # this pod resolved nothing
        else:
            assert conn.data["domain"] == name


HANDSHAKES = """
import os, socket, sys, time
port = int(sys.argv[1])
socks = []
for _ in range(6):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    socks.append(s)
time.sleep(0.3)
print(os.getpid(), flush=True)
sys.stdin.readline()   # hold the sockets until told
"""


def test_connect_still_in_handshake_goes_out_pending_then_once(kernel) -> None:
    """A listener whose accept queue is full drops SYNs: later connects stay in
    SYN_SENT. flush() sends them as pending; when the process then closes them,
    nothing is sent twice."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)  # never accepted: the queue fills at once
    port = srv.getsockname()[1]
    pod = kernel.pod()
    with srv, pod.popen([sys.executable, "-c", HANDSHAKES, str(port)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        pid = int(proc.stdout.readline())
        kernel.collector.flush()
        first = [e.data["outcome"] for e in _connects(kernel.out, pid, port)]
        assert "pending" in first and "established" in first, first
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(10)
    kernel.collector.flush()
    after = [e for e in _connects(kernel.out, pid, port)]
    assert sum(e.data.get("count", 1) for e in after) == 6  # each connect once
    pending = [e for e in after if e.data["outcome"] == "pending"]
    assert pending and all(e.data["error"] == "EINPROGRESS" for e in pending)


def test_connect_closed_by_its_owner_before_an_answer_failed(kernel) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    pod = kernel.pod()
    with srv:
        out = pod.run([sys.executable, "-c", HANDSHAKES, str(port)],
                      stdin=subprocess.DEVNULL, capture_output=True, text=True)
        pid = int(out.stdout.split()[0])
        kernel.collector.flush()
    connects = _connects(kernel.out, pid, port)
    outcomes = [(e.data["outcome"], e.data.get("error")) for e in connects]
    assert ("established", None) in outcomes
    # no reset, no timeout: the socket closed with sk_err 0 while in SYN_SENT
    assert ("failed", "EINPROGRESS") in outcomes, outcomes
    assert sum(e.data["count"] for e in connects) == 6


def test_nonblocking_connects_to_one_destination_fold_with_exact_count(
        kernel, server: int) -> None:
    pod = kernel.pod()
    code = (
        "import os, select, socket, sys\n"
        "socks = []\n"
        "for _ in range(5):\n"
        "    s = socket.socket()\n    s.setblocking(False)\n"
        f"    try:\n        s.connect(('127.0.0.1', {server}))\n"
        "    except BlockingIOError:\n        pass\n"
        "    select.select([], [s], [], 5)\n    socks.append(s)\n"
        "print(os.getpid())")
    pid = int(pod.run(_python(code), capture_output=True, text=True).stdout.split()[-1])
    kernel.collector.flush()
    connects = _connects(kernel.out, pid, server)
    assert all(e.data["outcome"] == "established" for e in connects)
    assert sum(e.data["count"] for e in connects) == 5
    assert len(connects) < 5  # folded in the kernel, the repeats counted


DNS_TWO_WAYS = """
import os, socket
from collectors.kernel.dnsmsg import build_query
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(build_query("one.example.com", 1, ident=1), ("127.0.0.1", 53))
s.recvfrom(512)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # glibc's way: connect, send, recv
c.connect(("127.0.0.1", 53))
c.send(build_query("two.example.com", 1, ident=2))
c.recv(512)
print(os.getpid())
"""


def test_dns_alone_attaches_no_net_event_probes_and_still_reads_both_ways(
        kernel_ok, resolver: str) -> None:
    """Asked for dns without net, the collector attaches only the socket table's probes
    of net.bpf.c (no bind, accept, TCP state or per-send/receive probe), emits no net
    event, and still reports queries and answers, on connected sockets too."""
    from pathlib import Path

    from .harness import make_harness

    harness, collector = make_harness(concerns=("dns",))
    try:
        names = {n.decode() for n in collector._bpf.funcs}
        assert not [n for n in names if any(
            p in n for p in ("sock_send_length", "sock_recv_length", "inet_sock_set_state",
                             "accept", "bind", "tcp__"))], names
        assert any("sys_exit_connect" in n for n in names)
        pod = harness.pod()
        out = pod.run([sys.executable, "-c", DNS_TWO_WAYS], capture_output=True, text=True,
                      cwd=Path(__file__).resolve().parents[2])
        pid = int(out.stdout.split()[-1])
        collector.flush()
        mine = [e for e in harness.out if e.proc is not None and e.proc.pid == pid]
        assert not [e for e in mine if e.kind.startswith("net.") and e.kind != "net.dns"]
        dns = [e for e in mine if e.kind == "net.dns"]
        queries = sorted(e.data["questions"][0]["name"] for e in dns
                         if e.data["direction"] == "query")
        assert queries == ["one.example.com", "two.example.com"]
        assert len([e for e in dns if e.data["direction"] == "answer"]) == 2
    finally:
        harness.cleanup()
        collector.close()
