"""Conformance check for stories as OCSF 1.5 Detection Findings (class_uid 2004).

The check walks the document against the compiled OCSF 1.5.0 schema, kept as data in
``streams/ocsf_schema/`` (Detection Finding and every object reachable from it; see
``tests/streams/build_ocsf_schema.py``). Typed models such as py-ocsf-models drop what
they do not know and lag the schema (their evidence object lacks ``process``, ``file``,
``dst_endpoint``...), so the schema itself is the reference. As the OCSF schema server
does, attributes of a profile are defined only when ``metadata.profiles`` lists it.
Below ``unmapped`` (object type ``object``) and ``json_t`` attributes such as ``data``
anything goes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from typing import Any, TypeGuard

__all__ = ["DETECTION_FINDING_CLASS_UID", "OCSF_VERSION", "schema",
           "validate_detection_finding"]

DETECTION_FINDING_CLASS_UID = 2004
OCSF_VERSION = "1.5.0"
_SCHEMA_FILE = f"detection_finding-{OCSF_VERSION}.json"
_FREE_FORM_OBJECT = "object"

Attrs = Mapping[str, Mapping[str, Any]]


@cache
def schema() -> dict[str, Any]:
    """The compiled OCSF schema reduced to the Detection Finding (loaded once)."""
    text = resources.files("streams.ocsf_schema").joinpath(_SCHEMA_FILE).read_text()
    data: dict[str, Any] = json.loads(text)
    if data["version"] != OCSF_VERSION:
        raise RuntimeError(f"{_SCHEMA_FILE} is OCSF {data['version']}, not {OCSF_VERSION}")
    return data


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class _Walker:
    """One validation: the schema, the profiles the document applies, the errors so far."""

    def __init__(self, profiles: frozenset[str]) -> None:
        data = schema()
        self.types: Mapping[str, Mapping[str, Any]] = data["types"]
        self.objects: Mapping[str, Mapping[str, Any]] = data["objects"]
        self.profiles = profiles
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def walk(self, doc: Any, attrs: Attrs, what: str, path: str,
             constraints: Mapping[str, Any] | None = None) -> None:
        if not isinstance(doc, Mapping):
            self.error(path or "<doc>", f"expected a {what} object, got {_kind(doc)}")
            return
        for key, value in doc.items():
            where = f"{path}.{key}" if path else str(key)
            attr = attrs.get(key)
            if attr is None:
                self.error(where, f"not an attribute of {what} in OCSF {OCSF_VERSION}")
            elif attr.get("profile") and attr["profile"] not in self.profiles:
                self.error(where, f"attribute of the {attr['profile']!r} profile, which "
                                  "metadata.profiles does not list")
            else:
                self.value(value, attr, where)
                self.sibling(doc, key, attr, where)
        for key, attr in attrs.items():
            if (attr["requirement"] == "required" and doc.get(key) is None
                    and (not attr.get("profile") or attr["profile"] in self.profiles)):
                self.error(f"{path}.{key}" if path else key,
                           f"required attribute of {what} is missing")
        for kind, names in (constraints or {}).items():
            present = [n for n in names if doc.get(n) is not None]
            if kind == "at_least_one" and not present:
                self.error(path or "<doc>", f"{what} needs at least one of {', '.join(names)}")
            elif kind == "just_one" and len(present) != 1:
                self.error(path or "<doc>", f"{what} needs exactly one of {', '.join(names)}")

    def value(self, value: Any, attr: Mapping[str, Any], path: str) -> None:
        if value is None:
            self.error(path, "null: omit an attribute that has no value")
            return
        if attr.get("is_array"):
            if not isinstance(value, list):
                self.error(path, f"expected an array, got {_kind(value)}")
                return
            for i, item in enumerate(value):
                self.value(item, {**attr, "is_array": False}, f"{path}[{i}]")
            return
        if isinstance(value, list):
            self.error(path, f"expected one {attr['type']}, got an array")
            return
        if attr["type"] == "object_t":
            name = attr["object_type"]
            if name == _FREE_FORM_OBJECT:
                if not isinstance(value, Mapping):
                    self.error(path, f"expected an object, got {_kind(value)}")
                return
            obj = self.objects[name]
            self.walk(value, obj["attributes"], name, path,
                      {k: v for k, v in obj.items() if k != "attributes"})
            return
        self.scalar(value, attr["type"], path)
        enum = attr.get("enum")
        if enum is not None and _is_int(value) and str(value) not in enum:
            self.error(path, f"{value} is not one of OCSF's values "
                             f"({', '.join(f'{k} {v}' for k, v in enum.items())})")

    def scalar(self, value: Any, type_name: str, path: str) -> None:
        """Check ``value`` against a scalar type, following derived types to their base."""
        spec = self.types.get(type_name)
        if spec is None:
            self.error(path, f"unknown OCSF type {type_name}")
            return
        base = spec.get("type")
        if base is not None:
            self.scalar(value, base, path)
        elif not _BASE_CHECKS[type_name](value):
            self.error(path, f"expected {type_name}, got {_kind(value)} {value!r:.60}")
            return
        if isinstance(value, str):
            if "max_len" in spec and len(value) > spec["max_len"]:
                self.error(path, f"longer than {spec['max_len']} characters for {type_name}")
            if "regex" in spec and not _regex(spec["regex"]).search(value):
                self.error(path, f"{value!r:.60} is not a valid {type_name}")
        if "range" in spec and _is_int(value):
            low, high = spec["range"]
            if not low <= value <= high:
                self.error(path, f"{value} is outside {type_name} range {low}..{high}")

    def sibling(self, doc: Mapping[str, Any], key: str, attr: Mapping[str, Any],
                path: str) -> None:
        """An ``*_id`` and its caption sibling must agree (unless the id is 99, Other)."""
        enum, name = attr.get("enum"), attr.get("sibling")
        value = doc.get(key)
        if not enum or not name or not _is_int(value) or value == 99:
            return
        caption = enum.get(str(value))
        given = doc.get(name)
        if caption is not None and isinstance(given, str) and given != caption:
            self.error(path, f"{name} {given!r} does not match {key} {value} ({caption!r})")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


_BASE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "integer_t": _is_int,
    "long_t": _is_int,
    "float_t": lambda v: _is_int(v) or isinstance(v, float),
    "string_t": lambda v: isinstance(v, str),
    "boolean_t": lambda v: isinstance(v, bool),
    "json_t": lambda v: True,
}


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "float", type(None): "null"}.get(type(value), type(value).__name__)


def validate_detection_finding(doc: Mapping[str, Any]) -> list[str]:
    """Every way ``doc`` departs from an OCSF 1.5 Detection Finding; [] when it conforms."""
    if not isinstance(doc, Mapping):
        return [f"<doc>: expected an object, got {_kind(doc)}"]
    cls = schema()["class"]
    errors: list[str] = []
    class_uid = doc.get("class_uid")
    if class_uid != DETECTION_FINDING_CLASS_UID:
        errors.append(f"class_uid: expected {DETECTION_FINDING_CLASS_UID}, got {class_uid!r}")
    activity = doc.get("activity_id")
    if _is_int(activity) and doc.get("type_uid") != DETECTION_FINDING_CLASS_UID * 100 + activity:
        errors.append("type_uid: must be class_uid * 100 + activity_id")
    metadata = doc.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    version = metadata.get("version")
    if version != OCSF_VERSION:
        errors.append(f"metadata.version: expected {OCSF_VERSION!r}, got {version!r}")
    declared = metadata.get("profiles")
    declared = declared if isinstance(declared, list) else []
    for name in declared:
        if name not in cls["profiles"]:
            errors.append(f"metadata.profiles: {name!r} is not a profile of Detection Finding "
                          f"(one of {', '.join(cls['profiles'])})")
    walker = _Walker(frozenset(p for p in declared if isinstance(p, str)))
    walker.walk(doc, cls["attributes"], cls["name"], "")
    return errors + walker.errors
