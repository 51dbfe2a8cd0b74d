"""The recorder's pure parts: the event-time map, framing, CloudTrail from AWS calls."""

from __future__ import annotations

import orjson
import pytest

from collectors.cloudtrail.attribute import CloudAttributor
from collectors.cloudtrail.pipeline import CloudTrailPipeline
from collectors.kernel.sandbox import pod_manifest
from collectors.pods import PodIndex, PodInfo
from streams.events import Envelope, Pod, decode_frame
from topologies.record import FRAME_MAX, Timeline, frames_of, read_jsonl, write_jsonl
from topologies.scenarios.cloudtrail import records_from_calls
from topologies.scenarios.world import AwsCall

S = 1_000_000_000


def test_timeline_keeps_gaps_inside_an_activity_and_closes_those_between() -> None:
    tl = Timeline()
    tl.begin(event_ns=1000 * S, wall_ns=50 * S)   # activity 1 placed at t=1000 s
    tl.begin(event_ns=5000 * S, wall_ns=53 * S)   # activity 2 three wall seconds later
    assert tl.map(50 * S) == 1000 * S
    assert tl.map(51 * S + 7) - tl.map(50 * S) == S + 7  # internal timing kept exactly
    assert tl.map(53 * S + 2 * S) == 5002 * S            # next activity's own offset
    assert tl.map(49 * S) == 999 * S                     # before the first: its offset


def test_timeline_orders_activities_that_start_in_the_same_nanosecond() -> None:
    tl = Timeline()
    tl.begin(event_ns=0, wall_ns=10)
    tl.begin(event_ns=100, wall_ns=10)
    assert tl.map(11) == 100  # the later activity owns what follows


def _env(ts: int, uid: str = "p1", source: str = "kernel", kind: str = "process.exec"
         ) -> Envelope:
    return Envelope(kind=kind, ts=ts, node="n", source=source, pod=Pod(uid=uid))


def test_frames_group_by_topic_and_key_within_the_linger() -> None:
    events = [_env(0), _env(10), _env(20, uid="p2"), _env(10 * S),
              _env(5, source="l7", kind="http.request")]
    msgs = frames_of(events)
    shapes = [(m["topic"].split(".")[2], m["key"], len(m["frame"])) for m in msgs]
    assert shapes == [("kernel", "p1", 2), ("l7", "p1", 1), ("kernel", "p2", 1),
                      ("kernel", "p1", 1)]
    # a frame decodes back to the same envelopes
    assert decode_frame(orjson.dumps(msgs[0]["frame"])).events == events[:2]


def test_frames_are_capped_like_the_publisher() -> None:
    msgs = frames_of([_env(i) for i in range(FRAME_MAX + 3)])
    assert [len(m["frame"]) for m in msgs] == [FRAME_MAX, 3]


def test_cloud_frames_arrive_after_their_delivery_delay() -> None:
    cloud = _env(0, source="cloud", kind="cloud.api")
    later = _env(60 * S)
    msgs = frames_of([cloud, later], delay_ns=lambda e: 300 * S if e.source == "cloud" else 0)
    assert [m["topic"].split(".")[2] for m in msgs] == ["kernel", "cloud"]
    assert msgs[1]["timestamp"] == 300_000  # ms: event time + delay
    assert msgs[1]["frame"][0]["ts"] == 0  # the event keeps its own time


def test_jsonl_round_trip_is_byte_stable(tmp_path) -> None:
    msgs = frames_of([_env(i * S) for i in range(3)])
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    write_jsonl(a, msgs)
    write_jsonl(b, msgs)
    assert a.read_bytes() == b.read_bytes()
    assert list(read_jsonl(a)) == msgs


def _call(ts: int, op: str, **kw) -> AwsCall:
    return AwsCall(ts_ns=ts, service=kw.pop("service", "s3"), operation=op,
                   params=kw.pop("params", {}), access_key_id=kw.pop("akid", ""),
                   client=kw.pop("client", "127.0.0.1"), user_agent="Boto3/1.44",
                   host=kw.pop("host", "s3.us-west-2.amazonaws.com"), **kw)


def test_cloudtrail_records_attribute_through_irsa_to_the_pod() -> None:
    """The generated records pass the real normalizer, and the real attributor joins the
    later call to the pod through the AssumeRoleWithWebIdentity's access key id."""
    key = "ASIAEXAMPLEKEY000001"
    assume = _call(1 * S, "AssumeRoleWithWebIdentity", service="sts",
                   host="sts.us-west-2.amazonaws.com",
                   params={"RoleArn": "arn:aws:iam::111122223333:role/etl",
                           "RoleSessionName": "s1"},
                   response={"accessKeyId": key,
                             "subject": "system:serviceaccount:data:etl-pipeline",
                             "assumedRoleArn": "arn:aws:sts::111122223333:assumed-role/etl/s1",
                             "sessionName": "s1"})
    get = _call(2 * S, "GetObject", akid=key, params={"bucketName": "b", "key": "k.csv"},
                bytes_out=42)
    outside = _call(3 * S, "ListBuckets", akid=key, client="outside")
    records = records_from_calls([get, assume, outside], lambda t: t + 1000 * S,
                                 pod_ip="198.51.100.20", outside_ip="203.0.113.66")
    assert [r["eventName"] for r in records] == ["AssumeRoleWithWebIdentity", "GetObject",
                                                 "ListBuckets"]
    assert records[1]["userIdentity"]["accessKeyId"] == key
    assert records[1]["eventCategory"] == "Data"
    assert records[2]["sourceIPAddress"] == "203.0.113.66"
    index = PodIndex()
    index.apply("ADDED", PodInfo.from_manifest(pod_manifest(
        "0e5c1b8a-1111-4222-8333-944445555666", "etl-1", "data", "c" * 64,
        service_account="etl-pipeline")))
    pipeline = CloudTrailPipeline(CloudAttributor(index), "node-1")
    result = pipeline.process_file("r.json", orjson.dumps({"Records": records}))
    envelopes = [*result.envelopes, *pipeline.drain()]
    assert not result.dead_letters
    assert {e.data["action"] for e in envelopes} == {"AssumeRoleWithWebIdentity", "GetObject",
                                                     "ListBuckets"}
    get_env = next(e for e in envelopes if e.data["action"] == "GetObject")
    assert get_env.pod is not None and get_env.pod.name == "etl-1"
    assert get_env.ts == 1002 * S
    assert get_env.data["size"]["bytes_out"] == 42


@pytest.mark.parametrize("op", ["GetObject", "ListObjectsV2"])
def test_cloudtrail_for_an_unknown_key_still_normalizes(op: str) -> None:
    records = records_from_calls([_call(S, op, akid="ASIAUNKNOWN", params={"bucketName": "b"})],
                                 lambda t: t, pod_ip="1.1.1.1", outside_ip="2.2.2.2")
    result = CloudTrailPipeline(CloudAttributor(None), "n").process_file(
        "r.json", orjson.dumps({"Records": records}))
    assert not result.dead_letters
