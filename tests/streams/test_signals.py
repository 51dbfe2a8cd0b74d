"""Every stable signal fires on its sample events and stays quiet on its near misses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.content import DEFAULT_CONTENT, ContentError, load_content
from streams.engine import SECOND_NS, AgentState, EngineSettings, StoryEngine
from streams.events import Envelope, Proc
from streams.replay import Replayer
from tests.streams.scenario import BOT, NODE, T0, learning

SAMPLES = yaml.safe_load((Path(__file__).parent / "samples" / "signals.yaml").read_text())
SETTINGS = EngineSettings(learning_ns=1800 * SECOND_NS, min_events=10)
CONTENT = load_content()
SOURCES = {"process": "kernel", "file": "kernel", "net": "kernel", "llm": "l7", "mcp": "l7",
           "http": "l7", "cloud": "cloud", "enforce": "kernel"}


def envelope(raw: dict[str, Any], start: int) -> Envelope:
    proc = raw.get("proc")
    return Envelope(raw["kind"], start + int(raw.get("at", 0) * SECOND_NS), NODE,
                    raw.get("source", SOURCES[raw["kind"].split(".")[0]]), raw.get("data", {}),
                    pod=BOT, proc=Proc(**proc) if proc else None)


def background(name: str) -> tuple[StoryEngine, AgentState, int]:
    engine = StoryEngine(CONTENT, SETTINGS)
    if name == "none":
        return engine, engine.new_state(BOT.agent), T0
    replayer = Replayer(engine)
    events = learning(seed=7, tickets=400)
    replayer.feed(events)
    replayer.finish(at=events[-1].ts)  # everything learned, the windows up to here closed
    state = replayer.states[BOT.agent]
    assert state.profile.phase != "learning"
    return engine, state, events[-1].ts + 60 * SECOND_NS


def hits_of(case: dict[str, Any], events: list[dict[str, Any]]) -> tuple[set[str], AgentState]:
    engine, state, start = background(case["background"])
    found: set[str] = set()
    for raw in events[:-1]:
        engine.evaluate(state, envelope(raw, start))
    last = envelope(events[-1], start)
    for i in range(case.get("repeat", 1)):
        event = Envelope(last.kind, last.ts + i * SECOND_NS // 10, last.node, last.source,
                         last.data, last.pod, last.proc)
        found |= {h.signal for h in engine.evaluate(state, event)}
    return found, state


def test_every_stable_signal_has_samples() -> None:
    stable = {s.id for s in CONTENT.signals if s.status == "stable"}
    assert stable <= set(SAMPLES), sorted(stable - set(SAMPLES))
    assert set(SAMPLES) <= {s.id for s in CONTENT.signals}


@pytest.mark.parametrize("signal_id", sorted(SAMPLES))
def test_signal_fires_on_its_samples(signal_id: str) -> None:
    case = SAMPLES[signal_id]
    found, state = hits_of(case, case["fires"])
    if CONTENT.signal(signal_id).is_marker:
        assert set(case["marks"]) <= set(state.pods[BOT.uid].ctx.marks)
    else:
        assert signal_id in found, found


@pytest.mark.parametrize("signal_id", sorted(s for s in SAMPLES if SAMPLES[s]["quiet"]))
def test_signal_stays_quiet_on_its_near_misses(signal_id: str) -> None:
    case = SAMPLES[signal_id]
    for near_miss in case["quiet"]:
        found, _ = hits_of({**case, "repeat": 1}, [near_miss])
        assert signal_id not in found, near_miss


def test_a_malformed_catalogue_fails_naming_the_signal(tmp_path: Path) -> None:
    doc = yaml.safe_load(DEFAULT_CONTENT.read_text())
    doc["signals"][1]["level"] = "severe"
    bad = tmp_path / "signals.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(ContentError, match=r"signals/1/level \(AS-K-SHELL-NEW\)"):
        load_content(bad)


def test_a_sequence_must_wait_for_a_mark_some_signal_records(tmp_path: Path) -> None:
    doc = yaml.safe_load(DEFAULT_CONTENT.read_text())
    for signal in doc["signals"]:
        signal.pop("marks", None)
    bad = tmp_path / "signals.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(ContentError, match="mark 'sa_token_read' that no signal records"):
        load_content(bad)


def test_tuning_hooks_override_lists_without_touching_the_engine() -> None:
    content = load_content(overrides={"apiserver_clients": [BOT.agent]})
    case = SAMPLES["AS-K-APISERVER-AFTER-TOKEN"]
    engine = StoryEngine(content, SETTINGS)
    state = engine.new_state(BOT.agent)
    found: set[str] = set()
    for raw in case["fires"]:
        found |= {h.signal for h in engine.evaluate(state, envelope(raw, T0))}
    assert "AS-K-APISERVER-AFTER-TOKEN" not in found


def test_a_suppression_is_data_and_is_counted(tmp_path: Path) -> None:
    doc = yaml.safe_load(DEFAULT_CONTENT.read_text())
    doc["suppressions"] = [{"signal": "AS-K-DOMAIN-NEW", "agent": "support/*",
                            "value": "exfil-bin.io", "reason": "our own paste service"}]
    path = tmp_path / "signals.yaml"
    path.write_text(yaml.safe_dump(doc))
    content = load_content(path)
    engine, state, start = background("support-bot")
    engine = StoryEngine(content, SETTINGS)
    case = SAMPLES["AS-K-DOMAIN-NEW"]
    found = {h.signal for h in engine.evaluate(state, envelope(case["fires"][0], start))}
    assert "AS-K-DOMAIN-NEW" not in found
    assert engine.evaluator.suppressed == 1


def test_a_new_conversation_ends_what_injected_content_marked() -> None:
    """The next ticket's tool calls are not 'after injection': a clean request (the
    injected content no longer in the conversation) clears the mark."""
    case = SAMPLES["AS-L7-TOOL-AFTER-INJECTION"]
    flagged, call = case["fires"]
    clean = {**flagged, "data": {**flagged["data"], "injection": {
        "score": 0.0, "flagged": False, "indicators": [], "channel": ""}}}
    found, _ = hits_of({"background": "none"}, [flagged, {**clean, "at": 0.5}, call])
    assert "AS-L7-TOOL-AFTER-INJECTION" not in found
    found, _ = hits_of({"background": "none"}, [flagged, call])
    assert "AS-L7-TOOL-AFTER-INJECTION" in found
