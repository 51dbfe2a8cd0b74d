"""``agentstory enforce policy AGENT`` reads the agent's record from the profiles topic
(real broker) and prints a policy that validates, in audit mode."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from collectors.enforce.policy import parse_policy
from streams.topics import PROFILES

pytestmark = pytest.mark.kafka
AGENT = "support/Deployment/support-bot"


async def _publish(bootstrap: str, record: dict[str, object]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(PROFILES.name, orjson.dumps(record), key=AGENT.encode())
    finally:
        await producer.stop()


def test_policy_from_the_profiles_topic(kafka_bootstrap: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from topologies.cli import main

    record = {"agent": AGENT, "phase": "enforce-ready", "events_learned": 900,
              "first_seen": "2026-11-30T00:00:00Z", "last_seen": "2026-11-30T02:00:00Z",
              "dimensions": {"process.exe": {"distinct": 1, "top": [
                  {"value": "/usr/local/bin/python3", "count": 40}]}},
              "policy": {"destinations": [{"domain": "api.openai.com", "addrs": ["10.1.2.3"],
                                           "port": 443, "protocol": "tcp"}]}}
    asyncio.run(_publish(kafka_bootstrap, record))
    assert main(["enforce", "policy", AGENT, "--bootstrap-servers", kafka_bootstrap]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    policy = parse_policy(doc)
    assert (policy.agent, policy.mode) == (AGENT, "audit")
    assert [(d.name, d.ports) for d in policy.domains] == [("api.openai.com", (443,))]
    assert policy.executables == ("/usr/local/bin/python3",)
    assert main(["enforce", "policy", "nobody/Deployment/x",
                 "--bootstrap-servers", kafka_bootstrap]) == 1
    assert "no profile for nobody/Deployment/x" in capsys.readouterr().err
