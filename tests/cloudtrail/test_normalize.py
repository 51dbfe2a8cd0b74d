from __future__ import annotations

import copy
import doctest

import pytest

from collectors.cloudtrail import normalize as normalize_module
from collectors.cloudtrail.normalize import RecordError, normalize, parse_expiration

from . import records as r

KEY = "ASIAEXAMPLEIRSAKEY01"


def test_doctests() -> None:
    assert doctest.testmod(normalize_module).failed == 0


def test_s3_data_event_fields() -> None:
    rec = r.s3_get_object("2026-11-21T05:30:00Z", r.assumed_role(KEY), "corp-data",
                          "exports/customers.csv", bytes_out=52_428_800)
    ts, data = normalize(rec)
    assert ts == 1795239000 * 10**9
    assert data["service"] == "s3"
    assert data["action"] == "GetObject"
    assert data["outcome"] == "success"
    assert "error" not in data
    assert data["principal"] == {
        "type": "AssumedRole",
        "arn": f"arn:aws:sts::{r.ACCOUNT}:assumed-role/agent-role/botocore-session-1795238539",
        "account": r.ACCOUNT, "access_key_id": KEY,
        "session_name": "botocore-session-1795238539", "invoked_by": "",
        "role_arn": f"arn:aws:iam::{r.ACCOUNT}:role/agent-role",
        "principal_id": "AROAEXAMPLEROLEID1234:botocore-session-1795238539",
    }
    assert data["params"] == {"bucket": "corp-data", "key": "exports/customers.csv"}
    arns = [res["arn"] for res in data["resources"]]
    assert arns == ["arn:aws:s3:::corp-data/exports/customers.csv", "arn:aws:s3:::corp-data"]
    assert data["size"] == {"bytes_in": 0, "bytes_out": 52_428_800}
    assert data["read_only"] is True
    assert data["region"] == r.REGION
    assert data["source_ip"] == "203.0.113.10"
    assert data["user_agent"].startswith("Boto3/")
    assert data["event_id"] == rec["eventID"]
    assert data["event_version"] == "1.08"
    assert data["event_category"] == "Data"
    assert data["record"] is rec  # the evidence, untouched


def test_does_not_mutate_the_record() -> None:
    rec = r.bedrock_invoke("2026-11-21T05:30:00Z", r.assumed_role(KEY))
    before = copy.deepcopy(rec)
    normalize(rec)
    assert rec == before


def test_bedrock_invoke_sizes_and_model() -> None:
    _, data = normalize(r.bedrock_invoke("2026-11-21T05:30:00Z", r.assumed_role(KEY),
                                         input_tokens=150_000))
    assert data["service"] == "bedrock"
    assert data["params"]["model_id"].startswith("anthropic.")
    assert data["size"] == {"input_tokens": 150_000, "output_tokens": 256}


def test_iam_writes() -> None:
    _, data = normalize(r.iam_create_access_key("2026-11-21T05:40:00Z", r.assumed_role(KEY)))
    assert (data["service"], data["action"], data["read_only"]) == (
        "iam", "CreateAccessKey", False)
    assert {"type": "AWS::IAM::User", "arn": "ci-deployer"} in data["resources"]
    _, data = normalize(r.lambda_create_function("2026-11-21T05:41:00Z", r.assumed_role(KEY)))
    assert data["params"]["role_arn"] == f"arn:aws:iam::{r.ACCOUNT}:role/admin-role"
    assert {"type": "AWS::IAM::Role", "arn": f"arn:aws:iam::{r.ACCOUNT}:role/admin-role"} \
        in data["resources"]


def test_failure_outcome() -> None:
    rec = r.with_(r.s3_get_object("2026-11-21T05:30:00Z", r.assumed_role(KEY), "b", "k"),
                  errorCode="AccessDenied", errorMessage="Access Denied")
    _, data = normalize(rec)
    assert data["outcome"] == "failure"
    assert data["error"] == {"code": "AccessDenied", "message": "Access Denied"}


def test_principal_without_arn_gets_a_stable_stand_in() -> None:
    _, web = normalize(r.irsa_assume("2026-11-21T05:20:00Z", "support", "support-bot", KEY))
    assert web["principal"]["arn"].startswith(r.OIDC_PROVIDER)
    assert web["principal"]["arn"].endswith("system:serviceaccount:support:support-bot")
    _, svc = normalize(r.pod_identity_assume("2026-11-21T05:20:00Z", "u", "p", "ns", "sa",
                                             "ASIAPODIDENTITYKEY01"))
    assert svc["principal"]["arn"] == "AWSService:pods.eks.amazonaws.com"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"eventVersion": "2.0"}, "eventVersion"),
        ({"eventVersion": None}, "eventVersion"),
        ({"eventTime": "yesterday"}, "eventTime"),
        ({"userIdentity": None}, "userIdentity"),
        ({"eventSource": ""}, "eventSource"),
        ({"eventName": None}, "eventName"),
    ],
)
def test_rejections_name_field_and_reason(change: dict[str, object], field: str) -> None:
    rec = r.with_(r.s3_get_object("2026-11-21T05:30:00Z", r.assumed_role(KEY), "b", "k"),
                  **change)
    with pytest.raises(RecordError) as info:
        normalize(rec)
    assert info.value.field == field
    assert info.value.reason


def test_unknown_major_reason_is_explicit() -> None:
    rec = r.with_(r.s3_get_object("2026-11-21T05:30:00Z", r.assumed_role(KEY), "b", "k"),
                  eventVersion="2.01")
    with pytest.raises(RecordError, match=r"unknown major version '2\.01'"):
        normalize(rec)


def test_not_an_object() -> None:
    with pytest.raises(RecordError, match="expected an object"):
        normalize(["not", "a", "record"])


@pytest.mark.parametrize("value", [
    "Nov 21, 2026, 6:22:19 AM", "Nov 21, 2026 6:22:19 AM", "2026-11-21T06:22:19Z",
    1795242139, 1795242139000,
])
def test_expiration_formats(value: object) -> None:
    assert parse_expiration(value) == 1795242139 * 10**9


def test_expiration_unreadable() -> None:
    assert parse_expiration("soon") is None
    assert parse_expiration(None) is None
