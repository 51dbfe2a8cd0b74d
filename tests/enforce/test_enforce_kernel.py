"""The enforcer on real programs, in kubelet-shaped pod cgroups (root): audit lets a
forbidden connect through and says would_block, enforce refuses it with EPERM; allowed
destinations pass, including names resolved after the start; forbidden executables are
killed in enforce mode; host processes and other pods are untouched; modes change live."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections import Counter

from collectors.enforce.policy import parse_policy

from .conftest import ZONE, Env

FORBIDDEN = "127.0.0.77"


def policy(agent: str, mode: str, **extra: object) -> object:
    doc: dict[str, object] = {"apiVersion": "agentstory/v1", "kind": "EnforcePolicy",
                              "agent": agent, "mode": mode}
    doc.update(extra)
    return parse_policy(doc)


def egress(*domains: object, cidrs: tuple[object, ...] = ()) -> dict[str, object]:
    return {"domains": list(domains), "cidrs": list(cidrs), "loopback": False}


def test_audit_connect_passes_and_says_would_block(env: Env) -> None:
    env.enforcer.set_policies([policy("agents/Deployment/bot-a", "audit", egress=egress())])
    pod = env.pod("bot-a")
    assert env.enforcer.enforced_pods == {pod.uid: "agents/Deployment/bot-a"}
    results = env.client(pod, f"connect:{FORBIDDEN}:9", f"send:{FORBIDDEN}:9")
    # nothing listens there: the connect reached the stack (refused), it was not denied
    assert [r["result"] for r in results] == ["ECONNREFUSED", "ok"]
    found = env.events("enforce.would_block")
    assert {(e.data["op"], e.data["dst_addr"], e.data["dst_port"], e.data["protocol"])
            for e in found} == {("connect", FORBIDDEN, 9, "tcp"), ("sendmsg", FORBIDDEN, 9, "udp")}
    assert all(e.pod is not None and e.pod.uid == pod.uid for e in found)
    assert all(e.pod.agent == "agents/Deployment/bot-a" for e in found if e.pod)
    assert all(e.data["response"] == "none (audit)" for e in found)
    assert not env.events("enforce.blocked")


def test_enforce_connect_gets_eperm_and_blocked(env: Env) -> None:
    env.enforcer.set_policies([policy("agents/Deployment/bot-b", "enforce", egress=egress())])
    pod = env.pod("bot-b")
    results = env.client(pod, f"connect:{FORBIDDEN}:9", f"send:{FORBIDDEN}:9")
    assert [r["result"] for r in results] == ["EPERM", "EPERM"]
    found = env.events("enforce.blocked")
    assert {(e.data["op"], e.data["dst_addr"]) for e in found} == {
        ("connect", FORBIDDEN), ("sendmsg", FORBIDDEN)}
    assert all(e.data["response"] == "EPERM" for e in found)


def test_allowed_cidr_and_port_pass_in_enforce(env: Env) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    try:
        env.enforcer.set_policies([policy(
            "agents/Deployment/bot-c", "enforce",
            egress=egress(cidrs=({"cidr": "127.0.0.1/32", "ports": [port]},)))])
        pod = env.pod("bot-c")
        results = env.client(pod, f"connect:127.0.0.1:{port}", "connect:127.0.0.1:9")
    finally:
        server.close()
    assert [r["result"] for r in results] == ["ok", "EPERM"]  # the port matters
    assert [e.data["dst_port"] for e in env.events("enforce.blocked")] == [9]


def test_domains_resolved_after_start_pass(env: Env) -> None:
    env.enforcer.set_policies([policy(
        "agents/Deployment/bot-d", "enforce",
        egress=egress({"name": "api.allowed.test", "ports": [9]}, "*.allowed.test"))])
    pod = env.pod("bot-d")
    assert env.enforcer.learned("agents/Deployment/bot-d") == []
    # before any answer the addresses are unknown: refused
    before = env.client(pod, f"connect:{ZONE['api.allowed.test']}:9")
    results = env.client(
        pod, "resolve:API.allowed.test", f"connect:{ZONE['api.allowed.test']}:9",
        f"connect:{ZONE['api.allowed.test']}:10", "resolve:cdn.allowed.test",
        f"connect:{ZONE['cdn.allowed.test']}:10", "resolve:evil.test",
        f"connect:{ZONE['evil.test']}:9")
    assert before[0]["result"] == "EPERM"
    assert [r["result"] for r in results] == [
        "ok", "ECONNREFUSED",   # api.allowed.test: learnt from the answer, port 9 allowed
        "EPERM",                # ... but not port 10
        "ok", "ECONNREFUSED",   # cdn.allowed.test via *.allowed.test, any port
        "ok", "EPERM"]          # evil.test was resolved (the resolver is always allowed)
    assert results[0]["addrs"] == [ZONE["api.allowed.test"]]
    assert env.enforcer.learned("agents/Deployment/bot-d") == sorted(
        [ZONE["api.allowed.test"], ZONE["cdn.allowed.test"]])


def test_forbidden_exec_killed_permitted_runs(env: Env) -> None:
    allowed = {"allowed": ["/usr/bin/true", sys.executable]}
    env.enforcer.set_policies([policy("agents/Deployment/bot-e", "enforce", exec=allowed)])
    pod = env.pod("bot-e")
    ok = pod.run(["/usr/bin/true"], check=False)
    killed = pod.run(["/usr/bin/id"], check=False, capture_output=True)
    assert ok.returncode == 0
    assert killed.returncode == -9 and killed.stdout == b""  # no line of id's own ran
    found = env.events("enforce.blocked")
    assert [(e.data["op"], e.data["filename"], e.data["response"]) for e in found] == [
        ("exec", "/usr/bin/id", "SIGKILL")]
    assert found[0].pod is not None and found[0].pod.uid == pod.uid


def test_forbidden_exec_runs_in_audit(env: Env) -> None:
    env.enforcer.set_policies([policy("agents/Deployment/bot-f", "audit",
                                      exec={"allowed": ["/usr/bin/true"]})])
    pod = env.pod("bot-f")
    done = pod.run(["/usr/bin/id", "-u"], capture_output=True, text=True)
    assert done.stdout.strip() == "0"
    found = env.events("enforce.would_block")
    assert [e.data["filename"] for e in found] == ["/usr/bin/id"]


def test_host_and_other_pods_untouched(env: Env) -> None:
    env.enforcer.set_policies([policy("agents/Deployment/bot-g", "enforce", egress=egress(),
                                      exec={"allowed": [sys.executable]})])
    enforced = env.pod("bot-g")
    other = env.pod("bystander")          # in the index, no policy names it
    unknown = env.pod("stranger", known=False)  # not even in the index
    assert set(env.enforcer.enforced_pods) == {enforced.uid}
    for pod in (other, unknown, None):
        results = env.client(pod, f"connect:{FORBIDDEN}:9", f"send:{FORBIDDEN}:9")
        assert [r["result"] for r in results] == ["ECONNREFUSED", "ok"]
    assert other.run(["/usr/bin/id"], check=False, capture_output=True).returncode == 0
    assert subprocess.run(["/usr/bin/id"], capture_output=True).returncode == 0
    assert env.events("enforce.blocked") == [] and env.events("enforce.would_block") == []
    # and the enforced one is refused, so the programs were live all along
    assert env.client(enforced, f"connect:{FORBIDDEN}:9")[0]["result"] == "EPERM"


def test_mode_changes_live_and_is_announced(env: Env) -> None:
    agent = "agents/Deployment/bot-h"
    env.enforcer.set_policies([policy(agent, "audit", egress=egress())])
    pod = env.pod("bot-h")
    links = list(env.enforcer._pods[pod.uid].links)
    assert env.client(pod, f"connect:{FORBIDDEN}:9")[0]["result"] == "ECONNREFUSED"
    env.enforcer.set_policies([policy(agent, "enforce", egress=egress())])
    assert env.enforcer._pods[pod.uid].links == links  # same programs, new map values
    assert env.client(pod, f"connect:{FORBIDDEN}:9")[0]["result"] == "EPERM"
    modes = [(e.data["agent"], e.data["mode"]) for e in env.events("enforce.mode")]
    assert modes == [(agent, "audit"), (agent, "enforce")]
    since = [e.data["since_ns"] for e in env.events("enforce.mode")]
    assert since[0] < since[1]


def test_block_log_is_rate_limited(env: Env) -> None:
    env.enforcer.set_policies([policy("agents/Deployment/bot-i", "enforce", egress=egress())])
    pod = env.pod("bot-i")
    before = env.enforcer.counters()
    results = env.client(pod, *[f"send:{FORBIDDEN}:{p}" for p in range(1000, 1060)])
    assert {r["result"] for r in results} == {"EPERM"}  # every one refused ...
    logged = env.events("enforce.blocked")
    after = env.enforcer.counters()
    suppressed = after["log_suppressed"] - before["log_suppressed"]
    assert after["violations"] - before["violations"] == 60
    # ... at most 20 logged per second of the kernel's clock, the rest counted, none lost
    seconds = Counter((e.ts - env.enforcer._offset_ns) // 1_000_000_000 for e in logged)
    assert max(seconds.values()) == 20
    assert len(logged) + suppressed == 60


def test_record_layout_matches_the_compiled_struct(env: Env) -> None:
    """decode.RawEvent mirrors struct enforce_event as the compiler laid it out (bcc
    builds the map's value type from the compiled program)."""
    import ctypes

    from collectors.enforce.decode import RawEvent

    leaf = env.enforcer._bpf[b"enf_scratch"].Leaf._type_  # per-CPU: an array of them
    assert ctypes.sizeof(leaf) == ctypes.sizeof(RawEvent)
    assert [(n, getattr(leaf, n).offset) for n, *_ in leaf._fields_] == [
        (n, getattr(RawEvent, n).offset) for n, *_ in RawEvent._fields_]


def test_a_pod_named_later_is_enforced_despite_the_cached_verdict(env: Env) -> None:
    """The kernel caches 'not enforced' per cgroup (every exec on the node asks); naming
    the pod in a policy later must void that verdict."""
    pod = env.pod("bot-j")
    assert pod.run(["/usr/bin/true"], check=False).returncode == 0  # cached: not enforced
    env.enforcer.set_policies([policy("agents/Deployment/bot-j", "enforce",
                                      exec={"allowed": ["/bin/sh"]})])
    assert pod.run(["/usr/bin/true"], check=False).returncode == -9
    env.enforcer.set_policies([])
    assert pod.run(["/usr/bin/true"], check=False).returncode == 0


def test_ipv6_and_v4_mapped_destinations(env: Env) -> None:
    env.enforcer.set_policies([policy("agents/Deployment/bot-k", "enforce", egress=egress(
        cidrs=({"cidr": "127.0.0.78/32", "ports": [9]},)))])
    pod = env.pod("bot-k")
    results = env.client(pod, "connect6:::1:9", "send6:::1:9", "connect6:::ffff:127.0.0.78:9",
                         f"connect6:::ffff:{FORBIDDEN}:9")
    # ::1 is not allowed (loopback off); a v4-mapped address is checked as the IPv4 one
    assert [r["result"] for r in results] == ["EPERM", "EPERM", "ECONNREFUSED", "EPERM"]
    found = env.events("enforce.blocked")
    assert [(e.data["op"], e.data["dst_addr"]) for e in found] == [
        ("connect", "::1"), ("sendmsg", "::1"), ("connect", FORBIDDEN)]


def test_merged_usr_spellings_of_an_allowed_program_run(env: Env) -> None:
    """A profile names /usr/bin/true (canonical); the shell may exec it as /bin/true."""
    env.enforcer.set_policies([policy("agents/Deployment/bot-l", "enforce",
                                      exec={"allowed": ["/usr/bin/true"]})])
    pod = env.pod("bot-l")
    assert pod.run(["/bin/true"], check=False).returncode == 0
    assert pod.run(["/usr/bin/true"], check=False).returncode == 0
    assert pod.run(["/bin/false"], check=False).returncode == -9
