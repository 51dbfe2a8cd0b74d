"""deploy/connect/elasticsearch-sink.json: the stories topic upserted into Elasticsearch."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest

from streams.topics import CATALOGUE, DEADLETTER, STORIES, by_name

ROOT = Path(__file__).resolve().parents[2]
CONNECTOR = ROOT / "deploy" / "connect" / "elasticsearch-sink.json"
TEMPLATE = ROOT / "deploy" / "elasticsearch" / "index-template.json"

# What the Confluent Elasticsearch sink needs to upsert schemaless JSON stories keyed by
# story uid: (key, required value or None for "present and non-empty").
REQUIRED: list[tuple[str, str | None]] = [
    ("connector.class", "io.confluent.connect.elasticsearch.ElasticsearchSinkConnector"),
    ("topics", None),
    ("connection.url", None),
    ("key.ignore", "false"),  # the record key (story uid) is the document _id
    ("schema.ignore", "true"),  # schemaless JSON: the index template maps the fields
    ("write.method", "upsert"),  # insert drops a replayed story version with a lower offset
    ("behavior.on.null.values", "delete"),  # a tombstone on the compacted topic deletes
    ("key.converter", "org.apache.kafka.connect.storage.StringConverter"),
    ("value.converter", "org.apache.kafka.connect.json.JsonConverter"),
    ("value.converter.schemas.enable", "false"),
    ("errors.tolerance", "all"),
    ("errors.deadletterqueue.topic.name", None),
]


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    doc = json.loads(CONNECTOR.read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(("key", "value"), REQUIRED, ids=[k for k, _ in REQUIRED])
def test_required_settings(config: dict[str, Any], key: str, value: str | None) -> None:
    assert key in config
    if value is None:
        assert config[key].strip()
    else:
        assert config[key] == value


def test_values_are_strings_as_the_rest_api_takes_them(config: dict[str, Any]) -> None:
    assert all(isinstance(v, str) for v in config.values())


def test_it_reads_the_stories_topic_of_the_catalogue(config: dict[str, Any]) -> None:
    topics = [t.strip() for t in config["topics"].split(",")]
    assert topics == [STORIES.name]
    for topic in topics:
        spec = by_name(topic)
        # Upsert by key mirrors compaction by key: both keep the latest story version.
        assert spec.key == "story uid" and spec.cleanup_policy == "compact"


def test_sink_errors_do_not_mix_with_the_agentstory_dead_letters(config: dict[str, Any]) -> None:
    # Connect's DLQ holds the failed record as-is with error headers; the agentstory
    # dead-letter topic has its own contract (reason, stage, origin, original bytes).
    dlq = config["errors.deadletterqueue.topic.name"]
    assert dlq != DEADLETTER.name
    assert dlq not in {s.name for s in CATALOGUE}
    assert re.fullmatch(r"[a-zA-Z0-9._-]{1,249}", dlq)
    assert int(config["errors.deadletterqueue.topic.replication.factor"]) >= 1


def routed_index(config: dict[str, Any], topic: str) -> str:
    """The index a record of ``topic`` is written to, as Connect's transforms chain it."""
    for alias in [a.strip() for a in config.get("transforms", "").split(",") if a.strip()]:
        kind = config[f"transforms.{alias}.type"]
        assert kind == "org.apache.kafka.connect.transforms.RegexRouter", kind
        # RegexRouter uses Matcher.matches(): the whole topic name must match.
        match = re.fullmatch(config[f"transforms.{alias}.regex"], topic)
        if match:
            topic = match.expand(
                config[f"transforms.{alias}.replacement"].replace("$", "\\"))
    return topic


def test_the_index_is_a_valid_name_covered_by_the_index_template(
        config: dict[str, Any]) -> None:
    index = routed_index(config, STORIES.name)
    assert index == "agentstory-stories-v1"
    # Elasticsearch index names: lowercase, no \ / * ? " < > | space , #, not starting
    # with - _ +, not . or ..
    assert index == index.lower()
    assert not re.search(r'[\\/*?"<>| ,#:]', index)
    assert not index.startswith(("-", "_", "+")) and index not in (".", "..")
    patterns = json.loads(TEMPLATE.read_text())["index_patterns"]
    assert any(fnmatch.fnmatchcase(index, p) for p in patterns)
