"""Phases, drift on a new image, risk classes with reasons, inheritance by a new pod,
held values, path collapse and the features' generalization."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pytest

from models.features import (
    _EXTRACT,
    arg_shapes,
    canonical_exe,
    generalize_path,
    observations,
    registrable_domain,
)
from models.phases import AUDIT, ENFORCE_READY, LEARNING, PhaseSettings
from models.profile import AgentProfile, ProfileSettings
from streams.events import Envelope, Pod, Proc
from tests.models.gen import (
    DAY,
    HOUR,
    MINUTE,
    T0,
    connect_event,
    exec_event,
    open_event,
    support_agent,
    tool_call,
)

HIGH = 0.99
FAST = ProfileSettings(phases=PhaseSettings(window_ns=HOUR, min_span_ns=6 * HOUR,
                                            stable_windows=3))


def engine(profile: AgentProfile, events: Iterable[Envelope]) -> list[str]:
    """The engine's rules in miniature: score at arrival; a judged novel value with high
    surprise on a dimension that is not (re)learning is flagged and held, the rest is
    learned; phases are recorded after every event."""
    phases = []
    for e in events:
        s = profile.score(e)
        if any(x.novel and x.judged and x.surprise >= HIGH and not x.learning
               for x in s.novelty):
            profile.protect(e.ts)
            profile.hold(e)
        else:
            profile.learn(e)
        profile.advance(e.ts)
        if not phases or phases[-1] != profile.phase:
            phases.append(profile.phase)
    return phases


def test_stable_agent_moves_learning_audit_enforce_ready() -> None:
    p = AgentProfile("shop/Deployment/support", FAST)
    assert p.phase == LEARNING
    phases = engine(p, support_agent(T0, T0 + DAY))
    assert phases == [LEARNING, AUDIT, ENFORCE_READY]
    summary = p.summary()
    assert summary["phase"] == ENFORCE_READY and "≤" in summary["phase_reasons"][0]
    assert summary["does"][0] == "runs 1 program: /usr/bin/python3 (144x)"
    assert summary["does"][-1].startswith("calls 1 tool: get_order (1440x)")
    assert summary["dimensions"]["net.domain"]["top"][0] == {
        "value": "openai.com", "count": 480, "first_seen": "2026-09-21T14:13:20Z",
        "last_seen": "2026-09-22T14:10:20Z"}


def test_quiet_agent_leaves_learning_too() -> None:
    """Two execs an hour: each phase window is too thin on its own, so windows carry over
    until they hold enough evidence; the agent is judged after a few days."""
    p = AgentProfile("ops/CronJob/report")
    events = [exec_event(T0 + i * 30 * MINUTE, "/usr/bin/python3", ["python3", "/app/r.py"])
              for i in range(2 * 24 * 6)]
    phases = engine(p, events)
    assert phases[0] == LEARNING and p.phase in (AUDIT, ENFORCE_READY), phases


def _new_image(start: int, end: int) -> Iterable[Envelope]:
    """The same bot after an image update: node workers replace the python one."""
    tools = ("/usr/local/bin/node", "/usr/bin/git", "/usr/local/bin/npm", "/usr/bin/env")
    i = 0
    for e in support_agent(start, end):
        if e.kind == "process.exec":
            exe = tools[i % len(tools)] if i < 12 else tools[i % 2]
            i += 1
            yield exec_event(e.ts, exe, [exe.rsplit("/", 1)[-1], "/app/main.js"])
        else:
            yield e


def test_new_image_reopens_learning_only_on_the_drifting_dimensions() -> None:
    p = AgentProfile("shop/Deployment/support", FAST)
    engine(p, support_agent(T0 - DAY, T0 + DAY))
    assert p.phase == ENFORCE_READY
    # a new image: the first new programs are flagged (held, not learned) — yet they
    # are the evidence that reopens learning on process.exe
    first = p.score(next(e for e in _new_image(T0 + DAY, T0 + 2 * DAY)
                         if e.kind == "process.exec")).get("process.exe")
    assert first is not None and first.surprise >= HIGH and not first.learning
    phases = engine(p, (e for e in _new_image(T0 + DAY, T0 + DAY + 3 * HOUR)))
    assert LEARNING in phases
    assert "process.exe" in p.phases.relearning
    assert p.summary()["relearning"] == sorted(p.phases.relearning)
    assert not {"net.domain", "l7.tool_called", "l7.provider_model"} & p.phases.relearning
    # scores say which dimension is relearning
    s = p.score(exec_event(T0 + DAY + 3 * HOUR, "/usr/bin/perl"))
    exe = s.get("process.exe")
    assert exe is not None and exe.learning
    net = p.score(connect_event(T0 + DAY + 3 * HOUR, "new.example")).get("net.domain")
    assert net is not None and not net.learning and net.surprise >= HIGH
    # the new image keeps doing the same: it settles and the agent returns to audit
    phases = engine(p, _new_image(T0 + DAY + 3 * HOUR, T0 + 2 * DAY))
    assert p.phase in (AUDIT, ENFORCE_READY), phases
    assert not p.phases.relearning


def _learn_all(p: AgentProfile, events: Iterable[Envelope]) -> None:
    for e in events:
        p.learn(e)


def cloud(ts: int, service: str, action: str) -> Envelope:
    return Envelope("cloud.api", ts, "ct", "cloud",
                    {"service": service, "action": action, "resources": []},
                    pod=Pod("pod-1", agent="a/b/c"))


def test_risk_classes_with_reasons() -> None:
    support = AgentProfile("shop/Deployment/support")
    _learn_all(support, support_agent(T0, T0 + HOUR))
    r = support.risk()
    assert r.level == "low", r
    assert r.reasons == (
        "reaches 2 external destinations (openai.com: 20 times, slack.com: 20 times)",)

    coder = AgentProfile("dev/Deployment/coder")
    _learn_all(coder, [
        exec_event(T0 + i, "/bin/bash", ["bash", "-c", "make test"]) for i in range(30)])
    _learn_all(coder, [exec_event(T0 + 40, "/usr/bin/gcc", ["gcc", "x.c"])])
    _learn_all(coder, [open_event(T0 + 50, "/var/run/secrets/kubernetes.io/serviceaccount/token",
                                  sensitive={"rule": "sa", "level": "high", "class": "token"})])
    _learn_all(coder, [cloud(T0 + 60, "iam", "CreateAccessKey")])
    r = coder.risk()
    assert r.level == "high", r
    text = " | ".join(r.reasons)
    assert "code execution: runs shells (/usr/bin/bash: 30 times)" in text
    assert "compilers" in text and "inline code" in text
    assert "privilege" in text and "service-account token" in text and "iam:CreateAccessKey" in text

    data = AgentProfile("crm/Deployment/analyst")
    _learn_all(data, [tool_call(T0 + i, "query", {"sql": "SELECT email FROM customers"})
                      for i in range(5)])
    _learn_all(data, [cloud(T0 + 9, "secretsmanager", "GetSecretValue")])
    _learn_all(data, [connect_event(T0 + 10 + i, f"api{i}.vendor{i}.com") for i in range(6)])
    r = data.risk()
    assert r.level == "medium" or r.level == "high", r
    text = " | ".join(r.reasons)
    assert "data sensitivity" in text and "customers" in text and "reads secrets" in text
    assert "external reach: 6 distinct external destinations" in text
    summary = data.summary()
    assert summary["risk"]["level"] == r.level and summary["risk"]["reasons"] == list(r.reasons)


def test_new_pod_of_a_known_agent_inherits_its_profile() -> None:
    p = AgentProfile("shop/Deployment/support")
    engine(p, support_agent(T0, T0 + DAY))
    other = Pod(uid="pod-2", namespace="shop", name="bot-2", agent="shop/Deployment/support")
    e = Envelope("net.connect", T0 + DAY + 1, "node-2", "kernel",
                 {"family": "inet", "protocol": "tcp", "dst_addr": "203.0.113.9",
                  "dst_port": 443, "domain": "hooks.slack.com", "result": 0},
                 pod=other, proc=Proc(pid=7))
    assert all(not s.novel for s in p.score(e).novelty)


def test_held_value_learned_after_k_days_or_on_analyst_acceptance() -> None:
    p = AgentProfile("shop/Deployment/support")
    engine(p, support_agent(T0, T0 + DAY))
    k = p.settings.accept_after_days
    new = connect_event(T0 + DAY, "status.partner.io")
    for day in range(k):
        e = dataclasses.replace(new, ts=T0 + (1 + day) * DAY + 5 * MINUTE)
        assert p.score(e).get("net.domain").novel  # type: ignore[union-attr]
        learned = p.hold(e)
        p.hold(e)  # twice the same day counts once
        assert bool(learned) == (day == k - 1)
    assert not p.score(new).get("net.domain").novel  # type: ignore[union-attr]
    p.accept("process.exe", "/usr/bin/curl", T0 + 5 * DAY)
    curl = p.score(exec_event(T0 + 5 * DAY, "/bin/curl")).get("process.exe")
    assert curl is not None and not curl.novel


def test_directory_with_changing_children_collapses() -> None:
    p = AgentProfile("etl/Job/exports")
    greek = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi "
             "omicron pi rho sigma tau upsilon phi chi psi omega")
    names = [f"report_{w}" for w in greek.split()]
    for i in range(60):
        p.learn(open_event(T0 + i, f"/data/exports/{names[i % 24]}_{chr(97 + i // 24)}x.csv",
                           access="write"))
    assert "/data/exports" in p.paths.collapsed
    s = p.score(open_event(T0 + 100, "/data/exports/quarterly_summary.csv", access="write"))
    w = s.get("file.write")
    assert w is not None and w.value == "/data/exports/*" and not w.novel
    assert p.score(open_event(T0 + 100, "/etc/shadow")).get("file.read").novel  # type: ignore[union-attr]


# -- features -----------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "canon"), [
    ("/bin/bash", "/usr/bin/bash"), ("/usr/bin/bash", "/usr/bin/bash"),
    ("/sbin/ip", "/usr/bin/ip"), ("/usr/sbin/ip", "/usr/bin/ip"),
    ("/usr/bin/../bin/sh", "/usr/bin/sh"), ("/tmp/tmpa8x2k9q/payload", "/tmp/<rand>/payload"),
])
def test_canonical_exe(raw: str, canon: str) -> None:
    assert canonical_exe(raw) == canon


@pytest.mark.parametrize(("raw", "general"), [
    ("/tmp/tmp8x2k9q/123.txt", "/tmp/<rand>/<num>.txt"),
    ("/proc/4242/fd/7", "/proc/<num>/fd/<num>"),
    ("/var/cache/0b7c8d3e-1f2a-4b5c-9d8e-7f6a5b4c3d2e.json", "/var/cache/<uuid>.json"),
    ("/objects/ab/cdef0123456789ab", "/objects/ab/<hex>"),
    ("/home/app/.cache/pip/x8k2m9q4z7/pkg.whl", "/home/app/.cache/pip/<rand>/pkg.whl"),
    ("/app/requirements.txt", "/app/requirements.txt"),
    ("/app/gen_7_test.py", "/app/gen_<num>_test.py"),
    ("/app/gen_417_test.py", "/app/gen_<num>_test.py"),
    ("/usr/lib/x86_64-linux-gnu/libssl.so.3", "/usr/lib/x86_64-linux-gnu/libssl.so.3"),
    ("/data/2024-07-01/part-00042.json", "/data/<date>/part-<num>.json"),
    ("/logs/app-2024-07-01T10-22-03.log", "/logs/app-<date>.log"),
    ("/var/log/pods/ns_web-7d9f8b6c5-x2k4p_0b7c8d3e-1f2a-4b5c-9d8e-7f6a5b4c3d2e/c/0.log",
     "/var/log/pods/ns_web-<hex>-<rand>_<uuid>/c/<num>.log"),
    ("/usr/lib/python3.11/site-packages/numpy/__init__.py",
     "/usr/lib/python3.11/site-packages/numpy/__init__.py"),
])
def test_generalize_path(raw: str, general: str) -> None:
    assert generalize_path(raw) == general


def test_registrable_domain_uses_the_bundled_snapshot_only() -> None:
    assert _EXTRACT.suffix_list_urls == ()  # never fetched
    assert registrable_domain("a.b.api.openai.com") == "openai.com"
    assert registrable_domain("bucket.s3.eu-west-1.amazonaws.com") == "amazonaws.com"
    assert registrable_domain("10.0.0.7") == "10.0.0.7"
    assert registrable_domain("pod-42.svc") == "pod-42.svc"


def test_tool_argument_shapes() -> None:
    assert arg_shapes("db", {"q": "select * from Users u join orders o on u.id=o.uid"}) == [
        "db.q=sql SELECT users"]
    assert arg_shapes("db", {"q": "DELETE FROM audit_log"}) == ["db.q=sql DELETE audit_log"]
    assert arg_shapes("run", {"command": "bash -c 'id'"}) == ["run.command=shell bash"]
    assert arg_shapes("run", {"argv": ["/usr/bin/python3.12", "-c", "x"]}) == [
        "run.argv=shell python3"]
    assert arg_shapes("read", {"path": "/home/app/data/2024/07/r.csv"}) == [
        "read.path=path /home/app/data/<num>/<num>/"]
    assert arg_shapes("note", {"text": "hello", "n": 3}) == []


def test_observations_cover_every_layer() -> None:
    exec_ev = Envelope("process.exec", T0, "n", "kernel",
                       {"argv": ["python3", "-c", "import os"], "filename": "/usr/bin/python3.11",
                        "parent_comm": "node", "exe_origin": "written_in_pod",
                        "stdio": {"stdin": {"type": "socket"}, "stdout": {"type": "socket"},
                                  "stderr": {"type": "pipe"}},
                        "ns": {"mnt": 1, "net": 9}, "pod_ns": {"mnt": 1, "net": 2}},
                       proc=Proc(pid=1, exe="/usr/bin/python3.11"))
    got = {(o.dimension, o.value) for o in observations(exec_ev)}
    assert got == {
        ("process.exe", "/usr/bin/python3.11"),
        ("process.exe_origin", "written_in_pod python3"),
        ("process.parent_child", "node>python3"),
        ("process.argv_shape", "python3 -c <arg>"),
        ("process.interpreter_inline", "python3 inline"),
        ("process.stdio", "stdin=socket stdout=socket stderr=pipe"),
        ("process.namespace", "exec outside net"),
    }
    cloud_ev = Envelope("cloud.api", T0, "ct", "cloud", {
        "service": "s3", "action": "GetObject", "error": {"code": "AccessDenied"},
        "resources": [{"type": "AWS::S3::Object", "arn": "arn:aws:s3:::b/k/2024/1.json"}]})
    assert {(o.dimension, o.value) for o in observations(cloud_ev)} == {
        ("cloud.action", "s3:GetObject"), ("cloud.resource", "s3 b/k/<num>/<num>.json"),
        ("cloud.error", "s3:GetObject AccessDenied")}
    mcp_ev = Envelope("mcp.call", T0, "n", "l7", {
        "method": "tools/call", "tool": "run_sql", "host": "db-mcp:8080",
        "arguments": {"query": "UPDATE accounts SET x=1"}})
    assert {(o.dimension, o.value) for o in observations(mcp_ev)} == {
        ("l7.mcp_tool", "db-mcp:8080/run_sql"),
        ("l7.tool_arg_shape", "db-mcp:8080/run_sql.query=sql UPDATE accounts")}
    sys_ev = Envelope("syscall.profile", T0, "n", "kernel",
                      {"syscalls": {"read": 10, "ptrace": 1}, "total": 11})
    assert {o.value for o in observations(sys_ev)} == {"read", "ptrace"}
