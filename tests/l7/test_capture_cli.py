"""``agentstory collect l7`` as operators run it: a separate process, a pods file, the
broker; SIGTERM drains the ring buffer, flushes the parser and the publisher, exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
import yaml

from collectors.kernel.sandbox import FakePod
from streams.events import decode_frame

from .test_capture_e2e import _read_topic
from .test_capture_live import pytestmark as _live_marks
from .tls_fixture import (
    TOOL_STREAMED,
    TlsServer,
    finish_agent,
    make_cert,
    pod_manifest,
    reap,
    start_agent,
)

pytestmark = [*_live_marks, pytest.mark.kafka, pytest.mark.e2e]


async def test_collect_l7_command_publishes_and_stops_cleanly_on_sigterm(
    kafka_bootstrap: str, pod_cgroup: FakePod, tmp_path: Path,
) -> None:
    node = f"cli-node-{uuid.uuid4().hex[:8]}"
    cert, key = make_cert(tmp_path)
    server = TlsServer(cert, key)
    api_key = f"sk-test-{uuid.uuid4().hex}"
    pods_file = tmp_path / "pods.yaml"
    pods_file.write_text(yaml.safe_dump(pod_manifest(
        pod_cgroup.uid, "support-bot-7d9f8c-cli01", pod_cgroup.container_id, node)))
    agent = start_agent(server.url, cert, api_key, "gpt-4o-mini")
    pod_cgroup.add(agent.pid)
    log = tmp_path / "collector.log"
    with log.open("wb") as log_fh:
        collector = subprocess.Popen(
            [sys.executable, "-c", "from topologies.cli import main; raise SystemExit(main())",
             "collect", "l7", "--bootstrap-servers", kafka_bootstrap, "--node", node,
             "--pods-file", str(pods_file), "--log-level", "info", "--rescan-interval",
             "0.2", "--stats-interval", "0", "--content", "prompts=hash"],
            stdout=log_fh, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while b"l7 collector on" not in log.read_bytes():
            assert collector.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        finish_agent(agent)
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=60) == 0, log.read_text()
    finally:
        server.close()
        for proc in (agent, collector):
            reap(proc)

    records = await _read_topic(kafka_bootstrap)
    events = [e for k, v in records if k == pod_cgroup.uid.encode()
              for e in decode_frame(v).events]
    kinds = {e.kind for e in events}
    assert {"llm.request", "llm.tool_call", "mcp.call"} <= kinds, kinds
    assert any(TOOL_STREAMED.encode() in orjson.dumps(e.data) for e in events)
    assert all(e.node == node and e.pod is not None
               and e.pod.agent == "support/Deployment/support-bot" for e in events)
    # --content prompts=hash: the user's words are not in the request event
    requests = [e for e in events if e.kind == "llm.request"]
    assert requests and not any(b"weather in Paris" in orjson.dumps(e.data) for e in requests)
    stats = [e for k, v in records if k == f"node/{node}".encode()
             for e in decode_frame(v).events if e.kind == "collector.stats"]
    assert stats and stats[-1].data["kernel"]["lost"] == 0
    assert stats[-1].data["capture"]["emitted"] == len(events)
    for _key, value in records:
        assert api_key.encode() not in value


async def test_collect_l7_command_publishes_mcp_over_stdio(
    kafka_bootstrap: str, pod_cgroup: FakePod, tmp_path: Path,
) -> None:
    """The same command captures a pod's MCP stdio session (mcp SDK client ↔ FastMCP
    stdio server) and publishes it keyed by the pod, with the stdio stats."""
    from .stdio_app import TOOL
    from .test_stdio_live import finish_client, start_client

    node = f"cli-node-{uuid.uuid4().hex[:8]}"
    pods_file = tmp_path / "pods.yaml"
    pods_file.write_text(yaml.safe_dump(pod_manifest(
        pod_cgroup.uid, "support-bot-7d9f8c-cli02", pod_cgroup.container_id, node)))
    client = start_client("cli-3")
    pod_cgroup.add(client.pid)
    log = tmp_path / "collector.log"
    with log.open("wb") as log_fh:
        collector = subprocess.Popen(
            [sys.executable, "-c", "from topologies.cli import main; raise SystemExit(main())",
             "collect", "l7", "--bootstrap-servers", kafka_bootstrap, "--node", node,
             "--pods-file", str(pods_file), "--log-level", "info", "--rescan-interval",
             "0.2", "--stats-interval", "0"],
            stdout=log_fh, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while b"l7 collector on" not in log.read_bytes():
            assert collector.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        time.sleep(0.5)  # the stdio program's cgroup filter is filled by its first rescan
        assert finish_client(client).startswith("done Customer cli-3")
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=60) == 0, log.read_text()
    finally:
        for proc in (client, collector):
            reap(proc)

    records = await _read_topic(kafka_bootstrap)
    events = [e for k, v in records if k == pod_cgroup.uid.encode()
              for e in decode_frame(v).events]
    calls = [e for e in events if e.kind == "mcp.call" and e.data.get("transport") == "stdio"]
    assert [e.data["method"] for e in calls][:2] == ["initialize",
                                                     "notifications/initialized"]
    tool_calls = [e for e in calls if e.data["method"] == "tools/call"]
    assert [e.data["arguments"] for e in tool_calls] == [{"customer_id": "cli-3"}]
    assert tool_calls[0].data["tool"] == TOOL and tool_calls[0].proc is not None
    assert tool_calls[0].proc.pid == client.pid
    assert any(e.kind == "mcp.result" and e.data.get("tool") == TOOL for e in events)
    assert all(e.pod is not None and e.pod.agent == "support/Deployment/support-bot"
               for e in events)
    stats = [e for k, v in records if k == f"node/{node}".encode()
             for e in decode_frame(v).events if e.kind == "collector.stats"]
    assert stats and stats[-1].data["stdio_mcp"]["stdio"]["sessions"] == 1
    assert stats[-1].data["stdio_mcp"]["kernel"]["lost"] == 0
