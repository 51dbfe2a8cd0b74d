"""The story engine on event time: one cross-layer story per incident, none for benign input."""

from __future__ import annotations

import dataclasses
import random

import orjson
import pytest

from streams.content import load_content
from streams.engine import SECOND_NS, AgentState, EngineSettings, Message, StoryEngine
from streams.events import Envelope
from streams.ocsf import validate_detection_finding
from streams.replay import Replayer
from streams.stories import Story
from tests.streams.scenario import BOT, attack, exec_, learning

SETTINGS = EngineSettings(learning_ns=1800 * SECOND_NS, min_events=10)


def run(events: list[Envelope], settings: EngineSettings = SETTINGS) -> list[Story]:
    replayer = Replayer(StoryEngine(load_content(), settings))
    stories = replayer.feed(events)
    return Replayer.latest(stories + replayer.finish())


@pytest.fixture(scope="module")
def benign() -> list[Envelope]:
    return learning(seed=7, tickets=400)


@pytest.fixture(scope="module")
def attacked(benign: list[Envelope]) -> list[Envelope]:
    return benign + attack(benign[-1].ts)


def summary(story: Story) -> list[tuple[str, str, str, bool | None]]:
    return [(s.layer, s.kind, s.signal, (s.link or {}).get("causal")) for s in story.steps]


def interleave(queues: list[list[Envelope]], seed: int, skew_ns: list[int],
               ) -> list[Envelope]:
    """The queues merged as a consumer of several topics reads them: each queue's own order
    kept, each event delayed by up to its queue's skew at random (fetches of different
    sizes; CloudTrail's delivery minutes late)."""
    rng = random.Random(seed)
    keyed: list[tuple[int, int, Envelope]] = []
    for q, queue in enumerate(queues):
        last = 0
        for event in queue:
            last = max(last, event.ts + rng.randint(0, skew_ns[q]))
            keyed.append((last, q, event))
    return [e for _, _, e in sorted(keyed, key=lambda k: (k[0], k[1]))]


def test_benign_input_dependent_agent_gets_no_story(benign: list[Envelope]) -> None:
    more = learning(seed=8, tickets=200, start=benign[-1].ts)  # new tickets, same habits
    assert run(benign + more) == []


def test_the_attack_is_one_cross_layer_story_in_causal_order(attacked: list[Envelope]) -> None:
    [story] = run(attacked)
    kinds = [s.kind for s in story.steps]
    assert kinds == ["llm.request", "llm.tool_call", "mcp.call", "process.exec", "net.connect",
                     "net.connect", "cloud.api"]
    assert {s.layer for s in story.steps} == {"kernel", "l7", "cloud"}
    links = [s.link for s in story.steps]
    assert links[0] is None
    assert links[1]["type"] == "request/response"
    assert links[2]["type"] == "tool dispatch"
    assert links[3]["type"] == "tool call → spawned process"
    assert links[4] == {"to": 4, "type": "lineage", "causal": True}
    assert links[6]["type"] == "cloud endpoint"
    assert all(link["causal"] for link in links[1:5])
    assert story.activity == "close" and story.severity_id == 5
    assert story.title.startswith("Injected instructions → sensitive data access")
    assert "curl" in story.steps[3].what and "pid 6001" in story.steps[3].what
    assert "never ran /usr/bin/curl" in story.steps[3].why
    techniques = {t.uid for t in story.techniques}
    assert {"AML.T0051.001", "T1105", "T1555.006"} <= techniques


def test_story_ocsf_carries_evidence_objects_and_status_only_on_create(
        attacked: list[Envelope]) -> None:
    replayer = Replayer(StoryEngine(load_content(), SETTINGS))
    versions = replayer.feed(attacked) + replayer.finish()
    first, last = versions[0].to_ocsf(), versions[-1].to_ocsf()
    assert validate_detection_finding(first) == [] and validate_detection_finding(last) == []
    assert first["activity_id"] == 1 and first["status"] == "New"
    assert last["activity_id"] == 3 and "status" not in last
    assert [v.version for v in versions] == list(range(1, len(versions) + 1))
    exec_ev = next(e for e in last["evidences"] if e["name"] == "process.exec")
    assert exec_ev["process"]["pid"] == 6001 and exec_ev["process"]["parent_process"]["pid"]
    cloud_ev = next(e for e in last["evidences"] if e["name"] == "cloud.api")
    assert cloud_ev["api"]["operation"] == "GetSecretValue"
    assert last["unmapped"]["agentstory"]["observed"]["layers"] == ["cloud", "kernel", "l7"]


def test_topic_read_order_does_not_change_the_final_story(attacked: list[Envelope]) -> None:
    """Each source's own order is kept (as in its topic); the topics interleave differently:
    with small skews (as Kafka fetches), with one fast topic read up to half an hour behind
    the other (a worker catching up), and with CloudTrail up to 20 minutes late. Events wait
    for the kernel and L7 watermarks and are taken in event-time order, and an event from
    the learning span read late is learned, not judged.

    Known limit: a source the route has never seen cannot be waited for, so a replay that
    reads one fast topic whole before the first event of the other may still differ."""
    kernel, l7, cloud = ([e for e in attacked if e.source == s] for s in ("kernel", "l7", "cloud"))
    fast, behind, late = 5 * SECOND_NS, 1800 * SECOND_NS, 1200 * SECOND_NS
    orders = [sorted(attacked, key=lambda e: e.ts)] + [
        interleave([kernel, l7, cloud], seed=seed, skew_ns=skews)
        for seed in (3, 4, 5)
        for skews in ([fast, fast, late], [behind, fast, late], [fast, behind, late])]
    finals = []
    for order in orders:
        assert sorted(map(id, order)) == sorted(map(id, attacked))
        [story] = run(order)
        finals.append((story.uid, story.title, summary(story), story.risk_score))
    assert all(f == finals[0] for f in finals[1:])


def test_a_redelivered_message_is_not_applied_twice(attacked: list[Envelope]) -> None:
    engine = StoryEngine(load_content(), SETTINGS)
    state = engine.new_state(BOT.agent)
    for offset, event in enumerate(attacked):
        message = Message([event], ("agentstory.raw.kernel.v1", 0, offset), {})
        engine.apply(state, message)
        if offset == len(attacked) - 3:
            assert engine.apply(state, message) == []  # the crash-and-redeliver case
    assert state.stats["redelivered_skipped"] == 1


def test_state_survives_a_json_round_trip_mid_incident(attacked: list[Envelope]) -> None:
    """The worker writes the state to its changelog after every message."""
    replayer = Replayer(StoryEngine(load_content(), SETTINGS))
    half = len(attacked) - 4  # inside the attack
    versions = replayer.feed(attacked[:half])
    state = replayer.states[BOT.agent]
    replayer.states[BOT.agent] = AgentState.from_dict(orjson.loads(orjson.dumps(
        state.to_dict())))
    versions += replayer.feed(attacked[half:]) + replayer.finish()
    [restored] = Replayer.latest(versions)
    [uninterrupted] = run(attacked)
    assert summary(restored) == summary(uninterrupted)
    assert restored.uid == uninterrupted.uid and restored.risk_score == uninterrupted.risk_score


def test_one_signal_repeating_cannot_open_a_story_alone(benign: list[Envelope]) -> None:
    """Risk-based alerting: a new helper binary run many times is capped below threshold."""
    t = benign[-1].ts
    repeats = [exec_(t + i * SECOND_NS, 7000 + i, 4300, f"/opt/tools/helper{i % 3}",
                     ["helper"]) for i in range(30)]
    assert run(benign + repeats) == []


def test_a_critical_hit_opens_a_story_at_once_even_while_learning() -> None:
    shell = exec_(1_763_700_000 * SECOND_NS, 9000, 4300, "/bin/bash", ["bash", "-i"],
                  stdio={"stdin": {"type": "socket", "peer": "203.0.113.9:4444",
                                   "protocol": "tcp"},
                         "stdout": {"type": "socket", "peer": "203.0.113.9:4444",
                                    "protocol": "tcp"}})
    [story] = run([shell])
    assert story.signals == ("AS-K-REVSHELL",) and story.severity_id == 5
    assert "203.0.113.9:4444" in story.steps[0].why


def test_a_late_step_earlier_than_the_anchor_joins_and_keeps_the_uid(
        attacked: list[Envelope]) -> None:
    """The injected request reaches the engine after the rest of the chain."""
    inj = next(e for e in attacked if e.kind == "llm.request" and e.data["injection"]["flagged"])
    late_order = [e for e in attacked if e is not inj] + [inj]
    replayer = Replayer(StoryEngine(load_content(), SETTINGS))
    versions = replayer.feed(late_order) + replayer.finish()
    assert len({v.uid for v in versions}) == 1
    final = Replayer.latest(versions)[0]
    assert final.steps[0].kind == "llm.request"  # shown first, in event-time order


def test_a_benign_disposition_closes_the_story_and_teaches_the_baseline(
        attacked: list[Envelope]) -> None:
    engine = StoryEngine(load_content(), SETTINGS)
    replayer = Replayer(engine)
    # events are taken in event-time order once the watermark passes them: just past
    # the last one, the story is open (its quiet period has not passed)
    [story] = Replayer.latest(replayer.feed(attacked)
                              + replayer.finish(attacked[-1].ts + SECOND_NS))
    state = replayer.states[BOT.agent]
    curl = next(e for e in attacked if e.kind == "process.exec" and e.proc.pid == 6001)
    assert state.profile.score(curl).get("process.exe").novel
    [closed] = engine.dispose(state, story.uid, "benign", curl.ts + SECOND_NS, by="ana",
                              note="pen test")
    assert closed.uid == story.uid and closed.activity == "close"
    doc = closed.to_ocsf()
    assert doc["status"] == "Resolved" and doc["status_detail"].startswith("benign (ana)")
    assert not state.profile.score(curl).get("process.exe").novel  # learned from the verdict
    assert state.stats["accepted_by_disposition"] >= 4
    # The same curl again is no longer a story.
    again = [Envelope(e.kind, e.ts + 3600 * SECOND_NS, e.node, e.source, e.data, e.pod, e.proc)
             for e in attacked[-8:-3] if e.kind in ("process.exec",)]
    assert replayer.feed(again) + replayer.finish(again[-1].ts + SECOND_NS) == []


def test_a_malicious_disposition_keeps_the_values_unlearned(attacked: list[Envelope]) -> None:
    engine = StoryEngine(load_content(), SETTINGS)
    replayer = Replayer(engine)
    # events are taken in event-time order once the watermark passes them: just past
    # the last one, the story is open (its quiet period has not passed)
    [story] = Replayer.latest(replayer.feed(attacked)
                              + replayer.finish(attacked[-1].ts + SECOND_NS))
    state = replayer.states[BOT.agent]
    [marked] = engine.dispose(state, story.uid, "malicious", attacked[-1].ts, by="ana")
    assert marked.activity == "update" and marked.disposition["verdict"] == "malicious"
    replayer.finish()
    curl = next(e for e in attacked if e.kind == "process.exec" and e.proc.pid == 6001)
    assert state.profile.score(curl).get("process.exe").novel
    assert engine.dispose(state, "as-unknown", "benign", attacked[-1].ts) == []


def test_the_frozen_allowlist_runs_in_the_same_engine(attacked: list[Envelope]) -> None:
    """The comparison baseline: same content and aggregation, an exact set frozen after
    the learning span (EngineSettings.baseline), and its state round-trips too."""
    frozen = dataclasses.replace(SETTINGS, baseline="frozen")
    engine = StoryEngine(load_content(), frozen)
    replayer = Replayer(engine)
    stories = Replayer.latest(replayer.feed(attacked) + replayer.finish())
    assert stories and all(s.content_version.endswith("bfrozen") for s in stories)
    state = replayer.states[BOT.agent]
    assert state.profile.phase == "enforce"
    again = AgentState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert type(again.profile) is type(state.profile)


@pytest.mark.parametrize("policy", ["hash", "drop"])
def test_the_evidence_policy_keeps_tool_content_out_of_the_siem(
        attacked: list[Envelope], policy: str) -> None:
    """A PII-exfiltration story must not ship the PII: tool arguments are hashed or left
    out of the step's sentence, its evidence and the OCSF document."""
    settings = dataclasses.replace(SETTINGS, evidence_policy=policy)
    [story] = run(attacked, settings)
    doc = orjson.dumps(story.to_ocsf()).decode()
    # The argument's shape (verb and table) may stay: it says what was touched, not what
    # was in it. The SQL text itself (and any value in it) must not.
    assert "ssn, card_number" not in doc
    call = next(s for s in story.steps if s.kind == "llm.tool_call")
    if policy == "hash":
        assert call.evidence["arguments"].startswith("sha256:")
        assert "with arguments sha256:" in call.what
    else:
        assert "arguments" not in call.evidence


def test_steps_of_a_topic_read_far_behind_reopen_the_closed_story(
        attacked: list[Envelope]) -> None:
    """A consumer that drained the L7 topic long before the kernel one (a catch-up after
    an outage): the story closed on the fast topic's watermark takes the late kernel steps
    under the same uid instead of a second story."""
    attack_start = next(e.ts for e in attacked if e.kind == "llm.request"
                        and e.data["injection"]["flagged"])
    late_kernel = [e for e in attacked if e.source == "kernel" and e.ts >= attack_start]
    first = [e for e in attacked if e not in late_kernel]
    replayer = Replayer(StoryEngine(load_content(), SETTINGS))
    versions = replayer.feed(first)
    versions += replayer.finish(at=attack_start + 1800 * SECOND_NS)
    assert versions[-1].activity == "close"
    versions += replayer.feed(late_kernel) + replayer.finish()
    assert len({v.uid for v in versions}) == 1
    final = Replayer.latest(versions)[0]
    assert {"kernel", "l7", "cloud"} <= {s.layer for s in final.steps}


def test_a_blind_spot_of_the_pod_is_stated_in_its_story(attacked: list[Envelope]) -> None:
    """The L7 collector reports a TLS it cannot read (a Bun binary's BoringSSL): the
    story says so, and the report itself is no step."""
    from topologies.tail import render_story

    spot = Envelope("collector.blind_spot", attacked[0].ts, attacked[0].node, "l7",
                    {"layer": "l7", "path": "/app/agent", "tls": ["boringssl"]}, BOT)
    [story] = run([spot, *attacked])
    observed = story.to_ocsf()["unmapped"]["agentstory"]["observed"]
    assert observed["blind_spots"] == [{"layer": "l7", "path": "/app/agent",
                                        "tls": ["boringssl"]}]
    assert "collector.blind_spot" not in [s.kind for s in story.steps]
    assert "blind spot: l7 cannot read the TLS of /app/agent (boringssl)" in render_story(
        story.to_ocsf())
