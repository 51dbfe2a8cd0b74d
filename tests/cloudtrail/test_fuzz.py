"""Whatever a log file holds, the collector neither crashes nor loses count: every
record comes out as an envelope or a dead letter with a reason."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.cloudtrail.attribute import CloudAttributor
from collectors.cloudtrail.normalize import RecordError, normalize
from collectors.cloudtrail.pipeline import CloudTrailPipeline
from streams.events import decode_frame, encode_frame

from . import records as r

scalars = st.none() | st.booleans() | st.integers(-10, 10**12) | st.text(max_size=12)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)

TEMPLATES = [
    r.irsa_assume("2026-11-21T05:20:00Z", "support", "support-bot", "ASIAEXAMPLEIRSAKEY01"),
    r.pod_identity_assume("2026-11-21T05:20:00Z", "u", "p", "ns", "sa", "ASIAPODIDENTITYKEY01"),
    r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role("ASIAEXAMPLEIRSAKEY01"), "b", "k"),
    r.node_role_call("2026-11-21T05:21:00Z"),
]
FIELDS = sorted({k for t in TEMPLATES for k in t} | {"additionalEventData", "errorCode"})


@st.composite
def damaged(draw: st.DrawFn) -> Any:
    """A real record with some fields (top level or one level down) replaced."""
    rec = orjson.loads(orjson.dumps(draw(st.sampled_from(TEMPLATES))))
    for _ in range(draw(st.integers(1, 4))):
        field = draw(st.sampled_from(FIELDS))
        if isinstance(rec.get(field), dict) and rec[field] and draw(st.booleans()):
            sub = draw(st.sampled_from(sorted(rec[field])))
            rec[field][sub] = draw(json_values)
        else:
            rec[field] = draw(json_values)
    return rec


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(damaged() | json_values, min_size=1, max_size=6))
def test_every_record_is_published_or_dead_lettered(recs: list[Any]) -> None:
    for rec in recs:
        with contextlib.suppress(RecordError):  # anything else is a bug
            normalize(rec)
    pipe = CloudTrailPipeline(CloudAttributor(None, grace_s=60), node="fuzz")
    result = pipe.process_file("fuzz.json", orjson.dumps({"Records": recs}))
    envelopes = result.envelopes + pipe.drain()
    decoded = decode_frame(encode_frame(envelopes))  # what the raw topic carries
    assert decoded.rejected == [] and len(decoded.events) == len(envelopes)
    released = len(envelopes)
    assert released + len(result.dead_letters) == len(recs)
    assert pipe.counts["rejected_internal"] == 0
    for _, message in result.dead_letters:
        assert orjson.loads(message)["reason"]


MUTATIONS = (
    lambda v: v[:-1],           # closing quote lost
    lambda v: v + " x",         # garbage after a value
    lambda v: v + "]",          # a stray bracket
    lambda v: v[:-1] + "\t\"",  # a raw control character inside a string
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(n=st.integers(1, 25), docs=st.integers(1, 3), indent=st.sampled_from([None, 2, 4]),
       sort_keys=st.booleans(), sep=st.sampled_from(["", "\n"]), gz=st.booleans(),
       damage=st.lists(st.tuples(st.integers(0, 24), st.integers(0, len(MUTATIONS) - 1)),
                       max_size=3))
def test_damaged_and_concatenated_files_add_up(
        n: int, docs: int, indent: int | None, sort_keys: bool, sep: str, gz: bool,
        damage: list[tuple[int, int]]) -> None:
    """Records cut into concatenated documents, some damaged: every record is either
    recovered or counted as lost in the file's one dead letter, and the recovered ones
    are exactly the undamaged ones, in order."""
    import gzip
    import json

    recs = [r.s3_get_object(f"2026-11-21T05:{i // 60:02d}:{i % 60:02d}Z",
                            r.assumed_role("ASIAEXAMPLEIRSAKEY01"), "corp", f"obj-{i}")
            for i in range(n)]
    bounds = sorted({0, n, *(min(n, (k + 1) * n // docs) for k in range(docs))})
    texts = [json.dumps({"Records": recs[a:b]}, indent=indent, sort_keys=sort_keys)
             for a, b in itertools.pairwise(bounds)]
    text = sep.join(texts)
    hurt = {i: m for i, m in damage if i < n}
    for i, m in hurt.items():
        needle = f'"obj-{i}"'
        assert text.count(needle) == 1
        text = text.replace(needle, MUTATIONS[m](needle))
    raw = text.encode()
    if gz:
        raw = gzip.compress(raw)
    pipe = CloudTrailPipeline(CloudAttributor(None, grace_s=60), node="fuzz")
    result = pipe.process_file("fuzz.json", raw)
    envelopes = result.envelopes + pipe.drain()
    assert [e.data["params"]["key"] for e in envelopes] == [
        f"obj-{i}" for i in range(n) if i not in hurt]
    assert len(envelopes) + result.lost == n
    assert result.lost == len(hurt)
    # one dead letter for a damaged file, or one per damaged line of a JSON-lines file
    assert (len(result.dead_letters) > 0) == bool(hurt)
    assert len(result.dead_letters) <= (1 if not sep else docs)
    assert pipe.counts["rejected_internal"] == 0
