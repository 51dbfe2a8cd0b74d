"""End to end on this machine: real bcc collector, real broker, real Faust worker.

Two agent pods (kubelet-shaped cgroups) run their routine while learning; one then
spawns a shell. Exactly one story must come out, for that pod, as an OCSF 2004 finding.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.ocsf import validate_detection_finding
from topologies.demo import missing_requirements, run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.root]


async def test_one_story_for_the_unexpected_shell_and_none_for_the_benign_agent(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    problems = missing_requirements()
    if problems:
        pytest.skip("; ".join(problems))
    result = await run_scenario(kafka_bootstrap, tmp_path, learning_s=4.0, min_events=8,
                                timeout_s=120.0)
    assert result.stories_of(result.benign) == []
    [story] = result.stories_of(result.compromised)
    assert validate_detection_finding(story) == []
    ext = story["unmapped"]["agentstory"]
    assert ext["agent"] == "support/Deployment/support-bot"
    assert ext["pod"]["name"] == result.compromised.name
    assert ext["baseline_phase"] == "monitoring"
    first = ext["chain"][0]
    assert (first["layer"], first["kind"], first["evidence"]["exe"]) == \
        ("kernel", "process.exec", "/bin/sh")
    assert story["severity_id"] == 4
    assert "T1059.004" in [a["technique"]["uid"] for a in story["finding_info"]["attacks"]]
    assert result.publisher_stats["dropped_spool_full"] == 0
    assert result.collector_stats["lost"] == 0
