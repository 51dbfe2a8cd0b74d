"""A river-style check suite (river/checks/common.py) run on every estimator/profile
class: input not mutated, serialization round trip (through JSON text), same input →
same result, also across interpreters whose ``hash(str)`` salt differs."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from models.features import PathTree, observations
from models.frozen import FrozenAllowlist
from models.novelty import Novelty, NoveltySettings, stable_key
from models.phases import Phases, PhaseSettings
from models.profile import AgentProfile, ProfileSettings, VersionMismatch
from models.rates import Rates, RatesSettings
from streams.events import Envelope
from tests.models.gen import DAY, HOUR, MINUTE, T0, research_agent, support_agent

ROOT = Path(__file__).resolve().parents[2]


def stream(hours: int = 6) -> list[Envelope]:
    """A mixed stream: a stable bot and an explorer, interleaved in event-time order."""
    events = list(support_agent(T0, T0 + hours * HOUR)) + list(
        research_agent(T0, T0 + hours * HOUR, n_values=5000))
    return sorted(events, key=lambda e: e.ts)


SMALL = ProfileSettings(novelty=NoveltySettings(max_values=16, sketch_capacity=512, min_obs=5),
                        rates=RatesSettings(min_windows=3),
                        phases=PhaseSettings(window_ns=HOUR, min_span_ns=2 * HOUR,
                                             stable_windows=2))


def feed_profile(events: list[Envelope], settings: ProfileSettings = SMALL) -> AgentProfile:
    p = AgentProfile("lab/Deployment/mixed", settings)
    for e in events:
        p.score(e)
        p.learn(e)
        p.advance(e.ts - MINUTE)
    return p


def json_round(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(orjson.dumps(doc))
    return out


# -- every class: (build fresh, feed one item, dump) -------------------------------------
def _novelty_items() -> Iterator[tuple[str, int]]:
    for i, e in enumerate(stream(2)):
        for o in observations(e):
            if o.dimension == "net.domain":
                yield o.value, e.ts + i


def test_input_not_mutated() -> None:
    events = stream(3)
    before = [copy.deepcopy(e.to_dict()) for e in events]
    p = feed_profile(events)
    f = FrozenAllowlist("x", learning_ns=HOUR)
    for e in events:
        f.score(e)
        f.learn(e)
        p.hold(e)
    assert [e.to_dict() for e in events] == before


@pytest.mark.parametrize("name", ["novelty", "rates", "phases", "paths", "profile", "frozen"])
def test_round_trip_and_determinism(name: str) -> None:
    events = stream(4)
    half, rest = events[: len(events) // 2], events[len(events) // 2 :]

    builders: dict[str, tuple[Callable[[], Any], Callable[[Any, Envelope], None],
                              Callable[[dict[str, Any]], Any]]] = {
        "novelty": (lambda: Novelty("net.domain", SMALL.novelty),
                    lambda m, e: [m.learn(o.value, e.ts) for o in observations(e)],
                    lambda d: Novelty.from_dict("net.domain", d, SMALL.novelty)),
        "rates": (lambda: Rates(SMALL.rates),
                  lambda m, e: (m.tally("n", 1.0, e.ts), m.close_until(e.ts - MINUTE)),
                  lambda d: Rates.from_dict(d, SMALL.rates)),
        "phases": (lambda: Phases(SMALL.phases),
                   lambda m, e: [m.note(o.dimension, i % 7 == 0, e.ts)
                                 for i, o in enumerate(observations(e))],
                   lambda d: Phases.from_dict(d, SMALL.phases)),
        "paths": (lambda: PathTree(threshold=5),
                  lambda m, e: m.learn(str(e.data.get("path", "/x"))),
                  lambda d: PathTree.from_dict(d, threshold=5)),
        "profile": (lambda: AgentProfile("a/b/c", SMALL),
                    lambda m, e: (m.score(e), m.learn(e), m.advance(e.ts - MINUTE)),
                    AgentProfile.from_dict),
        "frozen": (lambda: FrozenAllowlist("a/b/c", learning_ns=2 * HOUR),
                   lambda m, e: (m.score(e), m.learn(e)), FrozenAllowlist.from_dict),
    }
    build, feed, load = builders[name]
    a, b = build(), build()
    for e in half:
        feed(a, e)
        feed(b, e)
    assert a.to_dict() == b.to_dict()  # same input, same state
    restored = load(json_round(a.to_dict()))
    assert restored.to_dict() == json_round(a.to_dict())
    for e in rest:  # and the restored one goes on exactly like the original
        feed(a, e)
        feed(restored, e)
    assert json_round(restored.to_dict()) == json_round(a.to_dict())


def test_restored_profile_scores_like_the_original() -> None:
    events = stream(6)
    p = feed_profile(events[:-200])
    q = AgentProfile.from_dict(json_round(p.to_dict()))
    for e in events[-200:]:
        assert p.score(e) == q.score(e)


def test_learning_the_scored_observations_equals_learning_the_event() -> None:
    """The engine keeps ``Scores.observations`` while an event waits for the watermark
    and learns them later: the same state as learning the event itself."""
    events = stream(3)
    a, b = AgentProfile("a/b/c", SMALL), AgentProfile("a/b/c", SMALL)
    fa, fb = FrozenAllowlist("a/b/c", HOUR), FrozenAllowlist("a/b/c", HOUR)
    for e in events:
        sa, sb = a.score(e), b.score(e)
        assert sa == sb and sa.observations == tuple(observations(e))
        a.learn(e)
        b.learn_observations(sb.observations, e.ts)
        fa.learn(e)
        fb.learn_observations(fb.score(e).observations, e.ts)
    assert a.to_dict() == b.to_dict() and fa.to_dict() == fb.to_dict()


def test_profile_refuses_another_river_version() -> None:
    doc = feed_profile(stream(1)).to_dict()
    doc["river"] = "0.25.0"
    with pytest.raises(VersionMismatch, match="river"):
        AgentProfile.from_dict(doc)
    doc["format"] = 99
    with pytest.raises(VersionMismatch, match="format"):
        AgentProfile.from_dict(doc)


def test_eviction_never_makes_a_known_value_novel() -> None:
    nov = Novelty("net.domain", NoveltySettings(max_values=8, sketch_capacity=256))
    assert nov.sketch is None
    for i in range(8):
        nov.learn(f"d{i}.com", T0 + i)
    assert nov.sketch is None and nov.evicted == 0  # created only once eviction happens
    for i in range(8, 100):
        nov.learn(f"d{i}.com", T0 + i)
    assert nov.evicted > 0 and len(nov.values) <= 8 and nov.sketch is not None
    assert all(not nov.score(f"d{i}.com", T0 + 200).novel for i in range(100))
    restored = Novelty.from_dict("net.domain", json_round(nov.to_dict()),
                                 NoveltySettings(max_values=8, sketch_capacity=256))
    assert all(not restored.score(f"d{i}.com", T0 + 200).novel for i in range(100))
    unseen = sum(restored.score(f"new{i}.org", T0 + 200).novel for i in range(1000))
    assert unseen > 950  # 1 % design false-positive rate, well under capacity
    # the fast byte lookup answers exactly what river's own Set.__contains__ answers
    sk = restored.sketch
    assert sk is not None
    for v in [f"d{i}.com" for i in range(100)] + [f"new{i}.org" for i in range(1000)]:
        assert restored._in_sketch(v) == (stable_key(v) in sk)


_CHILD = """
import sys, orjson
from tests.models.test_checks import feed_profile, stream
doc = feed_profile(stream(3)).to_dict()
sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
"""


def test_same_state_across_interpreters_with_different_hash_salts() -> None:
    outs = []
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt, "PYTHONPATH": str(ROOT)}
        outs.append(subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, env=env,
                                   capture_output=True, check=True).stdout)
    assert outs[0] == outs[1]
    doc = orjson.loads(outs[0])
    assert any("sk" in d for d in doc["dims"].values())  # the sketch is part of it
    # and a profile built in another interpreter knows what it evicted here
    p = AgentProfile.from_dict(doc)
    for e in stream(3)[:2000]:
        for s in p.score(e).novelty:
            assert not s.novel, s


def test_bad_input_gives_fewer_observations_not_errors() -> None:
    odd = [
        Envelope("process.exec", T0, "n", "kernel", {"argv": "not-a-list", "stdio": 3}),
        Envelope("file.open", T0, "n", "kernel", {"path": 5, "result": "x"}),
        Envelope("net.connect", T0, "n", "kernel", {"dst_addr": "not-an-ip", "dst_port": "x"}),
        Envelope("net.dns", T0, "n", "kernel", {"direction": "query", "questions": [1, None]}),
        Envelope("llm.request", T0, "n", "l7", {"tools": "x"}),
        Envelope("llm.tool_call", T0, "n", "l7", {"tool": "t", "arguments": "{bad json"}),
        Envelope("cloud.api", T0, "n", "cloud", {"resources": [None, {"arn": 7}]}),
        Envelope("syscall.profile", T0, "n", "kernel", {"syscalls": ["x"], "total": "y"}),
        Envelope("collector.heartbeat", T0, "n", "kernel", {}),
    ]
    p = AgentProfile("a/b/c")
    for e in odd:
        p.score(e)
        p.learn(e)
        p.hold(e)
    p.advance(T0 + DAY)
    assert p.summary()["events_learned"] == len(odd)
