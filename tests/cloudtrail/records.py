"""CloudTrail records in the shapes AWS documents (field names, nesting, value formats),
with made-up ids. Builders take the few values a test varies and fill in the rest."""

from __future__ import annotations

import copy
import uuid
from typing import Any

ACCOUNT = "111122223333"
REGION = "us-west-2"
OIDC_ID = "EXAMPLED539D4633E53DE1B71EXAMPLE"
OIDC_PROVIDER = (
    f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.{REGION}.amazonaws.com/id/{OIDC_ID}")
SDK_UA = "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.1 md/arch#x86_64 lang/python#3.11.7"


def _event_id(seed: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed))


def _base(event_time: str, source: str, name: str, identity: dict[str, Any],
          *, seed: str, read_only: bool, region: str = REGION) -> dict[str, Any]:
    return {
        "eventVersion": "1.08",
        "userIdentity": identity,
        "eventTime": event_time,
        "eventSource": source,
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": "203.0.113.10",
        "userAgent": SDK_UA,
        "requestParameters": None,
        "responseElements": None,
        "requestID": _event_id("req" + seed).upper().replace("-", "")[:16],
        "eventID": _event_id(seed),
        "readOnly": read_only,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
        "tlsDetails": {
            "tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": f"{source.split('.')[0]}.{region}.amazonaws.com",
        },
    }


def irsa_assume(event_time: str, namespace: str, sa: str, access_key: str, *,
                expiration: str = "Nov 21, 2026, 6:22:19 AM",
                role: str = "agent-role") -> dict[str, Any]:
    """sts:AssumeRoleWithWebIdentity as the SDK in an IRSA pod makes it."""
    subject = f"system:serviceaccount:{namespace}:{sa}"
    identity = {
        "type": "WebIdentityUser",
        "principalId": f"{OIDC_PROVIDER}:sts.amazonaws.com:{subject}",
        "userName": subject,
        "identityProvider": OIDC_PROVIDER,
    }
    rec = _base(event_time, "sts.amazonaws.com", "AssumeRoleWithWebIdentity", identity,
                seed=f"irsa{access_key}", read_only=True)
    session = "botocore-session-1795238539"
    rec["requestParameters"] = {
        "roleArn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
        "roleSessionName": session,
    }
    rec["responseElements"] = {
        "credentials": {"accessKeyId": access_key, "expiration": expiration},
        "subjectFromWebIdentityToken": subject,
        "assumedRoleUser": {
            "assumedRoleId": f"AROAEXAMPLEROLEID1234:{session}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
        },
        "provider": OIDC_PROVIDER,
        "audience": "sts.amazonaws.com",
    }
    rec["resources"] = [{"accountId": ACCOUNT, "type": "AWS::IAM::Role",
                         "ARN": f"arn:aws:iam::{ACCOUNT}:role/{role}"}]
    return rec


def pod_identity_assume(event_time: str, pod_uid: str, pod_name: str, namespace: str,
                        sa: str, access_key: str, *, cluster: str = "prod",
                        tags: bool = True, role: str = "pi-role",
                        expiration: str = "Nov 21, 2026, 11:22:19 AM") -> dict[str, Any]:
    """sts:AssumeRole that the EKS Pod Identity agent's service makes for a pod."""
    identity = {"type": "AWSService", "invokedBy": "pods.eks.amazonaws.com"}
    rec = _base(event_time, "sts.amazonaws.com", "AssumeRole", identity,
                seed=f"pi{access_key}", read_only=True)
    rec["sourceIPAddress"] = "pods.eks.amazonaws.com"
    rec["userAgent"] = "pods.eks.amazonaws.com"
    session = f"eks-{cluster}-{pod_name}-{_event_id(pod_uid)[:8]}"[:64]
    request: dict[str, Any] = {
        "roleArn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
        "roleSessionName": session,
        "durationSeconds": 21600,
    }
    if tags:
        request["tags"] = [
            {"key": "eks-cluster-arn",
             "value": f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/{cluster}"},
            {"key": "eks-cluster-name", "value": cluster},
            {"key": "kubernetes-namespace", "value": namespace},
            {"key": "kubernetes-service-account", "value": sa},
            {"key": "kubernetes-pod-name", "value": pod_name},
            {"key": "kubernetes-pod-uid", "value": pod_uid},
        ]
        request["transitiveTagKeys"] = [
            "eks-cluster-arn", "eks-cluster-name", "kubernetes-namespace",
            "kubernetes-service-account", "kubernetes-pod-name", "kubernetes-pod-uid",
        ]
    rec["requestParameters"] = request
    rec["responseElements"] = {
        "credentials": {"accessKeyId": access_key, "expiration": expiration},
        "assumedRoleUser": {
            "assumedRoleId": f"AROAEXAMPLEPIROLE5678:{session}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
        },
        "packedPolicySize": 7,
    }
    rec["resources"] = [{"accountId": ACCOUNT, "type": "AWS::IAM::Role",
                         "ARN": f"arn:aws:iam::{ACCOUNT}:role/{role}"}]
    return rec


def assumed_role(access_key: str, role: str = "agent-role",
                 session: str = "botocore-session-1795238539", *,
                 web_identity: bool = False) -> dict[str, Any]:
    """userIdentity of a call signed with temporary role credentials (``web_identity``:
    from AssumeRoleWithWebIdentity, as IRSA sessions are)."""
    identity = {
        "type": "AssumedRole",
        "principalId": f"AROAEXAMPLEROLEID1234:{session}",
        "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
        "accountId": ACCOUNT,
        "accessKeyId": access_key,
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role", "principalId": "AROAEXAMPLEROLEID1234",
                "arn": f"arn:aws:iam::{ACCOUNT}:role/{role}", "accountId": ACCOUNT,
                "userName": role,
            },
            "attributes": {"creationDate": "2026-11-21T05:20:00Z", "mfaAuthenticated": "false"},
        },
    }
    if web_identity:
        identity["sessionContext"]["webIdFederationData"] = {  # type: ignore[index]
            "federatedProvider": OIDC_PROVIDER, "attributes": {}}
    return identity


def api_call(event_time: str, identity: dict[str, Any], source: str, name: str,
             request: dict[str, Any] | None = None, *, read_only: bool = True,
             seed: str = "") -> dict[str, Any]:
    """Any management event: the common fields plus the given requestParameters."""
    rec = _base(event_time, source, name, identity, seed=f"{source}{name}{event_time}{seed}",
                read_only=read_only)
    rec["requestParameters"] = request
    return rec


def s3_get_object(event_time: str, identity: dict[str, Any], bucket: str, key: str, *,
                  bytes_out: int = 1024, seed: str = "") -> dict[str, Any]:
    """An S3 data event (GetObject)."""
    rec = _base(event_time, "s3.amazonaws.com", "GetObject", identity,
                seed=f"s3{bucket}{key}{event_time}{seed}", read_only=True)
    rec["requestParameters"] = {
        "bucketName": bucket, "Host": f"{bucket}.s3.{REGION}.amazonaws.com", "key": key,
    }
    rec["additionalEventData"] = {
        "SignatureVersion": "SigV4", "CipherSuite": "TLS_AES_128_GCM_SHA256",
        "bytesTransferredIn": 0, "AuthenticationMethod": "AuthHeader",
        "x-amz-id-2": "EXAMPLEid2", "bytesTransferredOut": bytes_out,
    }
    rec["resources"] = [
        {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
        {"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
    ]
    rec["managementEvent"] = False
    rec["eventCategory"] = "Data"
    return rec


def bedrock_invoke(event_time: str, identity: dict[str, Any], *,
                   model: str = "anthropic.claude-3-haiku-20240307-v1:0",
                   input_tokens: int = 812, output_tokens: int = 256) -> dict[str, Any]:
    rec = _base(event_time, "bedrock.amazonaws.com", "InvokeModel", identity,
                seed=f"br{event_time}{input_tokens}", read_only=True)
    rec["requestParameters"] = {"modelId": model}
    rec["additionalEventData"] = {"inputTokens": input_tokens, "outputTokens": output_tokens}
    rec["resources"] = [{"accountId": ACCOUNT, "type": "AWS::Bedrock::Model",
                         "ARN": f"arn:aws:bedrock:{REGION}::foundation-model/{model}"}]
    return rec


def iam_create_access_key(event_time: str, identity: dict[str, Any],
                          user: str = "ci-deployer") -> dict[str, Any]:
    rec = _base(event_time, "iam.amazonaws.com", "CreateAccessKey", identity,
                seed=f"iam{event_time}{user}", read_only=False, region="us-east-1")
    rec["requestParameters"] = {"userName": user}
    rec["responseElements"] = {"accessKey": {
        "userName": user, "accessKeyId": "AKIAEXAMPLENEWKEY123", "status": "Active",
        "createDate": "Nov 21, 2026, 5:40:00 AM"}}
    return rec


def lambda_create_function(event_time: str, identity: dict[str, Any],
                           role: str = "admin-role") -> dict[str, Any]:
    """CreateFunction passes a role (the iam:PassRole a detection looks for)."""
    rec = _base(event_time, "lambda.amazonaws.com", "CreateFunction20150331", identity,
                seed=f"lambda{event_time}{role}", read_only=False)
    rec["requestParameters"] = {
        "functionName": "exfil", "runtime": "python3.12", "handler": "app.handler",
        "role": f"arn:aws:iam::{ACCOUNT}:role/{role}",
    }
    return rec


def node_role_call(event_time: str, instance_id: str = "i-0abc1234def567890",
                   role: str = "eks-node-role") -> dict[str, Any]:
    """ec2:DescribeInstances by a node's instance profile credentials (the VPC CNI)."""
    identity = assumed_role("ASIANODEEXAMPLEKEY01", role=role, session=instance_id)
    identity["sessionContext"]["ec2RoleDelivery"] = "2.0"
    rec = _base(event_time, "ec2.amazonaws.com", "DescribeInstances", identity,
                seed=f"ec2{event_time}{instance_id}", read_only=True)
    rec["requestParameters"] = {"instancesSet": {}, "filterSet": {}}
    rec["userAgent"] = "amazon-vpc-cni-k8s"
    return rec


def iam_user() -> dict[str, Any]:
    return {
        "type": "IAMUser", "principalId": "AIDAEXAMPLEUSERID123",
        "arn": f"arn:aws:iam::{ACCOUNT}:user/alice", "accountId": ACCOUNT,
        "accessKeyId": "AKIAEXAMPLEALICE1234", "userName": "alice",
    }


def with_(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(record)
    out.update(changes)
    return out


def console_login(event_time: str, result: str = "Failure", *, user: str = "alice",
                  mfa_used: str = "No") -> dict[str, Any]:
    """signin:ConsoleLogin as CloudTrail writes it: the result is in responseElements,
    a failure carries ``errorMessage`` and no ``errorCode``."""
    identity = {"type": "IAMUser", "principalId": "AIDAEXAMPLEUSERID123",
                "accountId": ACCOUNT, "accessKeyId": "", "userName": user}
    if result == "Success":
        identity["arn"] = f"arn:aws:iam::{ACCOUNT}:user/{user}"
    rec = _base(event_time, "signin.amazonaws.com", "ConsoleLogin", identity,
                seed=f"login{event_time}{user}{result}", read_only=False, region="us-east-1")
    rec["userAgent"] = ("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 "
                        "Firefox/120.0")
    rec["responseElements"] = {"ConsoleLogin": result}
    rec["additionalEventData"] = {
        "LoginTo": "https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true",
        "MobileVersion": "No", "MFAUsed": mfa_used}
    if result == "Failure":
        rec["errorMessage"] = "Failed authentication"
    rec["eventType"] = "AwsConsoleSignIn"
    del rec["tlsDetails"]
    return rec


def check_mfa(event_time: str, result: str = "Failure") -> dict[str, Any]:
    """signin:CheckMfa (the MFA step of a console sign-in)."""
    identity = {"type": "IAMUser", "principalId": "AIDAEXAMPLEUSERID123",
                "accountId": ACCOUNT, "accessKeyId": "", "userName": "alice"}
    rec = _base(event_time, "signin.amazonaws.com", "CheckMfa", identity,
                seed=f"mfa{event_time}{result}", read_only=False, region="us-east-1")
    rec["responseElements"] = {"CheckMfa": result}
    rec["additionalEventData"] = {"MfaType": "Virtual MFA"}
    rec["eventType"] = "AwsConsoleSignIn"
    return rec


def ec2_get_password_data(event_time: str, identity: dict[str, Any],
                          instance: str = "i-0a1b2c3d4e5f60718") -> dict[str, Any]:
    rec = _base(event_time, "ec2.amazonaws.com", "GetPasswordData", identity,
                seed=f"gpd{event_time}{instance}", read_only=True)
    rec["requestParameters"] = {"instanceId": instance}
    rec["responseElements"] = None
    return rec


def ssm_send_command(event_time: str, identity: dict[str, Any], *,
                     instances: tuple[str, ...] = ("i-0a1b2c3d4e5f60718",),
                     tag_target: bool = False) -> dict[str, Any]:
    """ssm:SendCommand: ``instanceIds`` (or ``targets``), the document, hidden params."""
    rec = _base(event_time, "ssm.amazonaws.com", "SendCommand", identity,
                seed=f"ssm{event_time}{instances}{tag_target}", read_only=False)
    request: dict[str, Any] = {
        "documentName": "AWS-RunShellScript",
        "parameters": "HIDDEN_DUE_TO_SECURITY_REASONS",
        "interactive": False,
    }
    if tag_target:
        request["targets"] = [{"key": "tag:Environment", "values": ["prod"]},
                              {"key": "InstanceIds", "values": list(instances)}]
    else:
        request["instanceIds"] = list(instances)
    rec["requestParameters"] = request
    rec["responseElements"] = {"command": {
        "commandId": "2f8d9e4a-1111-4222-8333-444455556666",
        "documentName": "AWS-RunShellScript", "documentVersion": "$DEFAULT",
        "instanceIds": list(instances), "status": "Pending",
        "parameters": "HIDDEN_DUE_TO_SECURITY_REASONS"}}
    return rec


def ssm_start_session(event_time: str, identity: dict[str, Any],
                      target: str = "i-0a1b2c3d4e5f60718") -> dict[str, Any]:
    rec = _base(event_time, "ssm.amazonaws.com", "StartSession", identity,
                seed=f"sess{event_time}{target}", read_only=False)
    rec["requestParameters"] = {"target": target}
    rec["responseElements"] = {
        "sessionId": "agent-session-0a1b2c3d4e5f60718",
        "tokenValue": "Value hidden due to security reasons.",
        "streamUrl": f"wss://ssmmessages.{REGION}.amazonaws.com/v1/data-channel/"
                     "agent-session-0a1b2c3d4e5f60718?role=publish_subscribe"}
    return rec


def cloudtrail_stop_logging(event_time: str, identity: dict[str, Any], *,
                            trail: str = "management-events") -> dict[str, Any]:
    """cloudtrail:StopLogging; ``name`` is the trail's name or ARN."""
    rec = _base(event_time, "cloudtrail.amazonaws.com", "StopLogging", identity,
                seed=f"stop{event_time}{trail}", read_only=False)
    rec["requestParameters"] = {"name": trail}
    rec["responseElements"] = None
    return rec


def ec2_share_snapshot(event_time: str, identity: dict[str, Any], *,
                       snapshot: str = "snap-0123456789abcdef0",
                       account: str = "999988887777") -> dict[str, Any]:
    """ec2:ModifySnapshotAttribute adding createVolumePermission for another account."""
    rec = _base(event_time, "ec2.amazonaws.com", "ModifySnapshotAttribute", identity,
                seed=f"snap{event_time}{snapshot}", read_only=False)
    rec["requestParameters"] = {
        "snapshotId": snapshot,
        "createVolumePermission": {"add": {"items": [{"userId": account}]}},
        "attributeType": "CREATE_VOLUME_PERMISSION",
    }
    rec["responseElements"] = {"requestId": "b1c2d3e4-0000-4000-8000-000000000001",
                               "_return": True}
    return rec


def kms_decrypt(event_time: str, identity: dict[str, Any], *,
                key_id: str = "alias/prod-data") -> dict[str, Any]:
    """kms:Decrypt: CloudTrail lists the key's ARN in ``resources``; the request may
    name it by alias."""
    rec = _base(event_time, "kms.amazonaws.com", "Decrypt", identity,
                seed=f"kms{event_time}{key_id}", read_only=True)
    rec["requestParameters"] = {"keyId": key_id,
                                "encryptionAlgorithm": "SYMMETRIC_DEFAULT"}
    rec["resources"] = [{"accountId": ACCOUNT, "type": "AWS::KMS::Key",
                         "ARN": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/"
                                "1234abcd-12ab-34cd-56ef-1234567890ab"}]
    return rec


def eventbridge(record: dict[str, Any]) -> dict[str, Any]:
    """The EventBridge event a CloudTrail record becomes on the default bus (what the
    rule's SQS target receives as the message body)."""
    sign_in = record.get("eventType") == "AwsConsoleSignIn"
    return {
        "version": "0",
        "id": _event_id("eb" + str(record.get("eventID"))),
        "detail-type": ("AWS Console Sign In via CloudTrail" if sign_in
                        else "AWS API Call via CloudTrail"),
        "source": "aws." + str(record["eventSource"]).split(".")[0],
        "account": ACCOUNT,
        "time": record["eventTime"],
        "region": record.get("awsRegion", REGION),
        "resources": [],
        "detail": record,
    }
