"""The recorder end to end (root: real eBPF): a real agent process in a pod cgroup, the
in-process kernel and L7 collectors, the loopback world, the event-time placement."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import orjson
import pytest

from tests.conftest import needs_root_reason

pytestmark = pytest.mark.skipif(needs_root_reason() is not None,
                                reason=needs_root_reason() or "")

EPOCH_NS = 1_767_225_600 * 1_000_000_000


def test_a_small_scenario_is_recorded_through_the_collectors(tmp_path: Path) -> None:
    from topologies.record import SCENARIO_EPOCH_NS, Activity, Scenario, record
    from topologies.scenarios.agents import AGENTS
    from topologies.scenarios.common import call, step, text

    coder = AGENTS["coder"]
    acts = [Activity(60, "coder", "write and run", [
                call("write_file", path="src/hello.py", content="print('hi')\n"),
                call("run", command="cd src && python3 hello.py"), text("ok")]),
            Activity(7200, "coder", "fetch", [
                call("http", url="https://api.github.com/repos/acme/app"), text("ok")])]
    labels = {"attacks": [{"id": "t", "category": "test", "pod": "coder",
                           "description": "the second activity's fetch",
                           "steps": [step("fetch", "http.request", "l7",
                                          {"data.host": "api.github.com"})]}],
              "benign": [{"pod": "coder", "agent": coder.agent}]}
    scn = Scenario("t-live", "dev", "test", 7, [coder.make_pod()], acts, labels,
                   setup=lambda rec: coder.setup(rec, random.Random(1)))
    meta = record(scn, tmp_path / "out", progress=False)
    assert meta["agent_errors"] == []
    raw = gzip.decompress((tmp_path / "out" / "events.jsonl.gz").read_bytes())
    assert b"sk-rec-" not in raw  # the agent's API key was removed on the node
    events = [e for line in raw.splitlines() for e in orjson.loads(line)["frame"]]
    uid = scn.pods[0].uid
    assert all(e["pod"]["uid"] == uid for e in events)
    kinds = {e["kind"] for e in events}
    assert {"process.exec", "net.dns", "llm.request", "llm.tool_call", "http.request"} <= kinds
    run = [e for e in events if e["kind"] == "process.exec"
           and "hello.py" in " ".join(e["data"].get("argv", []))]
    assert run and all(SCENARIO_EPOCH_NS + 60e9 <= e["ts"] < SCENARIO_EPOCH_NS + 120e9
                       for e in run)
    fetch = [e for e in events if e["kind"] == "http.request"
             and e["data"]["host"] == "api.github.com"]
    assert fetch and all(e["ts"] >= SCENARIO_EPOCH_NS + 7200e9 for e in fetch)
    doc = json.loads((tmp_path / "out" / "labels.json").read_text())
    assert doc["attacks"][0]["pod"]["uid"] == uid
    assert SCENARIO_EPOCH_NS == EPOCH_NS
