"""The demo's support bot moved from audit to enforce (root): its scenario's exfiltration
upload (topologies.scenarios.demo.UPLOAD, the interpreter the tool runtime spawns) runs
in its kubelet-shaped pod against the recording's world (DNS and HTTPS on loopback).
In audit the upload goes through and the enforcer says would_block; switched live to
enforce, the same upload fails with EPERM and the enforcer says blocked, while the
provider the policy allows (learnt from the world's DNS answers) still connects."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.cgroups import CgroupResolver
from collectors.enforce.policy import parse_policy
from collectors.kernel.sandbox import FakePod
from collectors.pods import Attributor, PodIndex, PodInfo
from streams.events import Envelope

AGENT = "support/Deployment/support-bot"
REPO = Path(__file__).resolve().parents[2]


# the world's resolver on an address of its own, so a recording running beside this test
# (the world's default 127.77.0.53:53) does not collide with it
DNS = ("127.77.3.53", 53)


@pytest.fixture
def world(enforce_ok: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[object]:
    from topologies.scenarios import world as world_module

    monkeypatch.setattr(world_module, "DNS_ADDR", DNS)
    try:
        w = world_module.World(tmp_path / "world").start()
    except OSError as exc:
        pytest.skip(f"the recording's world cannot start here: {exc}")
    try:
        yield w
    finally:
        w.stop()


def policy(mode: str) -> object:
    return parse_policy({
        "apiVersion": "agentstory/v1", "kind": "EnforcePolicy", "agent": AGENT, "mode": mode,
        "egress": {"domains": [{"name": "api.openai.com", "ports": [443]},
                               {"name": "*.amazonaws.com", "ports": [443]}],
                   # the world is on loopback (127.77/16) here; in a real pod loopback is
                   # the pod's own and may stay allowed
                   "loopback": False},
        "exec": {"allowed": ["/bin/sh", sys.executable]}})


def test_demo_exfiltration_audit_then_enforce(world: object, tmp_path: Path) -> None:
    from collectors.enforce.loader import Enforcer
    from topologies.scenarios.demo import EXFIL_HOST, UPLOAD

    DNS_ADDR = DNS
    index = PodIndex()
    out: list[Envelope] = []
    enforcer = Enforcer("node-a", Attributor(index, CgroupResolver()), out.append,
                        policies=[policy("audit")], resolvers=[DNS_ADDR[0]],
                        node_addresses=[], dns_port=DNS_ADDR[1],
                        kill_switch_path=tmp_path / "off")
    pod = FakePod("support-bot-7d9f8c-x2kq9", "support")
    home = tmp_path / "home"
    home.mkdir()
    (home / "rows.json").write_text('[{"name": "Ann", "ssn": "078-05-1120"}]')
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "PYTHONPATH": f"{REPO / 'topologies' / 'scenarios' / 'podsite'}:{REPO}",
           "AGENTSTORY_POD_DNS": f"{DNS_ADDR[0]}:{DNS_ADDR[1]}",
           "SSL_CERT_FILE": str(world.authority.ca_file)}  # type: ignore[attr-defined]
    provider = (f"{sys.executable} -c \"import socket; "
                "socket.create_connection(('api.openai.com', 443), timeout=5); print('ok')\"")

    def run(line: str) -> tuple[int, str]:
        done = pod.run(line.replace("python3 ", f"{sys.executable} ", 1), check=False,
                       capture_output=True, text=True, env=env, cwd=home)
        return done.returncode, done.stdout + done.stderr

    try:
        pod.create()
        index.apply("ADDED", PodInfo.from_manifest(
            pod.manifest(owner=("Deployment", "support-bot"))))
        enforcer.start()
        assert enforcer.enforced_pods == {pod.uid: AGENT}

        rc, text = run(UPLOAD)
        # audit: the connect went through (what the world's server then did with the
        # upload, on a loaded machine sometimes a reset, is not the enforcer's part)
        assert "Operation not permitted" not in text, text
        while enforcer.poll(50):
            pass
        audit = [e for e in out if e.kind == "enforce.would_block"]
        exfil_addr = world.address_of(EXFIL_HOST)  # type: ignore[attr-defined]
        assert [(e.data["dst_addr"], e.data["dst_port"]) for e in audit] == [(exfil_addr, 443)]

        enforcer.set_policies([policy("enforce")])  # the user's move: mode audit → enforce
        rc, text = run(provider)
        assert (rc, text.strip()) == (0, "ok")  # the allowed provider still connects
        rc, text = run(UPLOAD)
        assert rc != 0 and "Operation not permitted" in text, text
        while enforcer.poll(50):
            pass
        blocked = [e for e in out if e.kind == "enforce.blocked"]
        assert [(e.data["op"], e.data["dst_addr"], e.data["dst_port"], e.data["response"])
                for e in blocked] == [("connect", exfil_addr, 443, "EPERM")]
        assert blocked[0].pod is not None and blocked[0].pod.agent == AGENT
        modes = [e.data["mode"] for e in out if e.kind == "enforce.mode"]
        assert modes == ["audit", "enforce"]
    finally:
        enforcer.close()
        index.apply("DELETED", PodInfo.from_manifest(pod.manifest()))
        pod.remove()
