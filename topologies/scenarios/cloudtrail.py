"""The recording's CloudTrail: one record per call the AWS stand-in received, in the
format AWS documents (eventVersion 1.08/1.09), on the scenario's event time.

Identities follow IRSA: ``AssumeRoleWithWebIdentity`` is made by a ``WebIdentityUser``
whose ``userName`` is ``system:serviceaccount:<ns>:<sa>``, and its
``responseElements.credentials.accessKeyId`` is the key later calls carry as
``userIdentity.accessKeyId`` of an ``AssumedRole``. S3 object reads are data events.
"""

from __future__ import annotations

import datetime
import hashlib
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from topologies.scenarios.world import AwsCall

__all__ = ["records_from_calls"]

ACCOUNT = "111122223333"
REGION = "us-west-2"
OIDC = (f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.{REGION}.amazonaws.com/id/"
        "EXAMPLED539D4633E53DE1B71EXAMPLE")
_SOURCES = {"sts": "sts.amazonaws.com", "s3": "s3.amazonaws.com", "iam": "iam.amazonaws.com",
            "secretsmanager": "secretsmanager.amazonaws.com"}
_READ_ONLY_PREFIXES = ("Get", "List", "Describe", "Head", "AssumeRole")


def _time(ts_ns: int) -> str:
    return datetime.datetime.fromtimestamp(ts_ns / 1e9, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _ids(seed: str) -> tuple[str, str]:
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, seed))
    return event_id, hashlib.md5(seed.encode()).hexdigest().upper()[:16]


def records_from_calls(calls: Iterable[AwsCall], to_event_ns: Callable[[int], int], *,
                       pod_ip: str, outside_ip: str) -> list[dict[str, Any]]:
    """CloudTrail records for ``calls``, in event-time order."""
    sessions: dict[str, dict[str, str]] = {}  # access key id → assumed role
    out: list[tuple[int, dict[str, Any]]] = []
    for n, call in enumerate(sorted(calls, key=lambda c: c.ts_ns)):
        ts = to_event_ns(call.ts_ns)
        outside = call.client == "outside"
        event_id, request_id = _ids(f"{call.ts_ns}:{n}:{call.operation}")
        source = _SOURCES.get(call.service, f"{call.service}.amazonaws.com")
        rec: dict[str, Any] = {
            "eventVersion": "1.09", "eventTime": _time(ts), "eventSource": source,
            "eventName": call.operation, "awsRegion": REGION,
            "sourceIPAddress": outside_ip if outside else pod_ip,
            "userAgent": call.user_agent or "aws-sdk", "requestParameters": None,
            "responseElements": None, "requestID": request_id, "eventID": event_id,
            "readOnly": call.operation.startswith(_READ_ONLY_PREFIXES),
            "eventType": "AwsApiCall", "managementEvent": True,
            "recipientAccountId": ACCOUNT, "eventCategory": "Management",
            "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                           "clientProvidedHostHeader": call.host},
        }
        if call.operation == "AssumeRoleWithWebIdentity":
            resp = call.response
            subject = resp.get("subject", "")
            rec["userIdentity"] = {
                "type": "WebIdentityUser",
                "principalId": f"{OIDC}:sts.amazonaws.com:{subject}",
                "userName": subject, "identityProvider": OIDC}
            rec["requestParameters"] = {"roleArn": call.params.get("RoleArn", ""),
                                        "roleSessionName": call.params.get("RoleSessionName", "")}
            if resp.get("accessKeyId"):
                rec["responseElements"] = {
                    "credentials": {"accessKeyId": resp["accessKeyId"],
                                    "expiration": _expiration(ts)},
                    "subjectFromWebIdentityToken": subject,
                    "assumedRoleUser": {
                        "assumedRoleId": f"AROAEXAMPLEROLEID1234:{resp['sessionName']}",
                        "arn": resp["assumedRoleArn"]},
                    "provider": OIDC, "audience": "sts.amazonaws.com"}
                sessions[resp["accessKeyId"]] = {
                    "arn": resp["assumedRoleArn"], "role": call.params.get("RoleArn", ""),
                    "session": resp["sessionName"]}
            rec["resources"] = [{"accountId": ACCOUNT, "type": "AWS::IAM::Role",
                                 "ARN": call.params.get("RoleArn", "")}]
        else:
            session = sessions.get(call.access_key_id, {
                "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/unknown/unknown",
                "role": f"arn:aws:iam::{ACCOUNT}:role/unknown", "session": "unknown"})
            rec["userIdentity"] = {
                "type": "AssumedRole",
                "principalId": f"AROAEXAMPLEROLEID1234:{session['session']}",
                "arn": session["arn"], "accountId": ACCOUNT,
                "accessKeyId": call.access_key_id,
                "sessionContext": {
                    "sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLEROLEID1234",
                                      "arn": session["role"], "accountId": ACCOUNT,
                                      "userName": session["role"].rsplit("/", 1)[-1]},
                    "webIdFederationData": {"federatedProvider": OIDC, "attributes": {}},
                    "attributes": {"creationDate": rec["eventTime"],
                                   "mfaAuthenticated": "false"}}}
            rec["requestParameters"] = _request_parameters(call)
            if call.service == "s3" and call.operation in ("GetObject", "PutObject",
                                                           "HeadObject"):
                rec["eventCategory"] = "Data"
                rec["managementEvent"] = False
                bucket, key = call.params.get("bucketName", ""), call.params.get("key", "")
                rec["resources"] = [
                    {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
                    {"accountId": ACCOUNT, "type": "AWS::S3::Bucket",
                     "ARN": f"arn:aws:s3:::{bucket}"}]
                rec["additionalEventData"] = {
                    "bytesTransferredIn": 0, "bytesTransferredOut": call.bytes_out,
                    "x-amz-id-2": hashlib.sha1(event_id.encode()).hexdigest(),
                    "SignatureVersion": "SigV4", "AuthenticationMethod": "AuthHeader"}
        out.append((ts, rec))
    out.sort(key=lambda item: item[0])
    return [rec for _ts, rec in out]


def _expiration(ts_ns: int) -> str:
    exp = datetime.datetime.fromtimestamp(ts_ns / 1e9 + 3600, datetime.UTC)
    return exp.strftime("%b %d, %Y, %-I:%M:%S %p")


def _request_parameters(call: AwsCall) -> dict[str, Any] | None:
    p = call.params
    if call.service == "s3":
        out: dict[str, Any] = {"bucketName": p.get("bucketName", ""),
                               "Host": call.host}
        if p.get("key"):
            out["key"] = p["key"]
        if "prefix" in p:
            out["prefix"] = p["prefix"]
            out["list-type"] = "2"
        return out if p.get("bucketName") else None
    if call.service == "secretsmanager" and "SecretId" in p:
        return {"secretId": p["SecretId"]}
    return None
