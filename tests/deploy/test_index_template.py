"""deploy/elasticsearch/index-template.json against a story the engine really produces."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.content import load_content
from streams.engine import SECOND_NS, EngineSettings, StoryEngine
from streams.events import Envelope, Pod, Proc
from streams.replay import Replayer
from tests.streams.scenario import attack, learning

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = json.loads((ROOT / "deploy" / "elasticsearch" / "index-template.json").read_text())
MAPPINGS = TEMPLATE["template"]["mappings"]
T0 = 1_763_700_000_000_000_000
# Every optional pod field set, so that every mapped pod field can be found.
POD = Pod(uid="pod-1", namespace="support", name="bot-1", agent="support/Deployment/bot",
          service_account="bot", container="bot", container_id="containerd://abc")


def exec_event(exe: str, second: float) -> Envelope:
    return Envelope("process.exec", T0 + int(second * SECOND_NS), "node-a", "kernel",
                    {"argv": [exe, "-x"], "cwd": "/app"}, pod=POD,
                    proc=Proc(pid=100, ppid=1, comm=exe.rsplit("/", 1)[-1], exe=exe))


@pytest.fixture(scope="module")
def story() -> dict[str, Any]:
    """The final version of the cross-layer scenario's story (every layer, every link)."""
    events = learning(seed=7, tickets=400)
    events += attack(events[-1].ts)
    replayer = Replayer(StoryEngine(load_content(), EngineSettings(
        learning_ns=1800 * SECOND_NS, min_events=10)))
    versions = replayer.feed(events) + replayer.finish()
    # What an upserting sink holds: the final version over the Create one (updates carry
    # no status, so the analyst's triage set on the document survives them).
    doc = {**versions[0].to_ocsf(), **versions[-1].to_ocsf()}
    assert doc["status"] == "New" and doc["activity_name"] == "Close"
    assert doc["finding_info"].get("attacks") and doc["unmapped"]["agentstory"]["atlas"]
    return doc


def mapped_leaves(props: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict]]:
    """(path, mapping) of every field the template maps; objects are walked into."""
    for name, mapping in props.items():
        path = f"{prefix}{name}"
        if "properties" in mapping:
            yield from mapped_leaves(mapping["properties"], f"{path}.")
        else:
            yield path, mapping


def document_leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every scalar in the document; arrays are walked through, as
    Elasticsearch indexes an array of objects under the same field paths."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from document_leaves(item, f"{prefix}{key}.")
    elif isinstance(value, list):
        for item in value:
            yield from document_leaves(item, prefix)
    else:
        yield prefix.rstrip("."), value


def document_paths(doc: dict[str, Any]) -> set[str]:
    """Every path of the document, leaves and the objects above them."""
    paths: set[str] = set()
    for leaf, _ in document_leaves(doc):
        parts = leaf.split(".")
        paths.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return paths


LEAVES = dict(mapped_leaves(MAPPINGS["properties"]))
OPAQUE = {p for p, m in LEAVES.items() if m.get("type") == "flattened" or m.get("enabled") is False}


def test_every_mapped_field_exists_in_a_real_story(story: dict[str, Any]) -> None:
    missing = sorted(set(LEAVES) - document_paths(story))
    assert missing == []


def test_every_story_field_is_mapped(story: dict[str, Any]) -> None:
    # dynamic is false: a field the engine adds is kept in _source but not searchable
    # until it is mapped here. This test is what notices.
    unmapped = sorted(
        leaf for leaf, _ in document_leaves(story)
        if leaf not in LEAVES and not any(leaf.startswith(f"{o}.") for o in OPAQUE))
    assert unmapped == []


def test_dynamic_mapping_is_off_on_purpose() -> None:
    assert MAPPINGS["dynamic"] == "false"  # not absent (true), not strict
    assert "dynamic" in MAPPINGS["_meta"]


def test_arbitrary_evidence_keys_cannot_explode_the_mapping(story: dict[str, Any]) -> None:
    assert LEAVES["evidences.data.evidence"] == {"type": "flattened"}
    assert LEAVES["unmapped.agentstory.chain"] == {"type": "object", "enabled": False}
    # The evidence really does carry per-kind keys the template does not name.
    keys = {k for e in story["evidences"] for k in e["data"]["evidence"]}
    assert {"process", "dst_endpoint", "api", "arguments", "injection"} <= keys


def test_times_are_epoch_milliseconds(story: dict[str, Any]) -> None:
    dates = [p for p, m in LEAVES.items() if m.get("type") == "date"]
    assert {"time", "start_time", "end_time", "finding_info.first_seen_time",
            "finding_info.last_seen_time"} <= set(dates)
    values = dict(document_leaves(story))
    for path in dates:
        assert LEAVES[path]["format"] == "epoch_millis"
        # 2001-09-09 .. 2286-11-20 in ms: a value in ns or s would fall outside.
        assert isinstance(values[path], int) and 10**12 <= values[path] < 10**13, path
    # The first step is the injected request of the scenario, in ns on the wire's chain.
    assert values["start_time"] == story["unmapped"]["agentstory"]["chain"][0]["ts"] // 10**6


@pytest.mark.parametrize("path", [
    "metadata.uid", "finding_info.uid", "resources.uid", "resources.name",
    "resources.namespace", "resources.data.agent", "unmapped.agentstory.agent",
    "unmapped.agentstory.pod.uid", "unmapped.agentstory.pod.namespace",
    "unmapped.agentstory.pod.name", "finding_info.attacks.technique.uid",
    "finding_info.attacks.tactic.uid", "unmapped.agentstory.atlas.uid", "severity",
    "finding_info.types",
])
def test_identifiers_are_keywords(path: str) -> None:
    assert LEAVES[path]["type"] == "keyword"


@pytest.mark.parametrize("path", [
    "finding_info.title", "message", "evidences.data.what", "evidences.data.why",
])
def test_prose_is_text_with_a_keyword(path: str) -> None:
    mapping = LEAVES[path]
    assert mapping["type"] == "text"
    assert mapping["fields"]["keyword"]["type"] == "keyword"


def test_composable_template_shape() -> None:
    assert set(TEMPLATE) <= {"index_patterns", "template", "priority", "version", "_meta",
                             "composed_of", "data_stream", "allow_auto_create"}
    # Not a data stream: data streams are append-only, and the sink upserts by story uid.
    assert "data_stream" not in TEMPLATE
    assert TEMPLATE["index_patterns"] and set(TEMPLATE["template"]) <= {
        "settings", "mappings", "aliases"}
    assert TEMPLATE["priority"] > 0
