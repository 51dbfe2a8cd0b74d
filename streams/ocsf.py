"""Conformance check for stories as OCSF 1.5 Detection Findings (class_uid 2004).

py-ocsf-models gives typed pydantic models of OCSF 1.5.0, but it silently drops fields
it does not know, so validating with it alone would pass a misspelt attribute. This
module validates types and required attributes with the models, then walks the document
against the models' fields and reports every attribute the schema does not define
(below ``unmapped`` and free-form ``data`` objects anything goes, as OCSF says).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

from py_ocsf_models.events.findings.detection_finding import DetectionFinding
from pydantic import BaseModel, ValidationError

__all__ = ["DETECTION_FINDING_CLASS_UID", "OCSF_VERSION", "validate_detection_finding"]

DETECTION_FINDING_CLASS_UID = 2004
OCSF_VERSION = "1.5.0"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``Optional[list[Model]]`` and friends, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple):
        for arg in typing.get_args(annotation):
            model = _model_of(arg)
            if model is not None:
                return model
    return None


def _unknown_fields(doc: Any, model: type[BaseModel], path: str) -> list[str]:
    if isinstance(doc, list):
        return [e for i, item in enumerate(doc)
                for e in _unknown_fields(item, model, f"{path}[{i}]")]
    if not isinstance(doc, Mapping):
        return []
    errors: list[str] = []
    fields = model.model_fields
    for key, value in doc.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            errors.append(f"{where}: not an attribute of {model.__name__} in OCSF {OCSF_VERSION}")
            continue
        nested = _model_of(fields[key].annotation)
        if nested is not None:
            errors.extend(_unknown_fields(value, nested, where))
    return errors


def validate_detection_finding(doc: Mapping[str, Any]) -> list[str]:
    """Every way ``doc`` departs from an OCSF 1.5 Detection Finding; [] when it conforms."""
    errors: list[str] = []
    class_uid = doc.get("class_uid")
    if class_uid != DETECTION_FINDING_CLASS_UID:
        errors.append(f"class_uid: expected {DETECTION_FINDING_CLASS_UID}, got {class_uid!r}")
    activity = doc.get("activity_id")
    expected_type = DETECTION_FINDING_CLASS_UID * 100 + (activity or 0)
    if isinstance(activity, int) and doc.get("type_uid") != expected_type:
        errors.append("type_uid: must be class_uid * 100 + activity_id")
    version = (doc.get("metadata") or {}).get("version")
    if version != OCSF_VERSION:
        errors.append(f"metadata.version: expected {OCSF_VERSION!r}, got {version!r}")
    try:
        DetectionFinding.model_validate(dict(doc))
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            errors.append(f"{where}: {err['msg']}")
    errors.extend(_unknown_fields(doc, DetectionFinding, ""))
    return errors
