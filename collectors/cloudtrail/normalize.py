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
    "outcome_of",
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
    return value if isinstance(value, dict) else _EMPTY


_EMPTY: Mapping[str, Any] = {}


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


# requestParameters that name the thing acted on, by the name we give them (strings).
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
    ("instanceId", "instance_id"),
    ("snapshotId", "snapshot_id"),
    ("documentName", "document_name"),
    ("target", "target"),
    ("trailName", "trail"),
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


def _shared_with(request: Mapping[str, Any]) -> list[str]:
    """Accounts (or ``all`` = public) a snapshot/AMI is being shared with:
    ``createVolumePermission`` / ``launchPermission`` ``.add.items[].userId|group``."""
    out: list[str] = []
    for name in ("createVolumePermission", "launchPermission"):
        add = _obj(_obj(request.get(name)).get("add"))
        items = add.get("items")
        for item in items if isinstance(items, list) else ():
            item = _obj(item)
            who = _text(item.get("userId")) or _text(item.get("group"))
            if who:
                out.append(who)
    return out


_PARAM_NAMES: dict[str, str] = {}
for _src, _dst in _PARAMS:
    _PARAM_NAMES.setdefault(_src, _dst)


def _params(request: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = _PARAM_NAMES
    for src, value in request.items():  # a handful of keys: cheaper than probing all
        dst = names.get(src)
        if dst is not None and value and type(value) is str and dst not in out:
            out[dst] = value
    if "role_arn" in out and not _ARNISH.match(out["role_arn"]):
        out.pop("role_arn")
    iam_profile = request.get("iamInstanceProfile")  # ec2 RunInstances passes a role
    if isinstance(iam_profile, dict):
        ref = iam_profile.get("arn") or iam_profile.get("name")
        if isinstance(ref, str) and ref:
            out["instance_profile"] = ref
    if "createVolumePermission" in request or "launchPermission" in request:
        shared = _shared_with(request)
        if shared:
            out["shared_with"] = shared
    return out


# -- resources ------------------------------------------------------------------------------
# Each resource is typed (CloudFormation type names) and carries ``arn`` only when the
# value is an ARN, else ``name`` (chosen by a person: a user, a bucket, an alias) or
# ``id`` (issued by AWS: i-…, snap-…, a key id). A responder can then pivot on it.

_Res = dict[str, str]


class _Resources:
    """Collects typed resources, dropping repeats (and a name/id that an ARN listed by
    CloudTrail already names)."""

    __slots__ = ("out", "seen")

    def __init__(self) -> None:
        self.out: list[_Res] = []
        self.seen: set[str] = set()

    def add(self, rtype: str, value: Any, kind: str = "name") -> None:
        if not isinstance(value, str) or not value:
            return
        if _ARNISH.match(value):
            kind = "arn"
        elif any(r.get("arn", "").endswith(("/" + value, ":" + value)) for r in self.out):
            return
        mark = f"{kind}:{value}"
        if mark in self.seen:
            return
        self.seen.add(mark)
        self.out.append({"type": rtype, kind: value})


def _ec2_instance(res: _Resources, value: Any) -> None:
    res.add("AWS::EC2::Instance", value, "id")


def _items(value: Any, field: str) -> list[Any]:
    """``{"items": [{field: …}]}`` (EC2's request shape) → the values."""
    items = _obj(value).get("items")
    return [_obj(i).get(field) for i in items] if isinstance(items, list) else []


def _ssm_targets(res: _Resources, value: Any) -> None:
    """SendCommand ``targets``: ``[{"key": "InstanceIds"|"tag:Env"|…, "values": [...]}]``."""
    for target in value if isinstance(value, list) else ():
        target = _obj(target)
        key = _text(target.get("key") or target.get("Key"))
        values = target.get("values") or target.get("Values")
        for v in values if isinstance(values, list) else ():
            if key == "InstanceIds":
                _ec2_instance(res, v)
            elif isinstance(v, str):
                res.add("AWS::SSM::Target", f"{key}={v}")


def _ssm_target(res: _Resources, value: Any) -> None:
    """StartSession ``target``: an instance id, a managed instance ``mi-…``, or an ECS
    ``ecs:<cluster>_<task>_<container>`` target."""
    if isinstance(value, str) and value.startswith("i-"):
        _ec2_instance(res, value)
    elif isinstance(value, str) and value.startswith("mi-"):
        res.add("AWS::SSM::ManagedInstance", value, "id")
    else:
        res.add("AWS::SSM::Target", value)


def _kms_key(res: _Resources, value: Any) -> None:
    if not isinstance(value, str):
        return
    if value.startswith("alias/") or ":alias/" in value:
        res.add("AWS::KMS::Alias", value)
    else:
        res.add("AWS::KMS::Key", value, "id")


def _sqs_queue(res: _Resources, value: Any) -> None:
    res.add("AWS::SQS::Queue", value, "id")  # the queue URL


def _list_of(rtype: str, kind: str = "name") -> Any:
    def add(res: _Resources, value: Any) -> None:
        for v in value if isinstance(value, list) else (value,):
            res.add(rtype, v, kind)
    return add


def _one(rtype: str, kind: str = "name") -> Any:
    def add(res: _Resources, value: Any) -> None:
        res.add(rtype, value, kind)
    return add


def _in_items(rtype: str, field: str) -> Any:
    """EC2's ``{"items": [{field: id}]}`` sets (instancesSet, snapshotSet)."""
    def add(res: _Resources, value: Any) -> None:
        for v in _items(value, field):
            res.add(rtype, v, "id")
    return add


# requestParameters key → what it names, for every service
_COMMON: dict[str, Any] = {
    "instanceId": _ec2_instance,
    "instanceIds": _list_of("AWS::EC2::Instance", "id"),
    "instancesSet": _in_items("AWS::EC2::Instance", "instanceId"),
    "snapshotId": _one("AWS::EC2::Snapshot", "id"),
    "snapshotSet": _in_items("AWS::EC2::Snapshot", "snapshotId"),
    "volumeId": _one("AWS::EC2::Volume", "id"),
    "imageId": _one("AWS::EC2::Image", "id"),
    "groupId": _one("AWS::EC2::SecurityGroup", "id"),
    "keyName": _one("AWS::EC2::KeyPair"),
    "documentName": _one("AWS::SSM::Document"),
    "targets": _ssm_targets,
    "tableName": _one("AWS::DynamoDB::Table"),
    "roleArn": _one("AWS::IAM::Role"),
    "role": _one("AWS::IAM::Role"),
    "roleName": _one("AWS::IAM::Role"),
    "policyArn": _one("AWS::IAM::ManagedPolicy"),
    "userName": _one("AWS::IAM::User"),
    "groupName": _one("AWS::IAM::Group"),
    "instanceProfileName": _one("AWS::IAM::InstanceProfile"),
    "functionName": _one("AWS::Lambda::Function"),
    "modelId": _one("AWS::Bedrock::Model", "id"),
    "agentId": _one("AWS::Bedrock::Agent", "id"),
    "knowledgeBaseId": _one("AWS::Bedrock::KnowledgeBase", "id"),
    "secretId": _one("AWS::SecretsManager::Secret"),
    "keyId": _kms_key,
    "queueUrl": _sqs_queue,
    "topicArn": _one("AWS::SNS::Topic"),
    "trailName": _one("AWS::CloudTrail::Trail"),
}
# what ``name`` / ``names`` mean depends on the service
_NAME_BY_SERVICE = {
    "cloudtrail.amazonaws.com": "AWS::CloudTrail::Trail",
    "ssm.amazonaws.com": "AWS::SSM::Parameter",
    "secretsmanager.amazonaws.com": "AWS::SecretsManager::Secret",
    "eks.amazonaws.com": "AWS::EKS::Cluster",
}
# calls whose ``userName`` is not an IAM user (sign-in, Identity Center)
_NOT_IAM_USER = frozenset({"signin.amazonaws.com", "sso.amazonaws.com",
                           "sso-directory.amazonaws.com", "identitystore.amazonaws.com"})


def _resources(record: Mapping[str, Any], source: str,
               request: Mapping[str, Any] | None) -> list[_Res]:
    """What CloudTrail lists in ``resources``, plus what ``requestParameters`` name."""
    res = _Resources()
    listed = record.get("resources")
    for item in listed if isinstance(listed, list) else ():
        if isinstance(item, dict):
            rtype = _text(item.get("type"))
            res.add(rtype, item.get("ARN") or item.get("arn"), "id")
    if not request:
        return res.out
    bucket = request.get("bucketName")
    if isinstance(bucket, str) and bucket:
        key = request.get("key")
        if isinstance(key, str) and key:
            res.add("AWS::S3::Object", f"arn:aws:s3:::{bucket}/{key}")
        else:
            res.add("AWS::S3::Bucket", f"arn:aws:s3:::{bucket}")
    for name, value in request.items():
        handler = _COMMON.get(name)
        if handler is not None:
            if name == "userName" and source in _NOT_IAM_USER:
                continue
            handler(res, value)
    name_type = _NAME_BY_SERVICE.get(source)
    if name_type is not None:
        res.add(name_type, request.get("name"))
        names = request.get("names")
        for v in names if isinstance(names, list) else ():
            res.add(name_type, v)
    if source == "ssm.amazonaws.com":
        _ssm_target(res, request.get("target"))
    return res.out


# -- outcome --------------------------------------------------------------------------------
# Sign-in and MFA events record their result in responseElements (and Identity Center in
# serviceEventDetails), with no errorCode on failure: {"ConsoleLogin": "Failure"}.
_RESULT_FIELDS = ("ConsoleLogin", "CheckMfa", "SwitchRole", "ExitRole", "RenewRole",
                  "CredentialVerification", "CredentialChallenge", "UserAuthentication",
                  "PasswordUpdated", "ConsoleSignin")
_RESULT_EVENT_TYPES = frozenset({"AwsConsoleSignIn", "AwsServiceEvent", "AwsConsoleAction"})
# errorCodes some services log for calls that worked (an HTTP status, "OK"…)
_NOT_AN_ERROR = re.compile(r"^(?:2\d\d|OK|Success|NoError|None)$", re.IGNORECASE)


def _result_field(record: Mapping[str, Any]) -> str:
    """The ``Success``/``Failure`` a sign-in style event reports, lower-cased, else ""."""
    for section in ("responseElements", "serviceEventDetails", "additionalEventData"):
        obj = record.get(section)
        if not isinstance(obj, Mapping):
            continue
        for name in _RESULT_FIELDS:
            value = obj.get(name)
            if isinstance(value, str) and value:
                return value.lower()
    return ""


def outcome_of(record: Mapping[str, Any]) -> tuple[str, dict[str, str] | None]:
    """``("success"|"failure", error)`` from wherever the record says it.

    >>> outcome_of({"errorCode": "AccessDenied", "errorMessage": "Access Denied"})
    ('failure', {'code': 'AccessDenied', 'message': 'Access Denied'})
    >>> outcome_of({"eventType": "AwsConsoleSignIn", "errorMessage": "Failed authentication",
    ...             "responseElements": {"ConsoleLogin": "Failure"}})
    ('failure', {'code': 'ConsoleLogin.Failure', 'message': 'Failed authentication'})
    >>> outcome_of({"errorCode": "200"})
    ('success', None)
    """
    code = record.get("errorCode")
    code = str(code).strip() if code not in (None, "", False) else ""
    message = record.get("errorMessage")
    message = message if isinstance(message, str) else ("" if message is None else str(message))
    # only sign-in style events state their result in a response field
    result = (_result_field(record) if _text(record.get("eventType")) in _RESULT_EVENT_TYPES
              else "")
    if code and not _NOT_AN_ERROR.match(code):
        return "failure", {"code": code, "message": message}
    if result in ("failure", "failed"):
        name = next(n for n in _RESULT_FIELDS if _is_failure(record, n))
        return "failure", {"code": f"{name}.Failure", "message": message}
    if result:  # "success" (a stated result outranks a stray message)
        return "success", None
    if message and not code:  # a message and no code: CloudTrail only writes it on errors
        return "failure", {"code": "", "message": message}
    return "success", None


def _is_failure(record: Mapping[str, Any], name: str) -> bool:
    for section in ("responseElements", "serviceEventDetails", "additionalEventData"):
        value = _obj(record.get(section)).get(name)
        if isinstance(value, str) and value.lower() in ("failure", "failed"):
            return True
    return False


def _source_ips(value: Any) -> list[str]:
    """``sourceIPAddress`` is one address, a service name, or (behind proxies and some
    services) several addresses joined by commas."""
    if isinstance(value, list):
        return [v.strip() for v in value if isinstance(v, str) and v.strip()]
    if not isinstance(value, str):
        return []
    if "," not in value:
        return [value.strip()] if value.strip() else []
    return [v.strip() for v in value.split(",") if v.strip()]


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
        if not obj or not isinstance(obj, dict):
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
    request = request if isinstance(request, dict) else None
    params = _params(request) if request else {}
    outcome, error = outcome_of(record)
    ips = _source_ips(record.get("sourceIPAddress"))
    data: dict[str, Any] = {
        "service": source.removesuffix(".amazonaws.com"),
        "action": action,
        "outcome": outcome,
        "principal": _principal(ui),
        "source_ip": ips[0] if ips else "",
        "user_agent": _text(record.get("userAgent")),
        "region": _text(record.get("awsRegion")),
        "resources": _resources(record, source, request),
        "params": params,
        "read_only": _read_only(record.get("readOnly")),
        "event_id": _text(record.get("eventID")),
        "event_version": version,
        "event_type": _text(record.get("eventType")),
        "event_category": _text(record.get("eventCategory")),
        "account": _text(record.get("recipientAccountId")),
        "record": record,
    }
    if len(ips) > 1:
        data["source_ips"] = ips
    if error is not None:
        data["error"] = error
    sizes = _sizes(record)
    if sizes:
        data["size"] = sizes
    return ts, data
