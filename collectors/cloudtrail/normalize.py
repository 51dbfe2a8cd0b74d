"""One CloudTrail record → the ``data`` of a ``cloud.api`` envelope (pure).

The stream layer baselines *who called what on which resource, how much, and did it
work*; this module extracts exactly that from the many shapes CloudTrail records take,
and keeps the original record (``data["record"]``) so a story can show its evidence.

A record that cannot be trusted (missing required fields, an ``eventVersion`` whose
major we do not know, a time we cannot read) raises :class:`RecordError` with the field
and the reason, so the caller can send it to the dead-letter topic instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "KIND",
    "KNOWN_MAJOR_VERSIONS",
    "RecordError",
    "normalize",
    "parse_event_time",
    "parse_expiration",
    "session_name_of",
]

KIND = "cloud.api"
# eventVersion 1.0 … 1.11 so far; a new major would mean fields changed meaning.
KNOWN_MAJOR_VERSIONS = frozenset({"1"})
REQUIRED = ("eventVersion", "eventTime", "eventSource", "eventName", "userIdentity")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_TIME_CACHE: dict[str, int] = {}
_TIME_CACHE_MAX = 4096


class RecordError(ValueError):
    """A record we refuse to normalize; ``field`` names where it broke."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _to_ns(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _US * 1000


def parse_event_time(value: Any) -> int:
    """``eventTime`` (ISO 8601, UTC, ``Z``) → integer nanoseconds since the epoch.

    Records of one file share a handful of distinct seconds, so parsed values are
    memoized (bounded) — this is the hottest line of the collector.

    >>> parse_event_time("2026-11-21T05:22:19Z")
    1795238539000000000
    """
    if not isinstance(value, str):
        raise RecordError("eventTime", f"expected an ISO 8601 string, got {type(value).__name__}")
    cached = _TIME_CACHE.get(value)
    if cached is not None:
        return cached
    try:
        ns = _to_ns(datetime.fromisoformat(value))
    except ValueError as exc:
        raise RecordError("eventTime", f"not an ISO 8601 time: {value!r}") from exc
    if len(_TIME_CACHE) >= _TIME_CACHE_MAX:
        _TIME_CACHE.clear()
    _TIME_CACHE[value] = ns
    return ns


# STS writes credentials.expiration in a human format ("Nov 21, 2026, 6:22:19 AM",
# older records without the second comma); some tools re-export it as ISO 8601.
_EXPIRATION_FORMATS = ("%b %d, %Y, %I:%M:%S %p", "%b %d, %Y %I:%M:%S %p")


def parse_expiration(value: Any) -> int | None:
    """``responseElements.credentials.expiration`` → ns, or None when unreadable.

    >>> parse_expiration("Nov 21, 2026, 6:22:19 AM") == parse_event_time("2026-11-21T06:22:19Z")
    True
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 10**11 else value  # epoch ms or s
        return int(seconds * 1_000_000_000)
    if not isinstance(value, str) or not value:
        return None
    for fmt in _EXPIRATION_FORMATS:
        try:
            return _to_ns(datetime.strptime(value, fmt))
        except ValueError:
            continue
    try:
        return _to_ns(datetime.fromisoformat(value))
    except ValueError:
        return None


def session_name_of(arn: str | None) -> str:
    """The session part of ``arn:aws:sts::<acct>:assumed-role/<role>/<session>``.

    >>> session_name_of("arn:aws:sts::111122223333:assumed-role/node-role/i-0abc1234def567890")
    'i-0abc1234def567890'
    """
    if not arn:
        return ""
    _, _, resource = arn.partition(":assumed-role/")
    if resource:
        return resource.partition("/")[2]
    _, _, resource = arn.partition(":federated-user/")
    return resource


def _role_name_of(arn: str) -> str:
    _, _, resource = arn.partition(":assumed-role/")
    return resource.partition("/")[0]


def _text(value: Any) -> str:
    """Strings as they are; anything else (a number, null, an object where a string
    belongs) as empty, so one odd field cannot break the record."""
    return value if isinstance(value, str) else ""


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _principal(ui: Mapping[str, Any]) -> dict[str, Any]:
    """Who acted. ``arn`` is the principal's ARN; when CloudTrail gives none (a web
    identity before it assumed a role, an AWS service, an anonymous caller) it is a
    stable stand-in so that unattributed events are still keyed per principal."""
    ptype = _text(ui.get("type")) or "Unknown"
    arn = _text(ui.get("arn"))
    principal_id = _text(ui.get("principalId"))
    invoked_by = _text(ui.get("invokedBy"))
    user_name = _text(ui.get("userName"))
    context = _obj(ui.get("sessionContext"))
    role_arn = _text(_obj(context.get("sessionIssuer")).get("arn"))
    if not arn:
        if principal_id.startswith("arn:"):
            arn = principal_id  # WebIdentityUser: provider ARN + ":" + subject
        else:
            arn = f"{ptype}:{invoked_by or principal_id or user_name or 'unknown'}"
    out: dict[str, Any] = {
        "type": ptype,
        "arn": arn,
        "account": _text(ui.get("accountId")),
        "access_key_id": _text(ui.get("accessKeyId")),
        "session_name": session_name_of(arn),
        "invoked_by": invoked_by,
    }
    if role_arn:
        out["role_arn"] = role_arn
    elif ptype == "AssumedRole" and ":assumed-role/" in arn:
        out["role_name"] = _role_name_of(arn)
    if principal_id:
        out["principal_id"] = principal_id
    if user_name:
        out["user_name"] = user_name
    identity_provider = _text(ui.get("identityProvider"))
    if identity_provider:
        out["identity_provider"] = identity_provider
    # Sessions from AssumeRoleWithWebIdentity (IRSA) name their OIDC provider.
    federated = _text(_obj(context.get("webIdFederationData")).get("federatedProvider"))
    if federated:
        out["web_identity_provider"] = federated
    return out


# requestParameters that name the thing acted on, by the name we give them.
_PARAMS = (
    ("bucketName", "bucket"),
    ("key", "key"),
    ("tableName", "table"),
    ("roleArn", "role_arn"),
    ("role", "role_arn"),  # lambda CreateFunction: the role it passes
    ("roleName", "role_name"),
    ("policyArn", "policy_arn"),
    ("userName", "user_name"),
    ("functionName", "function"),
    ("modelId", "model_id"),
    ("secretId", "secret_id"),
    ("keyId", "kms_key_id"),
    ("queueUrl", "queue_url"),
    ("topicArn", "topic_arn"),
    ("name", "name"),
)
_SIZE_FIELDS = (
    ("bytesTransferredIn", "bytes_in"),
    ("bytesTransferredOut", "bytes_out"),
    ("inputTokens", "input_tokens"),
    ("outputTokens", "output_tokens"),
    ("inputTokenCount", "input_tokens"),
    ("outputTokenCount", "output_tokens"),
    ("requestBodySize", "request_bytes"),
    ("responseBodySize", "response_bytes"),
)
_ARNISH = re.compile(r"^arn:aws[a-z-]*:")


def _params(request: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for src, dst in _PARAMS:
        value = request.get(src)
        if isinstance(value, str) and value and dst not in out:
            out[dst] = value
    if "role_arn" in out and not _ARNISH.match(out["role_arn"]):
        out.pop("role_arn")
    iam_profile = request.get("iamInstanceProfile")  # ec2 RunInstances passes a role
    if isinstance(iam_profile, Mapping):
        ref = iam_profile.get("arn") or iam_profile.get("name")
        if isinstance(ref, str) and ref:
            out["instance_profile"] = ref
    return out


def _resources(record: Mapping[str, Any], params: Mapping[str, str]) -> list[dict[str, str]]:
    """ARNs CloudTrail lists, plus what requestParameters name (bucket/key, table…)."""
    out: list[dict[str, str]] = []
    seen: set[str] = set()

    def add(rtype: str, ident: str) -> None:
        if ident and ident not in seen:
            seen.add(ident)
            out.append({"type": rtype, "arn": ident})

    listed = record.get("resources")
    for res in listed if isinstance(listed, list) else ():
        if isinstance(res, Mapping):
            add(str(res.get("type") or ""), str(res.get("ARN") or res.get("arn") or ""))
    bucket = params.get("bucket")
    if bucket:
        key = params.get("key")
        if key:
            add("AWS::S3::Object", f"arn:aws:s3:::{bucket}/{key}")
        else:
            add("AWS::S3::Bucket", f"arn:aws:s3:::{bucket}")
    for name, rtype in (
        ("table", "AWS::DynamoDB::Table"), ("role_arn", "AWS::IAM::Role"),
        ("policy_arn", "AWS::IAM::Policy"), ("model_id", "AWS::Bedrock::Model"),
        ("function", "AWS::Lambda::Function"), ("secret_id", "AWS::SecretsManager::Secret"),
        ("kms_key_id", "AWS::KMS::Key"), ("queue_url", "AWS::SQS::Queue"),
        ("topic_arn", "AWS::SNS::Topic"), ("user_name", "AWS::IAM::User"),
    ):
        if name in params:
            add(rtype, params[name])
    return out


def _number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return None
    return None


def _sizes(record: Mapping[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for section in ("additionalEventData", "requestParameters", "responseElements"):
        obj = record.get(section)
        if not isinstance(obj, Mapping):
            continue
        for src, dst in _SIZE_FIELDS:
            if src in obj and dst not in out:
                number = _number(obj[src])
                if number is not None:
                    out[dst] = number
    return out


def _read_only(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):  # a few services logged "true"/"false" as strings
        return {"true": True, "false": False}.get(value.lower())
    return None


def normalize(record: Any) -> tuple[int, dict[str, Any]]:
    """Validate one record and return ``(ts_ns, data)`` for a ``cloud.api`` envelope.

    Raises :class:`RecordError` for records we will not guess about. ``data`` shares
    the original record object (``data["record"]``) rather than copying it.
    """
    if not isinstance(record, Mapping):
        raise RecordError("record", f"expected an object, got {type(record).__name__}")
    for name in REQUIRED:
        if not record.get(name):
            raise RecordError(name, "required field missing")
    version = record["eventVersion"]
    if not isinstance(version, str):
        raise RecordError("eventVersion", f"expected a string, got {type(version).__name__}")
    major = version.partition(".")[0]
    if major not in KNOWN_MAJOR_VERSIONS:
        raise RecordError("eventVersion", f"unknown major version {version!r} (this reader: 1.x)")
    ui = record["userIdentity"]
    if not isinstance(ui, Mapping):
        raise RecordError("userIdentity", f"expected an object, got {type(ui).__name__}")
    source = record["eventSource"]
    action = record["eventName"]
    if not isinstance(source, str) or not isinstance(action, str):
        raise RecordError("eventSource", "eventSource and eventName must be strings")
    ts = parse_event_time(record["eventTime"])

    request = record.get("requestParameters")
    params = _params(request) if isinstance(request, Mapping) else {}
    error_code = record.get("errorCode")
    data: dict[str, Any] = {
        "service": source.removesuffix(".amazonaws.com"),
        "action": action,
        "outcome": "failure" if error_code else "success",
        "principal": _principal(ui),
        "source_ip": _text(record.get("sourceIPAddress")),
        "user_agent": _text(record.get("userAgent")),
        "region": _text(record.get("awsRegion")),
        "resources": _resources(record, params),
        "params": params,
        "read_only": _read_only(record.get("readOnly")),
        "event_id": _text(record.get("eventID")),
        "event_version": version,
        "event_type": _text(record.get("eventType")),
        "event_category": _text(record.get("eventCategory")),
        "account": _text(record.get("recipientAccountId")),
        "record": record,
    }
    if error_code:
        data["error"] = {"code": str(error_code), "message": str(record.get("errorMessage") or "")}
    sizes = _sizes(record)
    if sizes:
        data["size"] = sizes
    return ts, data
