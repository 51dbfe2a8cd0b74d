"""The issue's acceptance test for L7: a Python agent in a pod cgroup calls a local
HTTPS OpenAI-compatible provider (a tool call not streamed, and one streamed as SSE
deltas) and an MCP server over HTTPS; the collector — uprobes, capture, the real
L7Parser, FramePublisher, the embedded broker — publishes llm.request, llm.tool_call and
mcp.call attributed to the pod, and the API key is in none of the published bytes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from collectors.cgroups import CgroupResolver
from collectors.kernel.sandbox import FakePod
from collectors.l7.capture import Capture
from collectors.l7.libssl import PodProcesses
from collectors.pods import Attributor, FilePodSource, PodIndex
from collectors.publish import FramePublisher
from streams.events import Envelope, decode_frame
from streams.topics import RAW_L7

from .test_capture_live import pytestmark as _live_marks
from .tls_fixture import (
    MCP_TOOL,
    TOOL_PLAIN,
    TOOL_STREAMED,
    TlsServer,
    finish_agent,
    make_cert,
    pod_manifest,
    reap,
    start_agent,
)

pytestmark = [*_live_marks, pytest.mark.kafka, pytest.mark.e2e]
NODE = "l7-test-node"


async def _eventually(check: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _read_topic(bootstrap: str) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) now in the raw L7 topic, all partitions, from the start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = [TopicPartition(RAW_L7.name, p) for p in range(RAW_L7.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        out: list[tuple[bytes | None, bytes]] = []
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend((r.key, r.value) for r in records if r.value is not None)
        return out
    finally:
        await consumer.stop()


def _has_tool(events: list[Envelope], tool: str) -> bool:
    return any(e.kind == "llm.tool_call" and tool.encode() in orjson.dumps(e.data)
               for e in events)


async def test_agent_llm_and_mcp_calls_reach_kafka_attributed_and_redacted(
    kafka_bootstrap: str, pod_cgroup: FakePod, tmp_path: Path,
) -> None:
    from collectors.l7.loader import SslProbes, TlsCollector
    from collectors.l7.parser import L7Parser

    cert, key_file = make_cert(tmp_path)
    server = TlsServer(cert, key_file)
    api_key = f"sk-test-{uuid.uuid4().hex}{uuid.uuid4().hex[:16]}"
    pods_file = tmp_path / "pods.yaml"
    pods_file.write_text(yaml.safe_dump(pod_manifest(
        pod_cgroup.uid, "support-bot-7d9f8c-x2x4z", pod_cgroup.container_id, NODE)))
    index = PodIndex()
    FilePodSource(pods_file).load(index)
    resolver = CgroupResolver(pod_cgroup.root)
    attributor = Attributor(index, resolver)
    publisher = FramePublisher(kafka_bootstrap, client_id="l7-e2e-test")
    emitted: list[Envelope] = []

    def emit(envelope: Envelope) -> bool:
        emitted.append(envelope)
        return publisher.submit(envelope)

    probes = SslProbes()
    capture = Capture(L7Parser(), node=NODE, attribute=attributor.pod_for_cgroup, emit=emit)
    collector = TlsCollector(probes, capture, PodProcesses(resolver), rescan_s=0.1)
    pod_agent = start_agent(server.url, cert, api_key, "gpt-4o-mini")
    host_agent = start_agent(server.url, cert, api_key, "gpt-4o-host")
    await publisher.start()
    try:
        pod_cgroup.add(pod_agent.pid)
        collector.start()
        await _eventually(lambda: pod_cgroup.cgroup_id in probes.watched
                          and bool(probes.libraries), "the pod cgroup and its libssl")
        await asyncio.to_thread(finish_agent, pod_agent)
        await asyncio.to_thread(finish_agent, host_agent)
        await _eventually(
            lambda: _has_tool(emitted, TOOL_PLAIN) and _has_tool(emitted, TOOL_STREAMED)
            and sum(e.kind == "mcp.call" for e in emitted) >= 3,
            "llm.tool_call (plain and streamed) and mcp.call events")
    finally:
        await asyncio.to_thread(collector.stop)
        probes.close()
        await publisher.stop()
        server.close()
        for proc in (pod_agent, host_agent):
            reap(proc)

    # The agent really sent the key, on every request.
    assert len(server.seen) == 10
    assert all(h.get("Authorization") == f"Bearer {api_key}" for _, h, _ in server.seen)

    kinds = [e.kind for e in emitted]
    assert kinds.count("llm.request") == 2  # the pod agent's two; the host's not captured
    pod_events = [e for e in emitted if e.proc is not None and e.proc.pid == pod_agent.pid]
    assert pod_events == emitted, "only the pod agent is captured"
    assert {"llm.request", "llm.tool_call", "mcp.call"} <= set(kinds)
    for event in emitted:
        assert event.pod is not None and event.pod.uid == pod_cgroup.uid
        assert event.pod.agent == "support/Deployment/support-bot"
        assert event.pod.container == "bot" and event.pod.namespace == "support"
        assert event.data["conn"]["dport"] == int(server.url.rsplit(":", 1)[1])
    mcp_calls = [e for e in emitted if e.kind == "mcp.call"]
    assert any(MCP_TOOL.encode() in orjson.dumps(e.data) for e in mcp_calls)

    # What reached Kafka: the same events, keyed by the pod uid, and never the key.
    records = await _read_topic(kafka_bootstrap)
    ours = [(k, v) for k, v in records if k == pod_cgroup.uid.encode()]
    published = [e for _, v in ours for e in decode_frame(v).events]
    assert sorted(e.to_json() for e in published) == sorted(e.to_json() for e in emitted)
    secret = api_key.encode()
    for key, value in records:
        assert secret not in value and secret[8:] not in value
        assert key is None or secret not in key
