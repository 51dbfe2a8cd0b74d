"""process.exec / process.exit from real tracepoints, attributed to kubelet-shaped pods."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from collectors.cgroups import CgroupResolver
from collectors.kernel.sandbox import FakePod
from collectors.pods import Attributor, FilePodSource, PodIndex
from streams.events import Envelope

pytestmark = pytest.mark.root


def _execs(exe: str):
    return lambda e: e.kind == "process.exec" and e.proc is not None and e.proc.exe == exe


def test_exec_in_pod_is_reported_with_pod_and_fields(kernel) -> None:
    pod = kernel.pod("support-bot", "support")
    pod.run(["/bin/echo", "hello", "agent story"], stdout=subprocess.DEVNULL)
    (event,) = kernel.wait_for(_execs("/bin/echo"))
    assert event.source == "kernel" and event.node == "test-node"
    assert event.pod is not None
    assert event.pod.uid == pod.uid
    assert event.pod.name == "support-bot" and event.pod.namespace == "support"
    assert event.pod.container == "main" and event.pod.container_id == pod.container_id
    assert event.data["argv"] == ["/bin/echo", "hello", "agent story"]
    assert event.data["filename"] == "/bin/echo"
    assert event.data["cgroup_id"] == pod.cgroup_id
    assert event.proc.comm == "echo" and event.proc.uid == 0
    assert event.proc.ppid > 0 and event.proc.start_ns > 0
    # event time is wall-clock epoch ns, near now
    assert abs(event.ts - time.time_ns()) < 60 * 10**9
    Envelope.from_dict(event.to_dict())  # valid on the wire


def test_child_exec_has_parent_in_pod_and_exit_code(kernel) -> None:
    pod = kernel.pod()
    pod.run("/bin/sh -c '/bin/true; exit 7'", check=False)
    (true_exec,) = kernel.wait_for(_execs("/bin/true"))
    exits = kernel.wait_for(lambda e: e.kind == "process.exit", count=2)
    by_pid = {e.proc.pid: e for e in exits}
    true_exit = by_pid[true_exec.proc.pid]
    assert true_exit.data["exit_code"] == 0
    assert true_exit.data["lifetime_ns"] > 0
    assert true_exit.pod is not None and true_exit.pod.uid == pod.uid
    # /bin/true was forked by the inner sh, inside the pod: lineage known in the kernel
    shell_exit = by_pid[true_exec.proc.ppid]
    assert shell_exit.data["exit_code"] == 7
    assert true_exec.data["parent_comm"] == "sh"


def test_killed_process_reports_the_signal(kernel) -> None:
    pod = kernel.pod()
    proc = pod.popen(["/bin/sleep", "30"])
    kernel.wait_for(_execs("/bin/sleep"))
    proc.kill()
    proc.wait()
    (ev,) = kernel.wait_for(lambda e: e.kind == "process.exit" and e.proc.pid == proc.pid)
    assert ev.data["signal"] == 9
    assert "exit_code" not in ev.data


def test_host_exec_is_dropped_in_the_kernel(kernel) -> None:
    before = kernel.collector.stats["filtered"]
    marker = f"/tmp/agentstory-host-{time.monotonic_ns()}"
    subprocess.run(["/bin/touch", marker], check=True)
    Path(marker).unlink()
    pod = kernel.pod()
    pod.run(["/bin/true"])  # a pod event after the host one: the drain reached it
    kernel.wait_for(_execs("/bin/true"))
    assert not [e for e in kernel.out if e.proc and e.proc.exe == "/bin/touch"]
    assert kernel.collector.stats["filtered"] > before


def test_pod_created_after_start_is_caught_before_first_exec(kernel) -> None:
    # The cgroup is made now, after the collector started: only cgroup_mkdir can
    # have put it in the filter before the sh below execs.
    pod = kernel.pod()
    pod.run([sys.executable, "-c", "pass"])
    (ev,) = kernel.wait_for(_execs(sys.executable))
    assert ev.pod is not None and ev.pod.uid == pod.uid
    assert ev.data["argv"] == [sys.executable, "-c", "pass"]


def test_pod_from_a_pods_file(kernel, tmp_path: Path) -> None:
    pod = kernel.pod("rag-bot", "rag", known=False)
    pods_file = tmp_path / "pods.yaml"
    pods_file.write_text(yaml.safe_dump(
        pod.manifest(owner=("ReplicaSet", "rag-bot-5f7c9")) | {}))
    index = PodIndex()
    FilePodSource(pods_file).load(index)
    attributor = Attributor(index, CgroupResolver())
    resolved = attributor.pod_for_cgroup(pod.cgroup_id)
    assert resolved is not None and resolved.name == "rag-bot"
    assert resolved.container_id == pod.container_id


def test_fake_pod_cleans_up_even_with_a_process_left(kernel_ok) -> None:
    pod = FakePod().create()
    proc = pod.popen(["/bin/sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        while not pod.pids() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pod.pids()
    finally:
        pod.remove()
        proc.kill()
        proc.wait()
    assert not pod.path.exists()


@pytest.mark.parametrize(("runtime", "driver"), [
    ("crio", "systemd"), ("docker", "systemd"), ("containerd", "cgroupfs"),
])
def test_runtime_and_driver_shapes_are_attributed(kernel, runtime: str, driver: str) -> None:
    pod = kernel.pod(f"shape-{runtime}", "shapes", runtime=runtime, driver=driver)
    pod.run(["/bin/echo", runtime], stdout=subprocess.DEVNULL)
    (ev,) = kernel.wait_for(lambda e: e.kind == "process.exec" and e.pod is not None
                            and e.pod.uid == pod.uid)
    assert ev.pod.name == f"shape-{runtime}"
    assert ev.pod.container_id == pod.container_id and ev.pod.container == "main"


def test_exec_carries_ancestry_within_the_pod_and_cwd(kernel, tmp_path: Path) -> None:
    pod = kernel.pod()
    pod.run("/bin/sh -c 'cd / && /bin/sh -c \"cd /tmp && /bin/true\"; true'", cwd=tmp_path)
    (true_exec,) = kernel.wait_for(_execs("/bin/true"))
    chain = true_exec.data["ancestry"]
    assert [a["exe"] for a in chain] == ["/bin/sh", "/bin/sh"]
    assert chain[0]["pid"] == true_exec.proc.ppid
    # cwd is read from /proc, best effort: present for a process still alive
    sleeper = pod.popen("/bin/sh -c 'cd /tmp && exec /bin/sleep 5'")
    try:
        (sleep_exec,) = kernel.wait_for(_execs("/bin/sleep"))
        assert sleep_exec.data["cwd"] == "/tmp"
    finally:
        sleeper.kill()
        sleeper.wait()
    # the outermost sh was exec'd by the test's helper sh, which was forked on the host
    # before it joined the pod: the chain stops at the pod boundary
    assert all(a["pid"] != 1 for a in chain)


def test_include_host_reports_host_processes(kernel_ok) -> None:
    from .harness import make_harness

    harness, collector = make_harness(concerns=("exec",), include_host=True)
    try:
        subprocess.run(["/bin/echo", "from-host"], check=True, stdout=subprocess.DEVNULL)
        found = harness.wait_for(lambda e: e.kind == "process.exec"
                                 and e.data["argv"] == ["/bin/echo", "from-host"])
        assert found and found[0].pod is None
    finally:
        collector.close()
