"""Issue 9's acceptance test for channels: a real pydantic-ai agent in a pod cgroup,
through the real capture (uprobes on libssl, plaintext socket probes, L7Parser).

The agent (:mod:`tests.l7.agent_app`) has a system prompt that quotes an injection
phrase to warn against it and tools with long imperative descriptions; it talks to a
scripted OpenAI-compatible provider over HTTPS and to a real FastMCP server over HTTP.
Four runs: all benign (no event may be flagged), the same injection text returned by a
local tool (flagged, channel ``tool_result``), returned by the MCP tool (the
``mcp.result`` flagged as ``mcp_result``, and the next model request as ``tool_result``),
and all benign again on Bedrock Converse through boto3.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from collectors.cgroups import CgroupResolver
from collectors.kernel.sandbox import FakePod
from collectors.l7.capture import Capture
from collectors.l7.injection import default_scorer
from collectors.l7.libssl import PodProcesses
from streams.events import Envelope, Pod
from topologies.broker import free_port

from .agent_app import LOOKUP_DOC, SYSTEM_PROMPT
from .providers import FINAL_TEXT, ScriptedProvider
from .test_capture_live import pytestmark as _live_marks
from .test_capture_live import wait_for
from .tls_fixture import make_cert, reap

pytestmark = [*_live_marks, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
PLAN = [
    ("lookup_order", {"id": 4711}),
    ("search_help", {"query": "returns"}),
    ("read_ticket", {"id": 4711}),
]


def _start(args: list[str], *, wait_ready: bool) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if wait_ready:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            proc.kill()
            raise RuntimeError(
                f"agent did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
            )
    return proc


@pytest.fixture()
def mcp_servers() -> Iterator[dict[str, str]]:
    """Two FastMCP servers on the host (not captured): benign and injecting."""
    procs, urls = [], {}
    try:
        for mode in ("benign", "injection"):
            port = free_port()
            procs.append(_start(["tests.l7.mcp_app", str(port), mode], wait_ready=False))
            urls[mode] = f"http://127.0.0.1:{port}/mcp"
            import socket

            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            reap(proc)


def _wait_final(emitted: list[Envelope], pid: int, name: str, snapshot: Any) -> None:
    """The agent's last model answer went through the capture (events are async)."""

    def done() -> bool:
        return any(
            e.kind == "llm.response"
            and e.proc is not None
            and e.proc.pid == pid
            and e.data["text"] == FINAL_TEXT
            for e in emitted
        )

    wait_for(done, lambda: f"the final llm.response of {name}: {snapshot()}")


def _flagged(e: Envelope) -> bool:
    return bool(e.data.get("injection", {}).get("flagged"))


def test_pydantic_ai_agent_own_text_is_not_flagged_injected_results_are(
    tmp_path: Path,
    pod_cgroup: FakePod,
    mcp_servers: dict[str, str],
) -> None:
    from collectors.l7.loader import SslProbes, TlsCollector
    from collectors.l7.parser import L7Parser

    # Precondition: the agent's own words are text the scorer flags when it reads them.
    assert default_scorer().score(SYSTEM_PROMPT).flagged
    cert, key = make_cert(tmp_path)
    api_key = f"sk-test-{uuid.uuid4().hex}"
    emitted: list[Envelope] = []
    pod = Pod(uid=pod_cgroup.uid)
    capture = Capture(
        L7Parser(),
        node="test-node",
        emit=emitted.append,
        attribute=lambda cg: pod if cg == pod_cgroup.cgroup_id else None,
    )
    probes = SslProbes()
    collector = TlsCollector(
        probes, capture, PodProcesses(CgroupResolver(pod_cgroup.root)), rescan_s=0.1
    )
    runs = {  # name: (tool mode, MCP server, model back end)
        "benign": ("benign", "benign", "openai-chat"),
        "tool": ("tool-injection", "benign", "openai-chat"),
        "mcp": ("benign", "injection", "openai-chat"),
        "bedrock": ("benign", "benign", "bedrock"),  # Converse through boto3 over TLS
    }
    pids: dict[str, int] = {}
    with ScriptedProvider(cert, key, plan=list(PLAN)) as provider:
        started = False
        try:
            for name, (mode, mcp_mode, model) in runs.items():
                agent = _start(
                    [
                        "tests.l7.agent_app",
                        provider.url,
                        str(cert),
                        api_key,
                        mode,
                        mcp_servers[mcp_mode],
                        model,
                    ],
                    wait_ready=True,
                )
                try:
                    pod_cgroup.add(agent.pid)
                    pids[name] = agent.pid
                    if not started:
                        collector.start()
                        started = True
                    wait_for(
                        lambda: pod_cgroup.cgroup_id in probes.watched and bool(probes.libraries),
                        "the pod cgroup and its libssl",
                    )
                    out, err = agent.communicate("go\n", timeout=120)
                    assert agent.returncode == 0, err[-2000:]
                    assert out.strip() == FINAL_TEXT
                    _wait_final(emitted, agent.pid, name, collector.snapshot)
                finally:
                    reap(agent)
        finally:
            if started:
                collector.stop()
            probes.close()

    by_run = {
        name: [e for e in emitted if e.proc is not None and e.proc.pid == pid]
        for name, pid in pids.items()
    }
    for events in by_run.values():
        requests = [e for e in events if e.kind == "llm.request"]
        assert len(requests) == len(PLAN) + 1  # one model call per tool, then the answer
        assert {e.data["system_prompt_hash"] for e in requests} == {
            requests[0].data["system_prompt_hash"]
        }
        assert len({e.data["tools_hash"] for e in requests}) == 1
        assert requests[0].data["tools"] == ["lookup_order", "search_help", "read_ticket"]
        assert any(e.kind == "mcp.result" and e.data.get("tool") == "read_ticket" for e in events)
        assert not any(api_key.encode() in orjson.dumps(e.data) for e in events)
    # The scorer never saw the system prompt or the tool descriptions.
    assert (
        LOOKUP_DOC.split("\n")[0]
        not in orjson.dumps(
            [e.data["injection"] for e in emitted if "injection" in e.data]
        ).decode()
    )

    for events in (by_run["benign"], by_run["bedrock"]):
        assert [e for e in events if _flagged(e)] == []
    bedrock = [e for e in by_run["bedrock"] if e.kind == "llm.request"]
    assert {(e.data["provider"], e.data["api"]) for e in bedrock} == {("bedrock", "converse")}
    assert bedrock[0].data["model"] == "anthropic.claude-3-5-sonnet-20240620-v1:0"
    assert [e.data["tool"] for e in by_run["bedrock"] if e.kind == "llm.tool_call"] == [
        name for name, _ in PLAN
    ]
    benign = by_run["benign"]
    false_positives = [e for e in benign if _flagged(e)]
    assert false_positives == [], [(e.kind, e.data["injection"]) for e in false_positives]
    scored = [e for e in benign if e.kind == "llm.request" and e.data["injection"]["scored"]]
    assert len(scored) == len(PLAN)  # every request after the first carries tool results

    tool_reqs = [e for e in by_run["tool"] if e.kind == "llm.request"]
    assert [_flagged(e) for e in tool_reqs] == [False, True, True, True]
    inj = tool_reqs[1].data["injection"]
    assert (inj["channel"], inj["source"]) == ("tool_result", "messages[3]")
    assert not any(_flagged(e) for e in by_run["tool"] if e.kind == "mcp.result")

    mcp_events = by_run["mcp"]
    (mcp_result,) = [
        e for e in mcp_events if e.kind == "mcp.result" and e.data.get("tool") == "read_ticket"
    ]
    assert _flagged(mcp_result) and mcp_result.data["injection"]["channel"] == "mcp_result"
    mcp_reqs = [e for e in mcp_events if e.kind == "llm.request"]
    assert [_flagged(e) for e in mcp_reqs] == [False, False, False, True]
    assert mcp_reqs[-1].data["injection"]["channel"] == "tool_result"
    print(
        f"\nbenign run: {len(benign)} events, {sum(e.kind == 'llm.request' for e in benign)}"
        f" llm.request, {len(scored)} with scored content, flagged: {len(false_positives)}"
    )
