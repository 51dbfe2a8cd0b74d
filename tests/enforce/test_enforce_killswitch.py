"""The per-node kill switch removes every program of the enforcer (root): with the file
set, the running enforcer detaches from every pod cgroup and unloads at its next poll,
the pod's connects go through again, and a new enforcer refuses to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.enforce import bpfsys
from collectors.enforce.loader import PROG_PREFIX, EnforcerError, kill_switch
from collectors.enforce.policy import parse_policy

from .conftest import make_env


def _attached(folder: Path) -> dict[str, list[int]]:
    return {name: bpfsys.prog_ids_attached(str(folder), at)
            for name, at in bpfsys.ATTACH_TYPES.items()}


def test_kill_switch_removes_every_program(dns_server: int, tmp_path: Path) -> None:
    env = make_env(dns_server, tmp_path)
    try:
        env.enforcer.set_policies([parse_policy({
            "apiVersion": "agentstory/v1", "kind": "EnforcePolicy", "mode": "enforce",
            "agent": f"agents/Deployment/{name}", "egress": {"loopback": False},
            "exec": {"allowed": ["/nothing"]}}) for name in ("ks-a", "ks-b")])
        pods = [env.pod("ks-a"), env.pod("ks-b")]
        folders = [p.path.parent for p in pods]  # the pod-level cgroups
        assert all(all(len(ids) == 1 for ids in _attached(f).values()) for f in folders)
        assert len(bpfsys.loaded_programs(PROG_PREFIX)) == 6
        assert pods[0].run(["/usr/bin/true"], check=False).returncode == -9  # enforced

        # the switch is set by another process's call; the enforcer sees it at its poll
        import threading

        left: dict[int, str] = {"pending": "yes"}  # type: ignore[dict-item]

        def flip() -> None:
            left.clear()
            left.update(kill_switch(env.kill_switch, timeout_s=10))

        thread = threading.Thread(target=flip)
        thread.start()
        while thread.is_alive():
            env.enforcer.poll(50)
        assert left == {}
        assert not env.enforcer.armed
        assert all(ids == [] for f in folders for ids in _attached(f).values())
        assert bpfsys.loaded_programs(PROG_PREFIX) == {}
        # the pods are free again
        assert pods[0].run(["/usr/bin/true"], check=False).returncode == 0
        with pytest.raises(EnforcerError, match="kill switch"):
            make_env(dns_server, tmp_path)
    finally:
        env.cleanup()
        env.enforcer.close()
