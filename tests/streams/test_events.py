"""The wire contract: envelopes and frames round-trip, and bad input is named, not raised."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.events import (
    FAMILIES,
    SOURCES,
    Envelope,
    InvalidEvent,
    Pod,
    Proc,
    Rejected,
    dead_letter,
    decode_frame,
    encode_frame,
)

text = st.text(max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
pods = st.builds(Pod, uid=st.text(min_size=1, max_size=36), namespace=text, name=text,
                 agent=text, service_account=text, container=text, container_id=text)
procs = st.builds(Proc, pid=st.integers(0, 2**22), ppid=st.integers(0, 2**22),
                  tid=st.integers(0, 2**22), uid=st.integers(-1, 2**32), comm=text, exe=text,
                  start_ns=st.integers(0, 2**63 - 1))
kinds = st.builds(lambda f, n: f"{f}.{n}", st.sampled_from(sorted(FAMILIES)),
                  st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True))
envelopes = st.builds(
    Envelope, kind=kinds, ts=st.integers(0, 2**63 - 1), node=st.text(min_size=1, max_size=20),
    source=st.sampled_from(sorted(SOURCES)), data=st.dictionaries(text, json_values, max_size=5),
    pod=st.none() | pods, proc=st.none() | procs,
)


@given(st.lists(envelopes, max_size=20))
def test_frames_round_trip(events: list[Envelope]) -> None:
    decoded = decode_frame(encode_frame(events))
    assert decoded.rejected == []
    assert decoded.events == events


@given(envelopes)
def test_a_single_object_is_a_frame_of_one(event: Envelope) -> None:
    assert decode_frame(event.to_json()).events == [event]


@given(st.binary(max_size=200))
def test_decode_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    decoded = decode_frame(raw)
    for item in decoded.rejected:
        assert item.reason


GOOD = {"v": 1, "kind": "process.exec", "ts": 1763700000123456789, "node": "node-a",
        "source": "kernel", "pod": {"uid": "u-1"}, "proc": {"pid": 4242}, "data": {}}


@pytest.mark.parametrize(("change", "field"), [
    ({"v": 2}, "v"),
    ({"kind": "exec"}, "kind"),
    ({"kind": "telepathy.read"}, "kind"),
    ({"ts": "yesterday"}, "ts"),
    ({"ts": -1}, "ts"),
    ({"ts": True}, "ts"),
    ({"node": ""}, "node"),
    ({"source": "satellite"}, "source"),
    ({"data": [1, 2]}, "data"),
    ({"pod": {"namespace": "x"}}, "pod.uid"),
    ({"pod": {"uid": "u", "name": 7}}, "pod.name"),
    ({"proc": {"pid": "1"}}, "proc.pid"),
    ({"proc": {"pid": 1, "comm": 3}}, "proc.comm"),
])
def test_validation_names_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        Envelope.from_dict({**GOOD, **change})
    assert info.value.field == field
    assert field in str(info.value)


def test_one_bad_envelope_does_not_spoil_the_frame() -> None:
    bad = {**GOOD, "ts": "soon"}
    decoded = decode_frame(orjson.dumps([GOOD, bad, GOOD]))
    assert len(decoded.events) == 2
    [rejected] = decoded.rejected
    assert (rejected.index, rejected.field) == (1, "ts")
    assert orjson.loads(rejected.original) == bad


@pytest.mark.parametrize("raw", [b"{not json", b"42", b'"frame"', b"null"])
def test_a_non_frame_is_rejected_whole(raw: bytes) -> None:
    decoded = decode_frame(raw)
    assert decoded.events == []
    [rejected] = decoded.rejected
    assert rejected.field == "frame"
    assert rejected.original == raw


def test_keys_follow_the_contract() -> None:
    assert Envelope.from_dict(GOOD).key == "u-1"
    host = Envelope("process.exec", 1, "node-a", "kernel")
    assert host.key == "node/node-a"
    cloud = Envelope("cloud.api", 1, "n", "cloud",
                     {"principal": {"arn": "arn:aws:iam::1:role/x"}})
    assert cloud.key == "arn:aws:iam::1:role/x"


def test_dead_letter_keeps_the_original_bytes() -> None:
    text_doc = orjson.loads(dead_letter(Rejected("ts: bad", "ts", b'{"ts":"x"}', 3),
                                        stage="decode", topic="t", partition=1, offset=9,
                                        key=b"k"))
    assert text_doc["original"] == '{"ts":"x"}'
    assert (text_doc["reason"], text_doc["index"], text_doc["offset"]) == ("ts: bad", 3, 9)
    binary = orjson.loads(dead_letter(Rejected("not JSON", "frame", b"\xff\x00"),
                                      stage="decode"))
    assert binary["original_b64"] == "/wA="
