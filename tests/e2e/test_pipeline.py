"""End to end on this machine: real agents, real collectors, real broker, real Faust worker.

The seed's scenario (topologies/scenarios/demo.py): a support bot on the official openai
SDK with an MCP server and IRSA credentials learns, then an injected ticket leads to a PII
query, an upload to a new domain and a secret read; a research agent runs beside it.
Exactly one story must come out, for the support bot, with its kernel, L7 and cloud steps
in event-time order and causally linked; none for the research agent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.ocsf import validate_detection_finding
from topologies.broker import EmbeddedBroker, free_port
from topologies.demo import missing_requirements, run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.root]


async def test_the_seeds_attack_is_one_cross_layer_story_and_the_benign_agent_has_none(
        tmp_path: Path) -> None:
    problems = missing_requirements()
    if problems:
        pytest.skip("; ".join(problems))
    # A broker of its own, as the demo has: the session broker holds other tests' raw
    # frames, which a new consumer group reads from the beginning too.
    with EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log") as broker:
        result = await run_scenario(broker.bootstrap_servers, tmp_path, learning_s=3600,
                                    min_events=20, timeout_s=240.0)
    assert result.meta["agent_errors"] == []
    assert result.stories_of("research") == []
    ours = result.stories_of("support")
    assert len(ours) == 1, [(d["finding_info"]["title"], [(s["layer"], s["signal"], s["ts"])
                             for s in d["unmapped"]["agentstory"]["chain"]]) for d in ours]
    [story] = ours
    assert validate_detection_finding(story) == []
    ext = story["unmapped"]["agentstory"]
    assert ext["agent"] == "support/Deployment/support-bot"
    chain = ext["chain"]
    kinds = [s["kind"] for s in chain]
    assert {"llm.request", "llm.tool_call", "process.exec", "cloud.api"} <= set(kinds)
    assert {s["layer"] for s in chain} == {"kernel", "l7", "cloud"}
    # The injected request comes first; the secret read is tied to the process that
    # reached the AWS endpoint; the upload's connection to its interpreter by lineage.
    assert chain[0]["kind"] == "llm.request" and chain[0]["evidence"]["injection"]["score"]
    cloud = next(s for s in chain if s["kind"] == "cloud.api")
    assert cloud["evidence"]["api"]["operation"] == "GetSecretValue"
    assert cloud["link"]["causal"] and cloud["link"]["type"] == "cloud endpoint"
    # The shell the tool runtime spawned is tied to the tool call, its interpreter to the
    # shell, the interpreter's connection to the new domain to the interpreter.
    spawned = [s for s in chain if s["kind"] == "process.exec"]
    assert spawned and all(s["link"]["causal"] for s in spawned)
    assert spawned[0]["link"]["type"] == "tool call → spawned process"
    upload = next(s for s in chain if s["kind"] == "net.connect")
    assert upload["link"] == {"to": chain.index(spawned[-1]) + 1, "type": "lineage",
                              "causal": True}
    assert story["activity_id"] == 3  # closed: the heartbeats passed the quiet period
    assert [s["ts"] for s in chain if s["layer"] != "cloud"] == sorted(
        s["ts"] for s in chain if s["layer"] != "cloud")
    assert story["severity_id"] >= 4
    assert "AML.T0051.001" in [a["uid"] for a in ext["atlas"]]
    assert result.meta["collectors"]["kernel"].get("lost", 0) == 0
