"""Whatever a log file holds, the collector neither crashes nor loses count: every
record comes out as an envelope or a dead letter with a reason."""

from __future__ import annotations

import contextlib
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
