"""The near-real-time source: CloudTrail management events through EventBridge → SQS,
against moto's server on loopback (the SQS wire protocol, boto3 unchanged)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from collectors.cloudtrail import cli
from collectors.cloudtrail.collector import MemorySink
from collectors.cloudtrail.dedup import EventIdDedup
from collectors.cloudtrail.sources import SqsSource

from . import records as r
from .conftest import RESEARCH_UID
from .test_collector import cli_args
from .test_sources import make_bucket, put_log, trail_key

KEY = "ASIARESEARCHIRSAKEY1"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def sqs(moto_endpoint: str, aws_env: None) -> Any:
    client = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    yield client
    client.close()


def make_queue(sqs: Any, name: str, *, visibility_s: int = 60) -> str:
    """A queue as deploy docs set it up: a visibility timeout longer than a publish
    batch takes, and a redrive policy to its own dead-letter queue."""
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    return str(sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": str(visibility_s),
        "ReceiveMessageWaitTimeSeconds": "20",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
    })["QueueUrl"])


def send(sqs: Any, queue: str, *bodies: Any) -> None:
    for body in bodies:
        text = body if isinstance(body, str) else orjson.dumps(body).decode()
        sqs.send_message(QueueUrl=queue, MessageBody=text)


def in_queue(sqs: Any, queue: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages",
                                        "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"])


def story(t0: str = "2026-11-21T05:20") -> list[dict[str, Any]]:
    """An agent's IRSA session, then the calls an attacker would make with it."""
    role = r.assumed_role(KEY, web_identity=True)
    return [
        r.irsa_assume(f"{t0}:00Z", "research", "research-agent", KEY),
        r.api_call(f"{t0}:05Z", role, "secretsmanager.amazonaws.com", "GetSecretValue",
                   {"secretId": "prod/db"}),
        r.ec2_get_password_data(f"{t0}:06Z", role),
        r.ssm_send_command(f"{t0}:07Z", role),
        r.cloudtrail_stop_logging(f"{t0}:08Z", role),
        r.console_login(f"{t0}:09Z", "Failure"),
    ]


async def test_sqs_once_publishes_then_deletes(sqs: Any, moto_endpoint: str,
                                               pods_file: Path, tmp_path: Path) -> None:
    queue = make_queue(sqs, "ct-once")
    recs = story()
    send(sqs, queue, *(r.eventbridge(x) for x in recs), "not json at all",
         {"detail-type": "AWS API Call via CloudTrail", "detail": {"eventName": "x"}})
    args = cli_args("--sqs", queue, "--sqs-endpoint-url", moto_endpoint, "--region",
                    "us-east-1", "--sqs-wait-seconds", "1", "--pods-file", str(pods_file),
                    "--checkpoint", str(tmp_path / "cp.json"))
    sink = MemorySink()
    assert await cli._run(args, sink) == 0
    by = {e.data["action"]: e for e in sink.envelopes}
    assert sorted(by) == sorted(x["eventName"] for x in recs)
    for action in ("GetSecretValue", "GetPasswordData", "SendCommand", "StopLogging"):
        assert by[action].key == RESEARCH_UID  # the one pod of its service account
        assert by[action].data["attribution"]["via"] == "irsa"
    assert by["GetPasswordData"].data["resources"] == [
        {"type": "AWS::EC2::Instance", "id": "i-0a1b2c3d4e5f60718"}]
    assert by["ConsoleLogin"].data["outcome"] == "failure"
    reasons = sorted(orjson.loads(m)["field"] for _, m in sink.dead_letters)
    assert reasons == ["eventVersion", "file"]  # one record we refuse, one bad body
    assert in_queue(sqs, queue) == 0  # all deleted: published, or dead-lettered


async def test_sqs_message_stays_until_the_broker_acks(sqs: Any, moto_endpoint: str,
                                                       aws_env: None) -> None:
    from collectors.cloudtrail.attribute import CloudAttributor
    from collectors.cloudtrail.collector import CloudTrailCollector
    from collectors.cloudtrail.pipeline import CloudTrailPipeline

    queue = make_queue(sqs, "ct-ack", visibility_s=1)
    send(sqs, queue, r.eventbridge(r.iam_create_access_key("2026-11-21T05:21:50Z",
                                                           r.iam_user())))
    source = SqsSource(sqs, queue, wait_s=1)
    sink = MemorySink(fail_next=1)
    pipe = CloudTrailPipeline(CloudAttributor(None), node="t", dedup=EventIdDedup())
    col = CloudTrailCollector(source, pipe, sink, retry_backoff_s=(0.001, 0.001))
    items = source.list_new()
    assert len(items) == 1
    col.stop()  # a flush failure while stopping raises instead of retrying
    for env in pipe.process_file(items[0].uri, source.read(items[0])).envelopes:
        sink.submit(env)
    with pytest.raises(ConnectionError):
        await col._commit(items)
    assert source.counts["deleted"] == 0
    # not deleted: after the visibility timeout it is received again; the pipeline
    # would drop the repeat by eventID, and this time the flush goes through
    again: list[Any] = []
    for _ in range(10):
        again = source.list_new()
        if again:
            break
    assert len(again) == 1
    assert pipe.process_file(again[0].uri, source.read(again[0])).envelopes == []
    assert pipe.counts["duplicates"] == 1
    col._stopping.clear()
    await col._commit(again)
    assert source.counts["deleted"] == 1 and in_queue(sqs, queue) == 0


async def test_s3_and_sqs_together_publish_each_event_once(
        sqs: Any, moto_endpoint: str, pods_file: Path, tmp_path: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = make_bucket(s3, "trail-and-queue")
    queue = make_queue(sqs, "ct-both")
    recs = story()
    data_event = r.s3_get_object("2026-11-21T05:20:10Z", r.assumed_role(KEY, web_identity=True),
                                 "corp", "export.csv")  # data events come only from S3
    send(sqs, queue, *(r.eventbridge(x) for x in recs))
    put_log(s3, bucket, trail_key("", r.ACCOUNT, "us-west-2", "2026-11-21", "0525", 1),
            [*recs[:3], data_event, *recs[3:]])
    args = cli_args("--s3", f"s3://{bucket}", "--endpoint-url", moto_endpoint,
                    "--sqs", queue, "--sqs-endpoint-url", moto_endpoint, "--region",
                    "us-east-1", "--sqs-wait-seconds", "1", "--pods-file", str(pods_file),
                    "--checkpoint", str(tmp_path / "cp.json"))
    sink = MemorySink()
    assert await cli._run(args, sink) == 0
    ids = [e.data["event_id"] for e in sink.envelopes]
    assert len(ids) == len(set(ids)) == len(recs) + 1
    assert {e.data["action"] for e in sink.envelopes} >= {"GetObject", "StopLogging"}
    saved = orjson.loads((tmp_path / "cp.json").read_bytes())
    assert saved["source"] == f"s3://{bucket}/"  # the file source's checkpoint
    assert len(saved["dedup"]["ids"]) == len(recs) + 1
    # a restart keeps the dedup state: the same events redelivered are dropped
    send(sqs, queue, *(r.eventbridge(x) for x in recs[:2]))
    sink2 = MemorySink()
    assert await cli._run(args, sink2) == 0
    assert sink2.envelopes == [] and in_queue(sqs, queue) == 0
    s3.close()


def test_eventbridge_sns_and_gzip_bodies_unwrap() -> None:
    from collectors.cloudtrail.pipeline import read_records

    rec = r.iam_create_access_key("2026-11-21T05:21:50Z", r.iam_user())
    bridge = r.eventbridge(rec)
    sns = {"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:x",
           "Message": orjson.dumps(bridge).decode()}
    for body in (orjson.dumps(bridge), orjson.dumps(sns), gzip.compress(orjson.dumps(bridge))):
        assert read_records("sqs", body) == ([rec], [])


def test_queue_region_from_url() -> None:
    assert cli._queue_region("https://sqs.eu-west-1.amazonaws.com/111122223333/ct") \
        == "eu-west-1"
    assert cli._queue_region("http://127.0.0.1:5000/123456789012/ct") is None


def test_a_source_is_required() -> None:
    with pytest.raises(SystemExit, match="needs a source"):
        cli._source(cli_args())


ROOT = Path(__file__).resolve().parents[2]


def test_the_aws_stack_sends_read_only_events_and_parks_poison_messages() -> None:
    """deploy/aws/cloudtrail-eventbridge-sqs.yaml says what the source relies on."""
    import yaml

    doc = yaml.safe_load((ROOT / "deploy/aws/cloudtrail-eventbridge-sqs.yaml").read_text())
    res = doc["Resources"]
    rule = res["Rule"]["Properties"]
    assert rule["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    assert set(rule["EventPattern"]["detail-type"]) == {
        "AWS API Call via CloudTrail", "AWS Console Sign In via CloudTrail"}
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    queue = res["Queue"]["Properties"]
    # longer than a long poll (20 s max) plus a publish; a redrive policy to the DLQ
    assert int(queue["VisibilityTimeout"]) > 20 + 60
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert int(queue["RedrivePolicy"]["maxReceiveCount"]) >= 2
    (grant,) = res["QueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert grant["Principal"] == {"Service": "events.amazonaws.com"}
    assert grant["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": ["Rule", "Arn"]}
    (reader,) = res["CollectorReadsTheQueue"]["Properties"]["PolicyDocument"]["Statement"]
    # exactly the calls SqsSource makes
    assert set(reader["Action"]) == {"sqs:ReceiveMessage", "sqs:DeleteMessage"}


def test_an_empty_sqs_url_means_s3_only() -> None:
    """The Deployment passes ``--sqs=$(AGENTSTORY_CLOUDTRAIL_SQS)``, empty by default."""
    from collectors.cloudtrail.sources import S3Source

    args = cli_args("--s3", "s3://trail/prefix", "--sqs", "", "--region", "us-east-1")
    assert isinstance(cli._source(args), S3Source)


def test_dedup_is_bounded_in_event_time_and_count() -> None:
    import doctest

    from collectors.cloudtrail import dedup as dedup_module

    assert doctest.testmod(dedup_module).failed == 0
    ns = 1_000_000_000
    d = EventIdDedup(window_s=60, max_ids=3)
    assert d.first("a", 0) and d.first("b", 10 * ns)
    assert d.first("c", 100 * ns)  # a and b fall out of the window
    assert d.counts["expired"] == 2 and len(d) == 1
    assert d.first("a", 101 * ns)  # a copy later than the window goes out again
    for i in range(5):
        d.first(f"x{i}", 102 * ns)
    assert len(d) == 3 and d.counts["evicted"] == 4
    again = EventIdDedup(window_s=60, max_ids=3)
    again.restore(orjson.loads(orjson.dumps(d.snapshot())))
    assert not again.first("x4", 103 * ns) and again.first("c", 103 * ns)
