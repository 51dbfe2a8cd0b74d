"""``agentstory enforce run`` as a process (root): it enforces the pods its pods file
names, reloads the policy file when it changes (the mode switches live), and exits once
the kill switch is set, leaving no program behind."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from collectors.enforce import bpfsys
from collectors.enforce.loader import PROG_PREFIX
from collectors.kernel.sandbox import FakePod

AGENT = "agents/Deployment/cli-bot"


def _policy(path: Path, mode: str) -> None:
    path.write_text(yaml.safe_dump({
        "apiVersion": "agentstory/v1", "kind": "EnforcePolicy", "agent": AGENT, "mode": mode,
        "exec": {"allowed": ["/bin/sh"]}}))


def _lines_until(proc: subprocess.Popen[str], predicate: object, timeout_s: float = 30
                 ) -> list[dict[str, object]]:
    seen: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(json.loads(line))
        if predicate(seen):  # type: ignore[operator]
            return seen
    raise AssertionError(f"not seen in {timeout_s} s: {seen}")


def test_enforce_run_reloads_and_stops_on_the_kill_switch(enforce_ok: None,
                                                          tmp_path: Path) -> None:
    policy, pods, kill = tmp_path / "p.yaml", tmp_path / "pods.yaml", tmp_path / "off"
    _policy(policy, "audit")
    pod = FakePod("cli-bot", "agents")
    pod.create()
    pods.write_text(yaml.safe_dump(pod.manifest(owner=("Deployment", "cli-bot"))))
    proc = subprocess.Popen(
        [sys.executable, "-m", "topologies.cli", "enforce", "run", "--policy", str(policy),
         "--pods-file", str(pods), "--node", "node-a", "--no-publish", "--kill-switch",
         str(kill), "--resolver", "127.0.0.1", "--node-address", "127.0.0.2",
         "--log-level", "warning"], stdout=subprocess.PIPE, text=True)
    try:
        _lines_until(proc, lambda s: any(e["kind"] == "enforce.mode" for e in s))
        deadline = time.monotonic() + 10  # the pod file is read, the pod attached
        while not bpfsys.prog_ids_attached(str(pod.path.parent), bpfsys.ATTACH_TYPES["connect4"]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert pod.run(["/usr/bin/true"], check=False).returncode == 0  # audit
        seen = _lines_until(proc, lambda s: any(e["kind"] == "enforce.would_block" for e in s))
        assert [e["data"]["filename"] for e in seen if e["kind"] == "enforce.would_block"] == [
            "/usr/bin/true"]
        _policy(policy, "enforce")  # the edit is picked up within a second or two
        _lines_until(proc, lambda s: any(e["kind"] == "enforce.mode"
                                         and e["data"]["mode"] == "enforce" for e in s))
        assert pod.run(["/usr/bin/true"], check=False).returncode == -9
        kill.write_text("off\n")
        assert proc.wait(timeout=30) == 0
        assert bpfsys.loaded_programs(PROG_PREFIX) == {}
        assert pod.run(["/usr/bin/true"], check=False).returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        pod.remove()
