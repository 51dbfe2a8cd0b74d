"""deploy/kafka/topics.yaml: Strimzi KafkaTopic resources generated from the catalogue."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from streams.topics import CATALOGUE, WORKER_APP_ID, changelog
from topologies.worker import STATE_TABLE, worker_topics

ROOT = Path(__file__).resolve().parents[2]
GENERATE = ROOT / "deploy" / "kafka" / "generate.py"
TOPICS_YAML = ROOT / "deploy" / "kafka" / "topics.yaml"
SCHEMA = json.loads((Path(__file__).parent / "kafkatopic-v1beta2.schema.json").read_text())


def generated() -> str:
    return subprocess.run([sys.executable, str(GENERATE)], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def topics() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(TOPICS_YAML.read_text()) if d]


def test_committed_topics_match_the_catalogue() -> None:
    # Regenerate with: .venv/bin/python deploy/kafka/generate.py > deploy/kafka/topics.yaml
    assert TOPICS_YAML.read_text() == generated()


def test_every_topic_once_with_the_catalogue_shape(topics: list[dict[str, Any]]) -> None:
    expected = {s.name: s for s in [*CATALOGUE, *worker_topics()]}
    by_topic = {t["spec"]["topicName"]: t for t in topics}
    assert len(by_topic) == len(topics)
    assert set(by_topic) == set(expected)
    for name, spec in expected.items():
        resource = by_topic[name]["spec"]
        assert resource["partitions"] == spec.partitions, name
        assert resource["config"]["cleanup.policy"] == spec.cleanup_policy, name
        assert int(resource["config"]["retention.ms"]) == spec.retention_ms, name
        assert resource["replicas"] == 3
        assert int(resource["config"]["min.insync.replicas"]) < resource["replicas"]


def test_the_worker_changelog_is_named_as_faust_names_it(topics: list[dict[str, Any]]) -> None:
    name = changelog(WORKER_APP_ID, STATE_TABLE).name
    assert name == "agentstory-stories-agent_state-changelog"
    [resource] = [t for t in topics if t["spec"]["topicName"] == name]
    assert resource["spec"]["config"]["cleanup.policy"] == "compact"
    assert "_" not in resource["metadata"]["name"]  # not a valid resource name


def test_raw_topics_are_co_partitioned(topics: list[dict[str, Any]]) -> None:
    raw = [t["spec"]["partitions"] for t in topics if ".raw." in t["spec"]["topicName"]]
    assert len(raw) == 3 and len(set(raw)) == 1


def test_every_resource_validates_against_the_kafkatopic_schema(
        topics: list[dict[str, Any]]) -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    validator.check_schema(SCHEMA)
    for topic in topics:
        errors = [e.message for e in validator.iter_errors(topic)]
        assert errors == [], topic["metadata"]["name"]


def test_the_schema_rejects_what_strimzi_would(topics: list[dict[str, Any]]) -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    bad_name = json.loads(json.dumps(topics[0]))
    bad_name["metadata"]["name"] = "agentstory-stories-agent_state-changelog"
    no_cluster = json.loads(json.dumps(topics[0]))
    del no_cluster["metadata"]["labels"]["strimzi.io/cluster"]
    typo = json.loads(json.dumps(topics[0]))
    typo["spec"]["replicationFactor"] = 3
    for doc in (bad_name, no_cluster, typo):
        assert not validator.is_valid(doc)
