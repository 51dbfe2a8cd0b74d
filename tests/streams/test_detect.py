"""The story engine on event time: learn, then judge; one story per incident."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.content import ContentError, load_content
from streams.detect import SECOND_NS, AgentState, EngineSettings, StoryEngine
from streams.events import Envelope, Pod, Proc
from streams.ocsf import validate_detection_finding
from streams.replay import Replayer
from streams.stories import Story

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_763_700_000_000_000_000
POD = Pod(uid="pod-1", namespace="support", name="bot-1", agent="support/Deployment/bot")
OTHER_POD = Pod(uid="pod-2", namespace="support", name="bot-2", agent="support/Deployment/bot")
SETTINGS = EngineSettings(learning_ns=10 * SECOND_NS, min_events=4,
                          incident_window_ns=60 * SECOND_NS)


def exec_event(exe: str, second: float, pod: Pod = POD, pid: int = 100) -> Envelope:
    return Envelope("process.exec", T0 + int(second * SECOND_NS), "node-a", "kernel",
                    {"argv": [exe, "-x"]}, pod=pod,
                    proc=Proc(pid=pid, ppid=1, comm=exe.rsplit("/", 1)[-1], exe=exe))


def learned(engine: StoryEngine) -> AgentState:
    state = engine.new_state(POD.agent)
    for i, exe in enumerate(["/usr/bin/python3", "/usr/bin/ls", "/usr/bin/cat"] * 4):
        assert engine.process(state, exec_event(exe, i)) == []
    return state


@pytest.fixture
def engine() -> StoryEngine:
    return StoryEngine(load_content(), SETTINGS)


def test_nothing_is_flagged_while_learning(engine: StoryEngine) -> None:
    state = engine.new_state(POD.agent)
    assert engine.process(state, exec_event("/bin/sh", 0)) == []
    assert engine.process(state, exec_event("/usr/bin/curl", 5)) == []
    assert state.profile.executables == {"/bin/sh": 1, "/usr/bin/curl": 1}


def test_learning_needs_both_time_and_events(engine: StoryEngine) -> None:
    state = engine.new_state(POD.agent)
    engine.process(state, exec_event("/usr/bin/python3", 0))
    # 30 s of event time but only 2 execs: still learning, the shell is learned.
    assert engine.process(state, exec_event("/bin/sh", 30)) == []
    assert "/bin/sh" in state.profile.executables


def test_a_known_executable_after_learning_is_quiet(engine: StoryEngine) -> None:
    state = learned(engine)
    assert engine.process(state, exec_event("/usr/bin/ls", 20)) == []


def test_a_new_shell_after_learning_is_a_high_story(engine: StoryEngine) -> None:
    state = learned(engine)
    [story] = engine.process(state, exec_event("/bin/sh", 20))
    assert story.signals == ("AS-EXEC-001",)
    assert story.severity_id == 4
    assert story.pod == POD
    assert story.baseline_phase == "monitoring"
    assert [t.uid for t in story.techniques] == ["T1059.004", "AML.T0053"]
    assert "/bin/sh" in story.steps[0].why and "3 learned executables" in story.steps[0].why


def test_flagged_executables_are_never_learned(engine: StoryEngine) -> None:
    state = learned(engine)
    for second in (20, 21, 22):
        engine.process(state, exec_event("/bin/sh", second))
    assert "/bin/sh" not in state.profile.executables
    assert state.profile.flagged["/bin/sh"] == 3


def test_one_incident_is_one_story_growing_in_versions(engine: StoryEngine) -> None:
    state = learned(engine)
    versions = [s for exe, sec in (("/bin/sh", 20), ("/usr/bin/id", 21), ("/usr/bin/curl", 22))
                for s in engine.process(state, exec_event(exe, sec))]
    assert len({s.uid for s in versions}) == 1
    assert [s.version for s in versions] == [1, 2, 3]
    last = versions[-1]
    assert [s.evidence["exe"] for s in last.steps] == ["/bin/sh", "/usr/bin/id", "/usr/bin/curl"]
    assert last.signals == ("AS-EXEC-001", "AS-EXEC-003", "AS-EXEC-002")


def test_a_quiet_gap_opens_a_new_story(engine: StoryEngine) -> None:
    state = learned(engine)
    [first] = engine.process(state, exec_event("/bin/sh", 20))
    [second] = engine.process(state, exec_event("/usr/bin/id", 20 + 61))
    assert first.uid != second.uid
    assert second.version == 1


def test_stories_are_per_pod_within_an_agent(engine: StoryEngine) -> None:
    state = learned(engine)
    [a] = engine.process(state, exec_event("/bin/sh", 20, POD))
    [b] = engine.process(state, exec_event("/bin/sh", 21, OTHER_POD))
    assert a.uid != b.uid and b.pod == OTHER_POD


def test_the_allow_list_is_a_tuning_hook() -> None:
    content = load_content(overrides={"allowed_new_executables": ["/bin/sh"]})
    engine = StoryEngine(content, SETTINGS)
    state = learned(engine)
    assert engine.process(state, exec_event("/bin/sh", 20)) == []


def test_replay_gives_the_same_story_keys(engine: StoryEngine) -> None:
    def run() -> list[str]:
        fresh = StoryEngine(load_content(), SETTINGS)
        state = learned(fresh)
        return [s.uid for e in ("/bin/sh", "/usr/bin/id") for s in
                fresh.process(state, exec_event(e, 30))]
    assert run() == run()


def test_state_survives_the_changelog_round_trip(engine: StoryEngine) -> None:
    state = learned(engine)
    engine.process(state, exec_event("/bin/sh", 20))
    restored = AgentState.from_dict(json.loads(json.dumps(state.to_dict())))
    [story] = engine.process(restored, exec_event("/usr/bin/id", 21))
    assert story.version == 2  # the open story came back from the table


def test_story_state_round_trips(engine: StoryEngine) -> None:
    state = learned(engine)
    [story] = engine.process(state, exec_event("/bin/sh", 20))
    assert Story.from_state(json.loads(json.dumps(story.to_state()))) == story


def test_stories_validate_as_ocsf_detection_findings(engine: StoryEngine) -> None:
    state = learned(engine)
    stories = [s for e, sec in (("/bin/sh", 20), ("/usr/bin/id", 21))
               for s in engine.process(state, exec_event(e, sec))]
    for story in stories:
        doc = story.to_ocsf()
        assert validate_detection_finding(doc) == []
        assert doc["class_uid"] == 2004 and doc["finding_info"]["uid"] == story.uid
    assert [s.to_ocsf()["activity_id"] for s in stories] == [1, 2]


def test_stable_signals_fire_on_their_samples() -> None:
    """Sigma-style regression: every stable signal's sample events must trigger it."""
    content = load_content()
    stable = [s for s in content.signals if s.status == "stable"]
    assert stable
    for signal in stable:
        for sample in signal.samples:
            doc = json.loads((ROOT / sample).read_text())
            settings = EngineSettings(
                learning_ns=int(doc["settings"]["learning_seconds"] * SECOND_NS),
                min_events=doc["settings"]["min_events"])
            replayer = Replayer(StoryEngine(content, settings))
            stories = replayer.feed(Envelope.from_dict(raw) for raw in doc["events"])
            expect = doc["expect"]
            assert len({s.uid for s in stories}) == expect["stories"], sample
            assert all(signal.id in s.signals for s in stories), sample
            assert {s.pod.uid for s in stories} == {expect["pod_uid"]}


def test_content_errors_name_the_signal(tmp_path: Path) -> None:
    bad = tmp_path / "signals.yaml"
    bad.write_text("version: 1\nlists: {}\nsignals:\n  - {id: X-1, name: n, title: t, "
                   "status: stable, level: high, match: {kind: process.exec}}\n")
    with pytest.raises(ContentError, match=r"X-1.*sample"):
        load_content(bad)
    bad.write_text("version: 1\nlists: {}\nsignals:\n  - {id: X-2, name: n, title: t, "
                   "status: test, level: severe, match: {kind: process.exec}}\n")
    with pytest.raises(ContentError, match=r"X-2.*level"):
        load_content(bad)
    bad.write_text("version: 1\nlists: {}\nsignals:\n  - {id: X-3, name: n, title: t, "
                   "status: test, level: low, match: {kind: process.exec, exe_in: nope}}\n")
    with pytest.raises(ContentError, match=r"X-3.*nope"):
        load_content(bad)


def test_only_kinds_the_content_looks_at_reach_the_engine(engine: StoryEngine) -> None:
    assert engine.wants(exec_event("/bin/sh", 0))
    assert not engine.wants(Envelope("file.open", T0, "node-a", "kernel", {"path": "/x"},
                                     pod=POD))
    assert not engine.wants(Envelope("process.exec", T0, "node-a", "kernel"))  # no pod
