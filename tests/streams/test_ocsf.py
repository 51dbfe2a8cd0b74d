"""The OCSF check catches what py-ocsf-models alone would let through."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from streams.ocsf import validate_detection_finding

MINIMAL: dict[str, Any] = {
    "class_uid": 2004, "category_uid": 2, "activity_id": 1, "type_uid": 200401,
    "severity_id": 4, "time": 1763700000000,
    "metadata": {"version": "1.5.0",
                 "product": {"name": "agentstory", "vendor_name": "agentstory"}},
    "finding_info": {"uid": "as-1", "title": "t"},
}


def test_a_minimal_finding_conforms() -> None:
    assert validate_detection_finding(MINIMAL) == []


@pytest.mark.parametrize(("path", "value", "expect"), [
    (("finding_info", "titel"), "typo", "finding_info.titel: not an attribute"),
    (("metadata", "product", "vendor"), "x", "metadata.product.vendor: not an attribute"),
    (("class_uid",), 2003, "class_uid: expected 2004"),
    (("type_uid",), 200402, "type_uid: must be"),
    (("metadata", "version"), "1.1.0", "metadata.version"),
    (("severity_id",), "high", "severity_id"),
])
def test_departures_are_reported(path: tuple[str, ...], value: Any, expect: str) -> None:
    doc = copy.deepcopy(MINIMAL)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert any(expect in e for e in validate_detection_finding(doc)), \
        validate_detection_finding(doc)


@pytest.mark.parametrize("field", ["finding_info", "metadata", "time", "severity_id"])
def test_required_attributes(field: str) -> None:
    doc = {k: v for k, v in MINIMAL.items() if k != field}
    assert any(e.startswith(field) for e in validate_detection_finding(doc))


def test_unknown_fields_inside_lists_and_free_form_objects() -> None:
    doc = copy.deepcopy(MINIMAL)
    doc["evidences"] = [{"name": "process.exec", "data": {"anything": {"goes": 1}}},
                        {"nam": "typo"}]
    doc["unmapped"] = {"agentstory": {"free": "form"}}
    assert validate_detection_finding(doc) == [
        "evidences[1].nam: not an attribute of EvidenceArtifacts in OCSF 1.5.0"]
