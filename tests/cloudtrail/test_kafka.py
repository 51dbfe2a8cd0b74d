"""Through a real Kafka-protocol broker: ``collect cloudtrail --dir`` publishes frames to
the raw cloud topic keyed by pod uid (else principal ARN) and dead letters with reasons."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from collectors.cloudtrail import cli
from streams.events import Envelope, decode_frame
from streams.topics import DEADLETTER, RAW_CLOUD

from . import records as r
from .conftest import RAG_UID, RESEARCH_UID
from .test_collector import cli_args, trail_dir

pytestmark = pytest.mark.kafka


async def _read_all(bootstrap: str, topic: str, done: Callable[[list[Any]], bool],
                    ) -> list[tuple[bytes, bytes]]:
    """Everything in ``topic`` from the start, until ``done(messages)`` holds and then
    one idle second passes (so duplicates would show), or 30 s at most. Offsets are
    not used as bounds: tansu reports end offsets per record batch."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    out: list[tuple[bytes, bytes]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                out.extend((m.key or b"", m.value or b"") for m in messages)
            if not batch and done(out):
                break
    finally:
        await consumer.stop()
    return out


async def test_collect_dir_into_kafka(kafka_bootstrap: str, tmp_path: Path,
                                      pods_file: Path) -> None:
    root = trail_dir(tmp_path / "trail")
    args = cli_args("--dir", str(root), "--pods-file", str(pods_file),
                    "--checkpoint", str(tmp_path / "cp.json"),
                    "--bootstrap-servers", kafka_bootstrap)
    args.node = f"ct-{uuid.uuid4().hex[:8]}"  # tell this run's events from others'
    assert await cli._run(args) == 0


    def mine(messages: list[tuple[bytes, bytes]]) -> list[tuple[bytes, Envelope]]:
        out = []
        for key, value in messages:
            frame = decode_frame(value)
            assert frame.rejected == []
            out.extend((key, e) for e in frame.events if e.node == args.node)
        return out

    raw = await _read_all(kafka_bootstrap, RAW_CLOUD.name, lambda m: len(mine(m)) >= 7)
    events = mine(raw)
    for key, env in events:
        assert env.key.encode() == key  # the message key is the envelope key
    by: dict[Any, Envelope] = {
        (e.data["action"], e.data["params"].get("key")): e for _, e in events}
    assert len(events) == 7
    assert by[("GetObject", "a.csv")].key == RESEARCH_UID
    assert by[("GetObject", "a.csv")].pod is not None
    assert by[("GetObject", "a.csv")].pod.agent == "research/Deployment/research-agent"  # type: ignore[union-attr]
    assert by[("InvokeModel", None)].key == RAG_UID
    assert by[("AssumeRoleWithWebIdentity", None)].key == RESEARCH_UID
    assert by[("CreateAccessKey", None)].key == f"arn:aws:iam::{r.ACCOUNT}:user/alice"
    assert by[("DescribeInstances", None)].key.endswith("/eks-node-role/i-0abc1234def567890")
    assert by[("GetObject", "a.csv")].data["record"]["eventName"] == "GetObject"


    def ours(messages: list[tuple[bytes, bytes]]) -> list[tuple[str, Any]]:
        return [(k.decode(), orjson.loads(v)) for k, v in messages
                if k.decode().startswith(str(root))]

    letters = ours(await _read_all(kafka_bootstrap, DEADLETTER.name,
                                   lambda m: len(ours(m)) >= 2))
    assert sorted((k.rpartition("/")[2], m["stage"], m["field"]) for k, m in letters) == [
        ("03-truncated.json.gz", "cloudtrail.read", "file"),
        ("04-more.json", "cloudtrail.normalize", "eventVersion"),
    ]
    assert all(m["reason"] for _, m in letters)


async def test_collect_sqs_into_kafka(kafka_bootstrap: str, moto_endpoint: str,
                                      pods_file: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """EventBridge → SQS → collector → the raw cloud topic, through the real broker:
    the messages are deleted only after the frames were acked."""
    import boto3

    from .conftest import RESEARCH_UID
    from .test_sqs import in_queue, make_queue, send, story

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    queue = make_queue(sqs, f"ct-kafka-{uuid.uuid4().hex[:6]}")
    recs = story()
    send(sqs, queue, *(r.eventbridge(x) for x in recs))
    args = cli_args("--sqs", queue, "--sqs-endpoint-url", moto_endpoint, "--region",
                    "us-east-1", "--sqs-wait-seconds", "1", "--pods-file", str(pods_file),
                    "--bootstrap-servers", kafka_bootstrap)
    args.node = f"ct-sqs-{uuid.uuid4().hex[:8]}"
    assert await cli._run(args) == 0
    assert in_queue(sqs, queue) == 0

    def mine(messages: list[tuple[bytes, bytes]]) -> list[tuple[bytes, Envelope]]:
        out = []
        for key, value in messages:
            frame = decode_frame(value)
            out.extend((key, e) for e in frame.events if e.node == args.node)
        return out

    events = mine(await _read_all(kafka_bootstrap, RAW_CLOUD.name,
                                  lambda m: len(mine(m)) >= len(recs)))
    assert sorted(e.data["action"] for _, e in events) == sorted(x["eventName"] for x in recs)
    by = {e.data["action"]: (k, e) for k, e in events}
    key, stop = by["StopLogging"]
    assert key == RESEARCH_UID.encode() and stop.pod is not None
    assert stop.data["resources"] == [
        {"type": "AWS::CloudTrail::Trail", "name": "management-events"}]
    sqs.close()
