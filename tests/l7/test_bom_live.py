"""Issue 17's acceptance test for the AI-BOM: a real agent process in a pod cgroup (the
``openai`` SDK under pydantic-ai, with a real FastMCP server) through the real L7 capture;
its events go through the engine, and the BOM built from its profile record validates and
names the SDK and the version its process imported, the model it called and the tools it
used (its own and the MCP server's).
"""

from __future__ import annotations

import json
import uuid
from importlib.metadata import version
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from collectors.cgroups import CgroupResolver
from collectors.kernel.sandbox import FakePod
from collectors.l7.capture import Capture
from collectors.l7.libssl import PodProcesses
from models.exports.bom import bom_json
from models.exports.facts import profile_record
from streams.content import load_content
from streams.engine import EngineSettings, Message, StoryEngine
from streams.events import Envelope, Pod

from .providers import FINAL_TEXT, ScriptedProvider
from .test_agent_live import PLAN, _start, _wait_final, mcp_servers  # noqa: F401 (fixture)
from .test_capture_live import pytestmark as _live_marks
from .test_capture_live import wait_for
from .tls_fixture import make_cert, reap

pytestmark = [*_live_marks, pytest.mark.timeout(300)]
AGENT = "shop/Deployment/order-bot"


def test_bom_of_a_real_openai_agent_names_sdk_model_and_tools(
    tmp_path: Path, pod_cgroup: FakePod, mcp_servers: dict[str, str],  # noqa: F811
) -> None:
    from collectors.l7.loader import SslProbes, TlsCollector
    from collectors.l7.parser import L7Parser

    cert, key = make_cert(tmp_path)
    emitted: list[Envelope] = []
    pod = Pod(uid=pod_cgroup.uid, namespace="shop", name="order-bot-6f7c9-abcde",
              agent=AGENT)
    capture = Capture(L7Parser(), node="test-node", emit=emitted.append,
                      attribute=lambda cg: pod if cg == pod_cgroup.cgroup_id else None)
    probes = SslProbes()
    collector = TlsCollector(probes, capture, PodProcesses(CgroupResolver(pod_cgroup.root)),
                             rescan_s=0.1, report_packages=True)
    with ScriptedProvider(cert, key, plan=list(PLAN)) as provider:
        agent = _start(["tests.l7.agent_app", provider.url, str(cert),
                        f"sk-test-{uuid.uuid4().hex}", "benign", mcp_servers["benign"],
                        "openai-chat"], wait_ready=True)
        try:
            pod_cgroup.add(agent.pid)
            collector.start()
            wait_for(lambda: pod_cgroup.cgroup_id in probes.watched and bool(probes.libraries),
                     "the pod cgroup and its libssl")
            out, err = agent.communicate("go\n", timeout=120)
            assert agent.returncode == 0, err[-2000:]
            assert out.strip() == FINAL_TEXT
            _wait_final(emitted, agent.pid, "bom", collector.snapshot)
        finally:
            reap(agent)
            collector.stop()
            probes.close()

    engine = StoryEngine(load_content(), EngineSettings())
    state = engine.new_state(AGENT)
    # the collector read the agent's installed SDKs in its root (/proc/<pid>/root)
    [report] = [e for e in emitted if e.kind == "process.packages"]
    assert report.proc is not None and report.proc.pid == agent.pid
    packages = report.data["packages"]
    events = sorted(emitted, key=lambda e: e.ts)
    engine.apply(state, Message(events, None, {"l7": events[-1].ts}))
    record = json.loads(json.dumps(profile_record(state.profile, state.inventory)))
    text = bom_json(record)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)

    libraries = {c["name"]: c for c in bom["components"] if c["type"] == "library"}
    openai = libraries["openai"]
    assert openai["version"] == version("openai")  # what the agent's process imported
    assert openai["purl"] == f"pkg:pypi/openai@{version('openai')}"
    evidence = {p["name"]: p["value"] for p in openai["properties"]}
    # pydantic-ai's User-Agent hides the SDK: its own header and the metadata name it
    assert set(evidence["agentstory:evidence"].split(",")) == {
        "package metadata", "x-stainless-package-version"}
    assert {"name": "openai", "version": version("openai")} in [
        {k: p[k] for k in ("name", "version")} for p in packages]  # and the metadata agrees
    assert libraries["mcp"]["version"] == version("mcp")  # metadata only: no header names it
    models = [c for c in bom["components"] if c["type"] == "machine-learning-model"]
    assert [(m["group"], m["name"]) for m in models] == [("openai", "gpt-4o")]
    calls = {p["name"]: p["value"] for p in models[0]["properties"]}
    assert calls["agentstory:count"] == str(len(PLAN) + 1)

    services = bom["services"]
    tools = {s["name"]: s for s in services if s.get("group") == "tool"}
    mcp = [s for s in services if s.get("group") == "mcp-server"]
    assert len(mcp) == 1 and mcp[0]["endpoints"] == [mcp_servers["benign"]]
    mcp_tools = {s["name"] for s in mcp[0].get("services", [])}
    # its own tools as the model called them, the MCP server's tool nested under it
    assert {"lookup_order", "search_help"} <= set(tools)
    assert "read_ticket" in mcp_tools
    called = {s["name"]: {p["name"]: p["value"] for p in s["properties"]}["agentstory:called"]
              for s in [*tools.values(), *mcp[0].get("services", [])]}
    assert all(int(called[name]) >= 1 for name, _ in PLAN)
    print("\nBOM:", json.dumps({"libraries": {k: v.get("version") for k, v in libraries.items()},
                                "models": [m["name"] for m in models],
                                "tools": sorted(called), "mcp": mcp[0]["endpoints"]}))
