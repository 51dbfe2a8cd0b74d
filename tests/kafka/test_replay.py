"""``agentstory replay`` on the embedded broker: a time range, parameters from a file,
and the same bytes from two replays of the same input."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.content import load_content
from streams.engine import SECOND_NS, EngineSettings
from streams.events import Envelope, Pod, Proc, encode_frame
from streams.topics import RAW_KERNEL
from topologies.replay import load_params, replay_topics

pytestmark = pytest.mark.kafka


def revshell(pod: Pod, ts: int) -> bytes:
    return encode_frame([Envelope(
        "process.exec", ts, "node-a", "kernel",
        {"argv": ["bash", "-i"], "stdio": {"stdin": {"type": "socket", "protocol": "tcp",
                                                     "peer": "203.0.113.9:4444"}}},
        pod=pod, proc=Proc(pid=4242, ppid=1, comm="bash", exe="/bin/bash"))])


async def test_a_time_range_replays_only_its_messages_and_twice_gives_the_same_bytes(
        kafka_bootstrap: str) -> None:
    tag = uuid.uuid4().hex[:8]
    early = Pod(uid=f"early-{tag}", namespace="t", name=f"e-{tag}", agent=f"t/Deployment/e{tag}")
    late = Pod(uid=f"late-{tag}", namespace="t", name=f"l-{tag}", agent=f"t/Deployment/l{tag}")
    now_ms = int(time.time() * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:  # Kafka timestamps an hour apart; event times anything
        await producer.send_and_wait(RAW_KERNEL.name, revshell(early, time.time_ns()),
                                     key=early.uid.encode(), timestamp_ms=now_ms - 3_600_000)
        await producer.send_and_wait(RAW_KERNEL.name, revshell(late, time.time_ns()),
                                     key=late.uid.encode(), timestamp_ms=now_ms)
    finally:
        await producer.stop()
    settings = EngineSettings(learning_ns=60 * SECOND_NS, min_events=4)
    ranged, _ = await replay_topics(kafka_bootstrap, settings, load_content(),
                                    idle_timeout_s=2.0, start_ms=now_ms - 60_000)
    pods = {s.pod.uid for s in ranged}
    assert late.uid in pods and early.uid not in pods
    first, _ = await replay_topics(kafka_bootstrap, settings, load_content(), idle_timeout_s=2.0)
    second, _ = await replay_topics(kafka_bootstrap, settings, load_content(),
                                    idle_timeout_s=2.0)
    assert {early.uid, late.uid} <= {s.pod.uid for s in first}
    assert [orjson.dumps(s.to_ocsf()) for s in first] == \
        [orjson.dumps(s.to_ocsf()) for s in second]


def test_parameters_from_a_file_take_effect(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("learning_seconds: 7200\nmin_events: 5\nevidence: hash\n"
                      "lists: {apiserver_clients: [ops/Deployment/operator]}\n")
    settings, content = load_params(params, EngineSettings())
    assert settings.learning_ns == 7200 * SECOND_NS and settings.min_events == 5
    assert settings.evidence_policy == "hash"
    assert content.in_list("apiserver_clients", "ops/Deployment/operator")
    params.write_text("learning_hours: 2\n")
    with pytest.raises(ValueError, match="unknown parameters \\['learning_hours'\\]"):
        load_params(params, EngineSettings())
