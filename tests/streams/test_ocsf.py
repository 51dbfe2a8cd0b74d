"""Stories are checked against the compiled OCSF 1.5.0 schema, not a typed model of it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from streams.ocsf import OCSF_VERSION, schema, validate_detection_finding
from tests.streams.build_ocsf_schema import dumps, reduce

MINIMAL: dict[str, Any] = {
    "class_uid": 2004, "category_uid": 2, "activity_id": 1, "type_uid": 200401,
    "severity_id": 4, "time": 1763700000000,
    "metadata": {"version": "1.5.0",
                 "product": {"name": "agentstory", "vendor_name": "agentstory"}},
    "finding_info": {"uid": "as-1", "title": "t"},
}

# What a cross-layer story carries: a process with its parent and image file, a file it
# read, the endpoint it reached, the cloud API call, the pod as a resource and the raw
# events it was built from.
FULL: dict[str, Any] = {
    "class_uid": 2004, "class_name": "Detection Finding",
    "category_uid": 2, "category_name": "Findings",
    "activity_id": 2, "activity_name": "Update", "type_uid": 200402,
    "type_name": "Detection Finding: Update",
    "severity_id": 5, "severity": "Critical", "status_id": 1, "status": "New",
    "time": 1763700005000, "start_time": 1763700000000, "end_time": 1763700005000,
    "count": 4, "risk_score": 87, "risk_level_id": 3, "risk_level": "High",
    "confidence_id": 2, "is_alert": True,
    "message": "credential access after a shell in pod support/support-bot-7d9",
    "metadata": {"version": "1.5.0", "uid": "as-1", "sequence": 3,
                 "profiles": ["container", "security_control"],
                 "product": {"name": "agentstory", "vendor_name": "agentstory",
                             "version": "0.1.0"}},
    "finding_info": {
        "uid": "as-1", "title": "Credential access after a shell",
        "first_seen_time": 1763700000000, "last_seen_time": 1763700005000,
        "types": ["kernel.shell_spawn", "cloud.secret_read"],
        "data_sources": ["kernel", "cloud"],
        "analytic": {"uid": "kernel.shell_spawn", "name": "agentstory baseline",
                     "type_id": 2, "type": "Behavioral"},
        "attacks": [{"technique": {"uid": "T1059.004", "name": "Unix Shell"},
                     "tactic": {"uid": "TA0002", "name": "Execution"}}],
        "related_events": [{"uid": "kernel:node-a:17:1", "type": "process.exec"},
                           {"uid": "cloudtrail:3f2a", "type": "cloud.api",
                            "product_uid": "aws"}],
    },
    "resources": [{
        "uid": "0c6d1c7e-8f0e-4f5e-9d8c-1f2e3d4c5b6a", "name": "support-bot-7d9",
        "namespace": "support", "type": "Kubernetes Pod",
        "labels": ["app=support-bot"], "hostname": "support-bot-7d9",
        "data": {"service_account": "support-bot", "node": "node-a"},
    }],
    "evidences": [
        {"name": "process.exec", "uid": "kernel:node-a:17:1",
         "process": {
             "pid": 4242, "uid": "node-a:1763700000000000000:4242", "name": "sh",
             "cmd_line": "sh -c 'cat /var/run/secrets/kubernetes.io/serviceaccount/token'",
             "created_time": 1763700000000,
             "file": {"path": "/bin/sh", "name": "sh", "type_id": 1, "type": "Regular File"},
             "parent_process": {"pid": 4200, "name": "python3", "cmd_line": "python3 agent.py",
                                "file": {"path": "/usr/bin/python3", "name": "python3",
                                         "type_id": 1}},
             "container": {"uid": "containerd://ab12", "name": "agent",
                           "image": {"uid": "sha256:ab12", "name": "ghcr.io/acme/agent"}},
             "namespace_pid": 17,
         }},
        {"name": "file.open", "file": {
            "path": "/var/run/secrets/kubernetes.io/serviceaccount/token",
            "name": "token", "type_id": 1}},
        {"name": "net.connect",
         "dst_endpoint": {"ip": "203.0.113.7", "port": 443,
                          "hostname": "secretsmanager.us-east-1.amazonaws.com",
                          "domain": "amazonaws.com"},
         "src_endpoint": {"ip": "10.1.2.3", "port": 51234},
         "connection_info": {"direction_id": 2, "direction": "Outbound",
                             "protocol_name": "tcp", "protocol_num": 6}},
        {"name": "cloud.api", "api": {"operation": "GetSecretValue",
                                      "service": {"name": "secretsmanager.amazonaws.com"}},
         "data": {"why": "never-seen action for this agent", "novelty": 0.99}},
    ],
    "unmapped": {"agentstory": {"chain": [{"anything": ["goes", 1, None]}]}},
}


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def _drop(doc: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return doc


def test_a_minimal_finding_conforms() -> None:
    assert validate_detection_finding(MINIMAL) == []


def test_a_cross_layer_story_with_process_file_endpoint_api_pod_and_related_events() -> None:
    assert validate_detection_finding(FULL) == []


@pytest.mark.parametrize(("path", "expect"), [
    (("finding_info", "titel"), "finding_info.titel: not an attribute of finding_info"),
    (("metadata", "product", "vendor"), "metadata.product.vendor: not an attribute of product"),
    (("evidences", 0, "process", "comand_line"),
     "evidences[0].process.comand_line: not an attribute of process"),
    (("evidences", 0, "process", "parent_process", "file", "pth"),
     "evidences[0].process.parent_process.file.pth: not an attribute of file"),
    (("evidences", 2, "dst_endpoint", "host"),
     "evidences[2].dst_endpoint.host: not an attribute of network_endpoint"),
    (("finding_info", "related_events", 1, "kind"),
     "finding_info.related_events[1].kind: not an attribute of related_event"),
    (("resources", 0, "pod"), "resources[0].pod: not an attribute of resource_details"),
    (("evidence",), "evidence: not an attribute of detection_finding"),
])
def test_a_misspelt_attribute_is_reported_where_it_is(path: tuple[Any, ...], expect: str) -> None:
    errors = validate_detection_finding(_set(FULL, path, "x"))
    assert any(e.startswith(expect) for e in errors), errors


@pytest.mark.parametrize("path", [
    ("finding_info",), ("metadata",), ("time",), ("severity_id",), ("activity_id",),
    ("finding_info", "uid"), ("metadata", "product"),
    ("evidences", 0, "process", "file", "name"), ("evidences", 1, "file", "type_id"),
    ("evidences", 3, "api", "operation"), ("finding_info", "related_events", 0, "uid"),
    ("finding_info", "analytic", "type_id"),
    ("evidences", 0, "process", "container", "image", "uid"),
    ("evidences", 2, "connection_info", "direction_id"),
])
def test_a_missing_required_attribute_is_reported(path: tuple[Any, ...]) -> None:
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    errors = validate_detection_finding(_drop(FULL, path))
    assert f"{where}: required attribute of" in "\n".join(errors), errors


@pytest.mark.parametrize(("path", "value", "expect"), [
    (("severity_id",), "high", "severity_id: expected integer_t, got string"),
    (("time",), 1763700000000.5, "time: expected long_t, got float"),
    (("time",), "2025-11-21T00:00:00Z", "time: expected long_t, got string"),
    (("count",), True, "count: expected integer_t, got boolean"),
    (("is_alert",), "yes", "is_alert: expected boolean_t, got string"),
    (("message",), 42, "message: expected string_t, got integer"),
    (("evidences", 0, "process", "pid"), "4242", "evidences[0].process.pid: expected integer_t"),
    (("evidences", 2, "dst_endpoint", "port"), 70000, "outside port_t range 0..65535"),
    (("evidences", 2, "dst_endpoint", "ip"), "not-an-ip", "is not a valid ip_t"),
    (("evidences",), {"name": "x", "data": {}}, "evidences: expected an array, got object"),
    (("finding_info",), [{"uid": "a"}], "finding_info: expected one object_t, got an array"),
    (("finding_info", "types"), "kernel.shell_spawn", "finding_info.types: expected an array"),
    (("evidences", 0, "process"), "sh", "evidences[0].process: expected a process object"),
    (("unmapped",), "text", "unmapped: expected an object, got string"),
    (("resources", 0, "name"), None, "resources[0].name: null"),
])
def test_a_wrong_type_is_reported(path: tuple[Any, ...], value: Any, expect: str) -> None:
    errors = validate_detection_finding(_set(FULL, path, value))
    assert any(expect in e for e in errors), errors


@pytest.mark.parametrize(("path", "value", "expect"), [
    (("severity_id",), 7, "severity_id: 7 is not one of OCSF's values"),
    (("evidences", 1, "file", "type_id"), 42, "evidences[1].file.type_id: 42 is not one of"),
    (("class_uid",), 2003, "class_uid: expected 2004"),
    (("type_uid",), 200401, "type_uid: must be class_uid * 100 + activity_id"),
    (("metadata", "version"), "1.1.0", "metadata.version: expected '1.5.0'"),
    (("activity_name",), "Create", "activity_name 'Create' does not match activity_id 2"),
    (("metadata", "profiles"), ["container", "kubernetes"], "'kubernetes' is not a profile"),
])
def test_enums_and_the_class_identity(path: tuple[Any, ...], value: Any, expect: str) -> None:
    errors = validate_detection_finding(_set(FULL, path, value))
    assert any(expect in e for e in errors), errors


def test_other_is_exempt_from_the_caption_check() -> None:
    doc = _set(_set(FULL, ("status_id",), 99), ("status",), "Triaged by bot")
    assert validate_detection_finding(doc) == []


def test_profile_attributes_need_their_profile_declared() -> None:
    without = _set(FULL, ("metadata", "profiles"), ["security_control"])
    assert validate_detection_finding(without) == [
        "evidences[0].process.container: attribute of the 'container' profile, "
        "which metadata.profiles does not list",
        "evidences[0].process.namespace_pid: attribute of the 'container' profile, "
        "which metadata.profiles does not list"]
    cloud_api = _set(FULL, ("api",), {"operation": "GetSecretValue"})
    assert any("api: attribute of the 'cloud' profile" in e
               for e in validate_detection_finding(cloud_api))
    declared = _set(cloud_api, ("metadata", "profiles"), ["container", "cloud"])
    assert validate_detection_finding(declared) == ["cloud: required attribute of "
                                                    "detection_finding is missing"]
    declared["cloud"] = {"provider": "AWS", "region": "us-east-1"}
    assert validate_detection_finding(declared) == []


def test_object_constraints() -> None:
    errors = validate_detection_finding(_set(FULL, ("evidences",), [{"name": "only a name"}]))
    assert errors == ["evidences[0]: evidences needs at least one of actor, api, "
                      "connection_info, data, database, databucket, device, dst_endpoint, "
                      "email, file, job, process, query, reg_key, reg_value, script, "
                      "src_endpoint, url, user, win_service"]
    errors = validate_detection_finding(_set(FULL, ("evidences", 2, "dst_endpoint"),
                                             {"port": 443}))
    assert errors[0].startswith("evidences[2].dst_endpoint: network_endpoint needs at least")


def test_free_form_places_accept_anything_and_nothing_else_does() -> None:
    doc = _set(FULL, ("evidences", 0, "data"), {"nested": {"deep": [1, {"x": None}]}})
    doc["unmapped"] = {"agentstory": {"whatever": {"goes": True}}}
    assert validate_detection_finding(doc) == []
    assert validate_detection_finding(["not", "a", "finding"]) == [  # type: ignore[arg-type]
        "<doc>: expected an object, got array"]


def test_the_check_does_not_mutate_the_document() -> None:
    doc = copy.deepcopy(FULL)
    validate_detection_finding(doc)
    assert doc == FULL


def test_the_schema_data_is_closed_and_versioned() -> None:
    data = schema()
    assert data["version"] == OCSF_VERSION
    assert data["class"]["uid"] == 2004 and data["provenance"]["license"].startswith("Apache")
    attrs = [data["class"]["attributes"], *(o["attributes"] for o in data["objects"].values())]
    for group in attrs:
        for attr in group.values():
            assert attr["type"] in data["types"] or attr["type"] == "object_t"
            if attr["type"] == "object_t":
                assert attr["object_type"] in data["objects"]
    # the attributes py-ocsf-models' EvidenceArtifacts lacks are in the data
    evidences = data["objects"]["evidences"]["attributes"]
    assert {"process", "file", "dst_endpoint", "src_endpoint", "connection_info", "api",
            "container", "actor", "url", "query"} <= set(evidences)


def test_the_generator_keeps_reachable_objects_and_what_a_validator_needs() -> None:
    export = {
        "version": OCSF_VERSION,
        "types": {"integer_t": {"caption": "Integer"}, "string_t": {},
                  "port_t": {"type": "integer_t", "range": [0, 65535], "caption": "Port"}},
        "classes": {"detection_finding": {
            "name": "detection_finding", "uid": 2004, "category_uid": 2, "profiles": ["cloud"],
            "attributes": {
                "severity_id": {"type": "integer_t", "requirement": "required",
                                "enum": {"99": {"caption": "Other"}, "1": {"caption": "Low"}},
                                "sibling": "severity", "description": "dropped"},
                "ep": {"type": "object_t", "requirement": "optional", "is_array": True,
                       "object_type": "endpoint_x", "profile": "cloud"}}}},
        "objects": {
            "endpoint_x": {"attributes": {"port": {"type": "port_t", "requirement": "optional",
                                                   "profile": None}},
                           "constraints": {"at_least_one": ["port"]}},
            "unreached": {"attributes": {}}},
    }
    reduced = reduce(export)
    assert reduced["class"]["attributes"] == {
        "ep": {"type": "object_t", "requirement": "optional", "is_array": True,
               "object_type": "endpoint_x", "profile": "cloud"},
        "severity_id": {"type": "integer_t", "requirement": "required",
                        "enum": {"1": "Low", "99": "Other"}, "sibling": "severity"}}
    assert reduced["objects"] == {"endpoint_x": {
        "attributes": {"port": {"type": "port_t", "requirement": "optional"}},
        "at_least_one": ["port"]}}
    assert reduced["types"]["port_t"] == {"type": "integer_t", "range": [0, 65535]}
    assert json.loads(dumps(reduced)) == reduced
