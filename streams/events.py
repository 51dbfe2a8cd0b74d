"""The wire contract every part of agentstory speaks: envelopes, frames, dead letters.

An *envelope* is one observed event (kernel, L7 or cloud) attributed to a pod where
possible. A *frame* is what a raw-topic message carries: a JSON array of envelopes for
one key, so the stream layer pays its per-message cost once per batch.

This module is pure (no Kafka, no Faust, no bcc) so that collectors, stream processors,
replay and tests share exactly one definition.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "FAMILIES",
    "SCHEMA_VERSION",
    "SOURCES",
    "DecodedFrame",
    "Envelope",
    "InvalidEvent",
    "Pod",
    "Proc",
    "Rejected",
    "dead_letter",
    "decode_frame",
    "encode_frame",
]

SCHEMA_VERSION = 1
SOURCES = frozenset({"kernel", "l7", "cloud"})
# kind = "<family>.<name>"; the family says which layer and which processors care.
FAMILIES = frozenset(
    {"process", "file", "net", "syscall", "http", "llm", "mcp", "cloud", "collector",
     "enforce"}  # enforce.blocked / enforce.would_block / enforce.mode (collectors/enforce)
)
_KIND = re.compile(r"^([a-z]+)\.([a-z][a-z0-9_]*)$")


class InvalidEvent(ValueError):
    """An envelope or frame broke the contract; ``field`` names where."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Pod:
    """Who an event belongs to. ``agent`` is the baseline unit (namespace/kind/name)."""

    uid: str
    namespace: str = ""
    name: str = ""
    agent: str = ""
    service_account: str = ""
    container: str = ""
    container_id: str = ""

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in _pod_items(self) if v or k == "uid"}

    @classmethod
    def from_dict(cls, obj: Any) -> Pod:
        if not isinstance(obj, Mapping):
            raise InvalidEvent("pod", f"expected an object, got {type(obj).__name__}")
        uid = obj.get("uid")
        if not isinstance(uid, str) or not uid:
            raise InvalidEvent("pod.uid", "required non-empty string")
        values: dict[str, str] = {"uid": uid}
        for name in _POD_OPTIONAL:
            value = obj.get(name, "")
            if not isinstance(value, str):
                raise InvalidEvent(f"pod.{name}", f"expected a string, got {type(value).__name__}")
            values[name] = value
        return cls(**values)


_POD_OPTIONAL = ("namespace", "name", "agent", "service_account", "container", "container_id")


def _pod_items(pod: Pod) -> Iterable[tuple[str, str]]:
    yield "uid", pod.uid
    for name in _POD_OPTIONAL:
        yield name, getattr(pod, name)


@dataclass(frozen=True, slots=True)
class Proc:
    """The acting process. ``start_ns`` (boot-relative) makes ``node:start_ns:pid`` stable
    across pid reuse, which pid alone is not."""

    pid: int
    ppid: int = 0
    tid: int = 0
    uid: int = -1
    comm: str = ""
    exe: str = ""
    start_ns: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pid": self.pid}
        for name, default in _PROC_DEFAULTS.items():
            value = getattr(self, name)
            if value != default:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, obj: Any) -> Proc:
        if not isinstance(obj, Mapping):
            raise InvalidEvent("proc", f"expected an object, got {type(obj).__name__}")
        values: dict[str, Any] = {"pid": _int(obj.get("pid"), "proc.pid")}
        for name, default in _PROC_DEFAULTS.items():
            if name in obj:
                check = _int if isinstance(default, int) else _str
                values[name] = check(obj[name], f"proc.{name}")
        return cls(**values)


_PROC_DEFAULTS: dict[str, Any] = {
    "ppid": 0, "tid": 0, "uid": -1, "comm": "", "exe": "", "start_ns": 0,
}


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidEvent(name, f"expected an integer, got {type(value).__name__}")
    return value


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(name, f"expected a string, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class Envelope:
    """One observed event. ``ts`` is event time in integer nanoseconds since the epoch
    (UTC): windows and baselines run on it, never on wall-clock, so replays agree."""

    kind: str
    ts: int
    node: str
    source: str
    data: dict[str, Any] = field(default_factory=dict)
    pod: Pod | None = None
    proc: Proc | None = None
    v: int = SCHEMA_VERSION

    @property
    def family(self) -> str:
        return self.kind.partition(".")[0]

    @property
    def key(self) -> str:
        """The raw-topic key: the pod uid, else ``node/<name>`` (cloud events with no pod
        set ``data["principal"]["arn"]`` and are keyed by it)."""
        if self.pod is not None:
            return self.pod.uid
        if self.source == "cloud":
            principal = self.data.get("principal")
            if isinstance(principal, Mapping) and principal.get("arn"):
                return str(principal["arn"])
        return f"node/{self.node}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": self.v, "kind": self.kind, "ts": self.ts, "node": self.node,
            "source": self.source,
        }
        if self.pod is not None:
            out["pod"] = self.pod.to_dict()
        if self.proc is not None:
            out["proc"] = self.proc.to_dict()
        out["data"] = self.data
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Any) -> Envelope:
        """Validate and build; raises :class:`InvalidEvent` naming the first bad field."""
        if not isinstance(obj, Mapping):
            raise InvalidEvent("envelope", f"expected an object, got {type(obj).__name__}")
        v = obj.get("v")
        if v != SCHEMA_VERSION:
            raise InvalidEvent("v", f"unsupported schema version {v!r} (this reader: 1)")
        kind = obj.get("kind")
        if not isinstance(kind, str):
            raise InvalidEvent("kind", "required string")
        match = _KIND.match(kind)
        if match is None:
            raise InvalidEvent("kind", f"{kind!r} is not '<family>.<name>'")
        if match.group(1) not in FAMILIES:
            raise InvalidEvent("kind", f"unknown family {match.group(1)!r}")
        ts = _int(obj.get("ts"), "ts")
        if ts < 0:
            raise InvalidEvent("ts", "must be nanoseconds since the epoch (>= 0)")
        node = obj.get("node")
        if not isinstance(node, str) or not node:
            raise InvalidEvent("node", "required non-empty string")
        source = obj.get("source")
        if source not in SOURCES:
            raise InvalidEvent("source", f"{source!r} is not one of {sorted(SOURCES)}")
        data = obj.get("data", {})
        if not isinstance(data, dict):
            raise InvalidEvent("data", f"expected an object, got {type(data).__name__}")
        pod = Pod.from_dict(obj["pod"]) if obj.get("pod") is not None else None
        proc = Proc.from_dict(obj["proc"]) if obj.get("proc") is not None else None
        return cls(kind=kind, ts=ts, node=node, source=source, data=data, pod=pod, proc=proc)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A piece of input that broke the contract, kept whole for the dead-letter topic."""

    reason: str
    field: str
    original: bytes
    index: int | None = None  # position in the frame, None when the frame itself is bad


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    events: list[Envelope]
    rejected: list[Rejected]


def encode_frame(events: Iterable[Envelope]) -> bytes:
    return orjson.dumps([e.to_dict() for e in events])


def decode_frame(raw: bytes) -> DecodedFrame:
    """Decode a raw-topic message. Never raises on input: good envelopes come out as
    events, bad ones (or the whole message, if it is not a frame) as ``rejected``.

    A single JSON object is accepted as a frame of one, so a hand-typed event works.
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return DecodedFrame([], [Rejected(f"not JSON: {exc}", "frame", raw)])
    items = [doc] if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        reason = f"frame must be a JSON array of envelopes, got {type(doc).__name__}"
        return DecodedFrame([], [Rejected(reason, "frame", raw)])
    events: list[Envelope] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(items):
        try:
            events.append(Envelope.from_dict(item))
        except InvalidEvent as exc:
            rejected.append(Rejected(str(exc), exc.field, orjson.dumps(item), index))
    return DecodedFrame(events, rejected)


def dead_letter(
    rejected: Rejected, *, stage: str, topic: str | None = None,
    partition: int | None = None, offset: int | None = None, key: bytes | None = None,
) -> bytes:
    """The dead-letter message: why, where from, and the original bytes (as text when
    they are UTF-8, else base64), so nothing is lost and it can be replayed once fixed."""
    doc: dict[str, Any] = {
        "v": SCHEMA_VERSION, "stage": stage, "reason": rejected.reason,
        "field": rejected.field, "index": rejected.index,
        "topic": topic, "partition": partition, "offset": offset,
        "key": key.decode("utf-8", "replace") if key is not None else None,
    }
    try:
        doc["original"] = rejected.original.decode("utf-8")
    except UnicodeDecodeError:
        doc["original_b64"] = base64.b64encode(rejected.original).decode("ascii")
    return orjson.dumps(doc)
