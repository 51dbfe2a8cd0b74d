"""Every recording's labels validate against the schema and name events that happened;
the held-out labels are the ones whose hashes were committed before any tuning."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest

from tests.eval.evaluate import RECORDINGS, load_recording, resolve_steps

SCHEMA = json.loads((Path(__file__).parent / "labels.schema.json").read_text())
FOLDERS = sorted(p.parent for p in RECORDINGS.glob("*/*/labels.json"))


def _id(folder: Path) -> str:
    return f"{folder.parent.name}/{folder.name}"


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_there_are_development_and_held_out_recordings() -> None:
    splits = {f.parent.name for f in FOLDERS}
    assert {"dev", "heldout"} <= splits


@pytest.mark.parametrize("folder", FOLDERS, ids=_id)
def test_labels_validate(folder: Path) -> None:
    doc = json.loads((folder / "labels.json").read_text())
    jsonschema.validate(doc, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert doc["split"] == folder.parent.name
    assert doc["recording"] == folder.name


def test_the_schema_rejects_offsets_and_unknown_fields() -> None:
    bad = {"recording": "r", "split": "dev", "version": 1, "benign": [], "attacks": [{
        "id": "a", "category": "c", "description": "something happened",
        "pod": {"uid": "0e5c1b8a-1111-4222-8333-944445555666", "namespace": "n", "name": "p"},
        "steps": [{"name": "at offset", "kind": "process.exec", "layer": "kernel",
                   "where": {"offset": 1234}}]}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


@pytest.mark.parametrize("folder", FOLDERS, ids=_id)
def test_every_labelled_step_names_events_of_the_recording(folder: Path) -> None:
    rec = load_recording(folder)
    uids = {e.pod.uid for e in rec.events if e.pod is not None}
    for ref in rec.labels["benign"]:
        assert ref["uid"] in uids, "a benign pod without events"
    for attack in rec.labels["attacks"]:
        assert attack["pod"]["uid"] in uids, "an attacked pod without events"
        resolved = resolve_steps(rec, attack)
        missing = [i for i, r in enumerate(resolved) if not r]
        assert not missing, f"label steps {missing} match no event of the recording"


def test_held_out_labels_match_their_committed_hashes() -> None:
    folder = RECORDINGS / "heldout"
    lines = (folder / "LABELS.sha256").read_text().split("\n")
    committed = dict(reversed(line.split(maxsplit=1)) for line in lines if line.strip())
    actual = {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in folder.glob("*/labels.json")}
    assert actual == committed
