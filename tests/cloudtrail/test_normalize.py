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
    assert {"type": "AWS::IAM::User", "name": "ci-deployer"} in data["resources"]
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


# -- outcome: every place CloudTrail records it -------------------------------------------

def _get(**changes: object) -> dict[str, object]:
    return r.with_(r.s3_get_object("2026-11-21T05:30:00Z", r.assumed_role(KEY), "b", "k"),
                   **changes)


@pytest.mark.parametrize(("rec", "outcome", "error"), [
    (r.console_login("2026-11-21T05:30:00Z", "Failure"), "failure",
     {"code": "ConsoleLogin.Failure", "message": "Failed authentication"}),
    (r.console_login("2026-11-21T05:30:00Z", "Success"), "success", None),
    (r.check_mfa("2026-11-21T05:30:00Z", "Failure"), "failure",
     {"code": "CheckMfa.Failure", "message": ""}),
    (r.check_mfa("2026-11-21T05:30:00Z", "Success"), "success", None),
    (_get(errorCode="AccessDenied", errorMessage="Access Denied"), "failure",
     {"code": "AccessDenied", "message": "Access Denied"}),
    (_get(errorCode="Client.UnauthorizedOperation"), "failure",
     {"code": "Client.UnauthorizedOperation", "message": ""}),
    (_get(errorCode="200"), "success", None),
    (_get(errorCode="204", errorMessage=None), "success", None),
    (_get(errorCode=""), "success", None),
    (_get(errorCode=None), "success", None),
    (_get(errorCode=403, errorMessage="Forbidden"), "failure",
     {"code": "403", "message": "Forbidden"}),
    (_get(errorMessage="The security token included in the request is expired"), "failure",
     {"code": "", "message": "The security token included in the request is expired"}),
])
def test_outcome_shapes(rec: dict[str, object], outcome: str,
                        error: dict[str, str] | None) -> None:
    _, data = normalize(rec)
    assert data["outcome"] == outcome
    assert data.get("error") == error


# -- resources: typed, and ``arn`` only ever an ARN -----------------------------------------

ROLE = r.assumed_role(KEY)
INSTANCE = "i-0a1b2c3d4e5f60718"


@pytest.mark.parametrize(("rec", "expected"), [
    (r.ec2_get_password_data("2026-11-21T05:30:00Z", ROLE),
     [{"type": "AWS::EC2::Instance", "id": INSTANCE}]),
    (r.ssm_send_command("2026-11-21T05:30:00Z", ROLE, instances=(INSTANCE, "i-0fff")),
     [{"type": "AWS::SSM::Document", "name": "AWS-RunShellScript"},
      {"type": "AWS::EC2::Instance", "id": INSTANCE},
      {"type": "AWS::EC2::Instance", "id": "i-0fff"}]),
    (r.ssm_send_command("2026-11-21T05:30:00Z", ROLE, tag_target=True),
     [{"type": "AWS::SSM::Document", "name": "AWS-RunShellScript"},
      {"type": "AWS::SSM::Target", "name": "tag:Environment=prod"},
      {"type": "AWS::EC2::Instance", "id": INSTANCE}]),
    (r.ssm_start_session("2026-11-21T05:30:00Z", ROLE),
     [{"type": "AWS::EC2::Instance", "id": INSTANCE}]),
    (r.ssm_start_session("2026-11-21T05:30:00Z", ROLE, target="mi-0123456789abcdef0"),
     [{"type": "AWS::SSM::ManagedInstance", "id": "mi-0123456789abcdef0"}]),
    (r.cloudtrail_stop_logging("2026-11-21T05:30:00Z", ROLE),
     [{"type": "AWS::CloudTrail::Trail", "name": "management-events"}]),
    (r.cloudtrail_stop_logging(
        "2026-11-21T05:30:00Z", ROLE,
        trail=f"arn:aws:cloudtrail:{r.REGION}:{r.ACCOUNT}:trail/management-events"),
     [{"type": "AWS::CloudTrail::Trail",
       "arn": f"arn:aws:cloudtrail:{r.REGION}:{r.ACCOUNT}:trail/management-events"}]),
    (r.ec2_share_snapshot("2026-11-21T05:30:00Z", ROLE),
     [{"type": "AWS::EC2::Snapshot", "id": "snap-0123456789abcdef0"}]),
    (r.kms_decrypt("2026-11-21T05:30:00Z", ROLE),
     [{"type": "AWS::KMS::Key",
       "arn": f"arn:aws:kms:{r.REGION}:{r.ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
      {"type": "AWS::KMS::Alias", "name": "alias/prod-data"}]),
    (r.kms_decrypt("2026-11-21T05:30:00Z", ROLE, key_id="1234abcd-12ab-34cd-56ef-1234567890ab"),
     [{"type": "AWS::KMS::Key",
       "arn": f"arn:aws:kms:{r.REGION}:{r.ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"}]),
    (r.api_call("2026-11-21T05:30:00Z", ROLE, "secretsmanager.amazonaws.com",
                "GetSecretValue", {"secretId": "prod/db"}),
     [{"type": "AWS::SecretsManager::Secret", "name": "prod/db"}]),
    (r.api_call("2026-11-21T05:30:00Z", ROLE, "iam.amazonaws.com", "AttachUserPolicy",
                {"userName": "backdoor",
                 "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
     [{"type": "AWS::IAM::User", "name": "backdoor"},
      {"type": "AWS::IAM::ManagedPolicy",
       "arn": "arn:aws:iam::aws:policy/AdministratorAccess"}]),
    (r.api_call("2026-11-21T05:30:00Z", ROLE, "iam.amazonaws.com", "PutRolePolicy",
                {"roleName": "ops", "policyName": "inline", "policyDocument": "{}"}),
     [{"type": "AWS::IAM::Role", "name": "ops"}]),
    (r.api_call("2026-11-21T05:30:00Z", ROLE, "sts.amazonaws.com", "AssumeRole",
                {"roleArn": f"arn:aws:iam::{r.ACCOUNT}:role/admin", "roleSessionName": "x"}),
     [{"type": "AWS::IAM::Role", "arn": f"arn:aws:iam::{r.ACCOUNT}:role/admin"}]),
    (r.api_call("2026-11-21T05:30:00Z", ROLE, "bedrock.amazonaws.com", "InvokeModel",
                {"modelId": "anthropic.claude-3-haiku-20240307-v1:0"}),
     [{"type": "AWS::Bedrock::Model", "id": "anthropic.claude-3-haiku-20240307-v1:0"}]),
    (r.api_call("2026-11-21T05:30:00Z", ROLE, "lambda.amazonaws.com", "Invoke",
                {"functionName": f"arn:aws:lambda:{r.REGION}:{r.ACCOUNT}:function:exfil"}),
     [{"type": "AWS::Lambda::Function",
       "arn": f"arn:aws:lambda:{r.REGION}:{r.ACCOUNT}:function:exfil"}]),
    (r.api_call("2026-11-21T05:30:00Z", ROLE, "ec2.amazonaws.com", "StopInstances",
                {"instancesSet": {"items": [{"instanceId": INSTANCE}]}, "force": False}),
     [{"type": "AWS::EC2::Instance", "id": INSTANCE}]),
    (r.api_call("2026-11-21T05:30:00Z", ROLE, "ssm.amazonaws.com", "GetParameters",
                {"names": ["/prod/db/password", "/prod/api/key"], "withDecryption": True}),
     [{"type": "AWS::SSM::Parameter", "name": "/prod/db/password"},
      {"type": "AWS::SSM::Parameter", "name": "/prod/api/key"}]),
    (r.console_login("2026-11-21T05:30:00Z"), []),
])
def test_resources_per_service(rec: dict[str, object], expected: list[dict[str, str]]) -> None:
    _, data = normalize(rec)
    assert data["resources"] == expected


def test_bedrock_listed_model_arn_is_not_repeated_as_an_id() -> None:
    _, data = normalize(r.bedrock_invoke("2026-11-21T05:30:00Z", r.assumed_role(KEY)))
    assert data["resources"] == [{
        "type": "AWS::Bedrock::Model",
        "arn": f"arn:aws:bedrock:{r.REGION}::foundation-model/"
               "anthropic.claude-3-haiku-20240307-v1:0"}]


def test_snapshot_share_names_the_receiving_account() -> None:
    _, data = normalize(r.ec2_share_snapshot("2026-11-21T05:30:00Z", r.assumed_role(KEY)))
    assert data["params"]["snapshot_id"] == "snap-0123456789abcdef0"
    assert data["params"]["shared_with"] == ["999988887777"]


def test_arn_field_only_ever_holds_an_arn() -> None:
    recs = [
        r.iam_create_access_key("2026-11-21T05:30:00Z", r.assumed_role(KEY)),
        r.kms_decrypt("2026-11-21T05:30:00Z", r.assumed_role(KEY)),
        r.api_call("2026-11-21T05:30:00Z", r.assumed_role(KEY), "bedrock.amazonaws.com",
                   "InvokeModel", {"modelId": "amazon.titan-text-express-v1"}),
        r.with_(r.kms_decrypt("2026-11-21T05:30:00Z", r.assumed_role(KEY)),
                resources=[{"type": "AWS::KMS::Key", "ARN": "not-an-arn"}]),
    ]
    for rec in recs:
        _, data = normalize(rec)
        for res in data["resources"]:
            assert "arn" not in res or res["arn"].startswith("arn:aws"), res
            assert res["type"] and len(res) == 2


@pytest.mark.parametrize(("value", "first", "all_"), [
    ("203.0.113.10", "203.0.113.10", None),
    ("203.0.113.10, 10.0.3.7", "203.0.113.10", ["203.0.113.10", "10.0.3.7"]),
    ("2001:db8::1,10.0.3.7", "2001:db8::1", ["2001:db8::1", "10.0.3.7"]),
    ("ec2.amazonaws.com", "ec2.amazonaws.com", None),
    (None, "", None),
])
def test_source_ip_lists(value: object, first: str, all_: list[str] | None) -> None:
    _, data = normalize(_get(sourceIPAddress=value))
    assert data["source_ip"] == first
    assert data.get("source_ips") == all_
