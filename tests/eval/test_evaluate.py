"""The harness: predicates, scoring against labels, replay determinism, overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.events import Envelope, Pod
from tests.eval.evaluate import (
    RECORDINGS,
    Recording,
    build_variants,
    load_recording,
    match_event,
    replay,
    score_recording,
)

UID = "0e5c1b8a-1111-4222-8333-944445555666"
OTHER = "1e5c1b8a-1111-4222-8333-944445555666"
S = 1_000_000_000


def test_predicates() -> None:
    event = {"kind": "llm.tool_call", "data": {"tool": "query_db", "arguments": {
        "sql": "SELECT ssn FROM customers"}, "argv": ["/bin/sh", "-i"], "port": 4444}}
    step = {"kind": "llm.tool_call", "where": {"data.tool": "query_db",
                                               "data.arguments.sql": {"contains": "ssn"}}}
    assert match_event(event, step)
    assert not match_event({**event, "kind": "llm.request"}, step)
    assert not match_event(event, {"kind": "llm.tool_call", "where": {"data.tool": "http"}})
    assert match_event(event, {"kind": "llm.tool_call", "where": {"data.argv": "-i"}})
    assert match_event(event, {"kind": "llm.tool_call", "where": {"data.port": {"gte": 4000},
                                                                   "data.tool": {"in": [
                                                                       "query_db"]}}})
    assert not match_event(event, {"kind": "llm.tool_call", "where": {"data.nope": {
        "contains": "x"}}})
    assert match_event(event, {"kind": "llm.tool_call", "where": {"data.arguments.sql": {
        "re": "^SELECT .* FROM"}}})


@dataclass
class FakeStep:
    kind: str
    ts: int
    link: Any = None


@dataclass
class FakeStory:
    uid: str
    pod: Pod
    steps: tuple[FakeStep, ...] = field(default_factory=tuple)


def _ev(kind: str, ts: int, uid: str = UID, **data: Any) -> Envelope:
    return Envelope(kind=kind, ts=ts, node="n", source="kernel", data=data, pod=Pod(uid=uid))


def _recording() -> Recording:
    events = [_ev("process.exec", 1 * S, argv=["ls"]),
              _ev("process.exec", 100 * S, argv=["sh", "-i"]),
              _ev("net.connect", 101 * S, domain="c2.example"),
              _ev("process.exec", 102 * S, argv=["id"]),
              _ev("process.exec", 3600 * S + 1, argv=["ls"]),
              _ev("process.exec", 50 * S, uid=OTHER, argv=["date"]),
              _ev("process.exec", 7200 * S + 50 * S, uid=OTHER, argv=["date"])]
    labels = {"attacks": [{"id": "a", "category": "reverse-shell",
                           "pod": {"uid": UID, "namespace": "n", "name": "p"}, "steps": [
                               {"name": "shell", "kind": "process.exec",
                                "where": {"data.argv": "-i"}},
                               {"name": "c2", "kind": "net.connect", "link": "causal",
                                "where": {"data.domain": "c2.example"}},
                               {"name": "never seen", "kind": "file.open",
                                "where": {"data.path": "/nope"}}]}],
              "benign": [{"uid": OTHER, "namespace": "n", "name": "q", "agent": "n/Deployment/q"},
                         {"uid": UID, "namespace": "n", "name": "p", "agent": "n/Deployment/p"}]}
    return Recording("r", "dev", events, labels)


def test_scoring_against_labels() -> None:
    rec = _recording()
    pod, other = Pod(uid=UID), Pod(uid=OTHER)
    first = FakeStory("s1", pod, (FakeStep("process.exec", 100 * S),))
    final = FakeStory("s1", pod, (FakeStep("process.exec", 100 * S),
                                  FakeStep("net.connect", 101 * S, {"causal": True}),
                                  FakeStep("process.exec", 102 * S)))
    noise = FakeStory("s2", other, (FakeStep("process.exec", 50 * S),))
    attacks, benign = score_recording(rec, [first, noise, final])
    (a,) = attacks
    assert a.detected and a.stories == 1
    assert a.ttd_s == 0.0  # the first version holds the first malicious event
    assert a.precision == pytest.approx(2 / 3)  # `id` is not a labelled step
    assert a.recall == 1.0  # both resolvable steps found; the unresolved one is reported
    assert a.unresolved_steps == ["never seen"]
    assert a.causal_right == "1/1"
    by_uid = {b.agent: b for b in benign}
    assert by_uid["n/Deployment/q"].false_stories == 1
    assert by_uid["n/Deployment/q"].hours == pytest.approx(2.0)
    assert by_uid["n/Deployment/p"].false_stories == 0  # its story is the attack's


def test_a_missed_attack_scores_as_missed() -> None:
    attacks, _ = score_recording(_recording(), [])
    assert not attacks[0].detected and attacks[0].stories == 0
    assert attacks[0].recall == 0.0 and attacks[0].ttd_s is None


def _smallest_recording() -> Path:
    folders = sorted(RECORDINGS.glob("dev/*/events.jsonl.gz"), key=lambda p: p.stat().st_size)
    return folders[0].parent


def test_replay_is_deterministic() -> None:
    """Two replays of the same recording give byte-identical story versions."""
    rec = load_recording(_smallest_recording())
    full = build_variants()[0]
    runs = [orjson.dumps([s.to_ocsf() for s in replay(full, rec)]) for _ in range(2)]
    assert runs[0] == runs[1]


def test_overrides_take_effect() -> None:
    default = build_variants()[0].make()
    changed = build_variants({"learning_ns": 7 * S}, threshold=7)[0].make()
    assert changed.engine.settings.learning_ns == 7 * S != default.engine.settings.learning_ns
    rules = getattr(changed.engine.content, "incidents", None)
    if rules is not None:
        assert rules.threshold == 7 != default.engine.content.incidents.threshold


def test_each_layer_alone_sees_only_its_events() -> None:
    variants = {v.name: v for v in build_variants()}
    assert variants["kernel-only"].sources == {"kernel"}
    assert variants["cloud-only"].sources == {"cloud"}
    assert variants["full"].sources == {"kernel", "l7", "cloud"}
    assert "frozen-allowlist" in variants
