"""Size limits: one setting for every client, dead letters that always fit, by-agent
output re-framed under the limit without the engine skipping a part as re-delivered."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest

from streams.byagent import decode_message
from streams.content import load_content
from streams.engine import EngineSettings, StoryEngine
from streams.events import Envelope, Pod, Proc, Rejected, dead_letter
from streams.limits import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ENV,
    Oversized,
    SizeLimits,
    bounded_dead_letter,
    fit_json,
    size_limits,
)
from streams.reframe import reframe

POD = Pod(uid="pod-1", namespace="t", name="bot-1", agent="t/Deployment/bot")
BUDGET = SizeLimits().value_bytes


def exec_event(i: int, argv_bytes: int) -> Envelope:
    return Envelope("process.exec", 1_763_700_000_000_000_000 + i * 1000, "node-a", "kernel",
                    {"argv": ["python3", "-c", "x" * argv_bytes]}, pod=POD,
                    proc=Proc(pid=100 + i, exe="/usr/bin/python3"))


def test_every_client_size_derives_from_the_one_setting() -> None:
    assert size_limits({}) == SizeLimits(DEFAULT_MAX_MESSAGE_BYTES)
    limits = size_limits({ENV: "8_000_000"})
    assert limits.producer_kwargs() == {"max_request_size": 8_000_000}
    assert limits.consumer_kwargs()["max_partition_fetch_bytes"] == 8_000_000
    assert limits.faust_settings() == {"producer_max_request_size": 8_000_000,
                                       "consumer_max_fetch_size": 8_000_000}
    assert limits.value_bytes < limits.message_bytes
    # Kafka's default message.max.bytes (1048588) takes the default's records.
    assert DEFAULT_MAX_MESSAGE_BYTES <= 1_048_588
    for bad in ("lots", "1000"):
        with pytest.raises(ValueError, match=ENV):
            size_limits({ENV: bad})


def test_a_small_dead_letter_is_the_plain_one() -> None:
    item = Rejected("not JSON: x", "frame", b"[{")
    assert bounded_dead_letter(item, BUDGET, stage="decode", topic="t", partition=0,
                               offset=3) == dead_letter(item, stage="decode", topic="t",
                                                        partition=0, offset=3)


@pytest.mark.parametrize("original", [
    b'{"argv": "' + b"x" * 5_000_000 + b'"}',  # the 5 MB argv
    b"\x01" * 3_000_000,  # escapes to six bytes each in JSON
    bytes(range(256)) * 20_000,  # not UTF-8: base64
    "é".encode() * 2_000_000,  # a cut inside a two-byte character
], ids=["argv", "escapes", "binary", "multibyte"])
def test_an_oversized_original_is_cut_and_hashed_under_the_limit(original: bytes) -> None:
    letter = bounded_dead_letter(Rejected("oversized: event", "event", original, 0), BUDGET,
                                 stage="route", topic="raw", partition=1, offset=9,
                                 key=b"k" * 5000)
    assert len(letter) <= BUDGET
    doc = orjson.loads(letter)
    assert doc["original_sha256"] == hashlib.sha256(original).hexdigest()
    assert doc["original_size"] == len(original) and doc["original_truncated"] is True
    kept = (doc["original"].encode() if "original" in doc
            else base64.b64decode(doc["original_b64"]))
    assert 1024 <= len(kept) < len(original) and original.startswith(kept)
    assert (doc["stage"], doc["topic"], doc["partition"], doc["offset"], doc["index"]) == (
        "route", "raw", 1, 9, 0)


def test_a_frame_over_the_limit_is_reframed_and_every_part_is_applied_once() -> None:
    events = [exec_event(i, 10_000) for i in range(300)]  # about 3 MB of events
    refs = [f"raw:2:40:{i}" for i in range(300)]
    parts = reframe(events, refs, ("raw", 2, 40), {"kernel": 5}, BUDGET)
    assert len(parts.values) >= 3 and parts.alone == []
    assert all(len(v) <= BUDGET for v in parts.values)
    messages = [decode_message(v) for v in parts.values]
    assert [e for m in messages for e in m.events] == events  # all of them, in order
    assert [r for m in messages for r in m.refs] == refs
    assert [m.origin for m in messages][:2] == [("raw", 2, 40), ("raw#1", 2, 40)]
    assert all(m.watermarks == {"kernel": 5} for m in messages)

    engine = StoryEngine(load_content(), EngineSettings(learning_ns=10**12))
    state = engine.new_state(POD.agent)
    for m in messages:
        engine.apply(state, m)
    assert state.stats.get("redelivered_skipped", 0) == 0
    learned = state.profile.to_dict()
    for m in messages:  # the whole frame again, as after a crash: nothing applied twice
        engine.apply(state, m)
    assert state.stats["redelivered_skipped"] == len(messages)
    assert state.profile.to_dict() == learned
    # The next frame's parts go through.
    nxt = reframe(events[:1], refs[:1], ("raw", 2, 41), {}, BUDGET)
    engine.apply(state, decode_message(nxt.values[0]))
    assert state.stats["redelivered_skipped"] == len(messages)


def test_an_event_too_big_alone_comes_back_apart() -> None:
    events = [exec_event(0, 100), exec_event(1, 5_000_000), exec_event(2, 100)]
    refs = ["raw:0:7:0", "raw:0:7:1", "raw:0:7:2"]
    parts = reframe(events, refs, ("raw", 0, 7), {}, BUDGET)
    [(event, ref, why)] = parts.alone
    assert event is events[1] and ref == "raw:0:7:1" and why.startswith("oversized: event of")
    [value] = parts.values
    assert decode_message(value).events == [events[0], events[2]]


def test_a_story_with_a_huge_string_is_cut_to_fit() -> None:
    doc = {"finding_info": {"uid": "as-1"}, "evidences": [{"argv": "y" * 3_000_000}],
           "message": "short"}
    value, cut = fit_json(doc, BUDGET)
    assert len(value) <= BUDGET and cut == 1
    out = orjson.loads(value)
    assert out["message"] == "short" and out["finding_info"] == {"uid": "as-1"}
    assert hashlib.sha256(b"y" * 3_000_000).hexdigest() in out["evidences"][0]["argv"]
    with pytest.raises(Oversized):
        fit_json({"k" * 2_000_000: 1}, BUDGET)  # keys are not cut


def test_an_event_too_deep_to_write_comes_back_apart() -> None:
    deep: dict[str, object] = {"a": 1}
    for _ in range(400):
        deep = {"a": deep}
    events = [exec_event(0, 10), Envelope("process.exec", 1, "n", "kernel", deep, pod=POD),
              exec_event(2, 10)]
    parts = reframe(events, ["r:0:1:0", "r:0:1:1", "r:0:1:2"], ("r", 0, 1), {}, BUDGET)
    [(_, ref, why)] = parts.alone
    assert ref == "r:0:1:1" and "nested deeper" in why
    [value] = parts.values
    assert decode_message(value).events == [events[0], events[2]]
