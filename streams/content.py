"""Detection content (signals, lists, incident rules) loaded from YAML and checked before use.

The content says *what* is suspicious and how much risk it adds; :mod:`streams.signals`
evaluates it and :mod:`streams.incidents` accumulates it. A malformed content file fails
loudly at start-up, naming the signal and the field (JSON Schema first, then the
cross-references a schema cannot check: lists, marks and dimensions that exist).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULT_CONTENT", "ContentError", "DetectionContent", "IncidentRules", "Predicate",
           "Signal", "Suppression", "Technique", "load_content"]

CONTENT_DIR = Path(__file__).parent / "content"
DEFAULT_CONTENT = CONTENT_DIR / "signals.yaml"
SCHEMA = CONTENT_DIR / "signals.schema.json"
LEVELS = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}


class ContentError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Technique:
    framework: str  # "attack" or "atlas"
    uid: str
    name: str
    tactic: str = ""
    tactic_name: str = ""


@dataclass(frozen=True, slots=True)
class Predicate:
    """One condition on one field of an event (``data.path``, ``exe``, ``proc.comm`` …)."""

    field: str
    op: str  # equals | in | in_list | not_in_list | regex | prefix | exists | gte | lte | any_…
    value: Any


@dataclass(frozen=True, slots=True)
class Signal:
    id: str
    name: str
    title: str
    status: str
    level: str
    layer: str
    stage: str
    kinds: tuple[str, ...]
    where: tuple[Predicate, ...]
    risk: int
    why: str
    techniques: tuple[Technique, ...]
    # (dimension, min surprise, when_sparse): with when_sparse, a value the agent never
    # showed on a dimension too thin to estimate p(new) (fewer than min_obs observations,
    # none at all included) still counts: what the agent did not do is also learned
    novelty: tuple[str, float, bool] | None = None
    rate: tuple[str, float, float, float] | None = None  # (metric, min z, min ratio, min value)
    after: tuple[str, int] | None = None  # (mark, within ns): a recent fact of the same pod
    marks: tuple[str, ...] = ()  # facts this match records in the pod's context
    clears: tuple[str, ...] = ()  # facts this match ends (a clean request: a new conversation)
    reopens: tuple[str, ...] = ()  # baseline dimensions this hit sends back to learning
    critical: bool = False  # opens a story at once
    baseline: bool = True  # False: fires in every phase and its value is never learned
    falsepositives: tuple[str, ...] = ()
    tuning: tuple[str, ...] = ()

    @property
    def severity_id(self) -> int:
        """OCSF severity_id: 1 informational … 5 critical."""
        return LEVELS[self.level]

    @property
    def is_marker(self) -> bool:
        """Records context only: no risk, never a step."""
        return self.risk == 0


@dataclass(frozen=True, slots=True)
class Suppression:
    """An operator's decision as data: this signal, for these agents, on these values, is
    not a hit (glob patterns; counted, never silent)."""

    signal: str
    agent: str = "*"
    value: str = "*"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class IncidentRules:
    threshold: int = 60  # accumulated risk that opens a story
    window_ns: int = 900 * 1_000_000_000  # hits further apart than this are new incidents
    quiet_ns: int = 600 * 1_000_000_000  # event time without hits before a story closes
    cap_per_signal: int = 2  # one signal counts at most this many times its risk
    max_steps: int = 32
    stage_order: tuple[str, ...] = ()
    stage_titles: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DetectionContent:
    signals: tuple[Signal, ...]
    lists: Mapping[str, frozenset[str]] = field(default_factory=dict)
    incidents: IncidentRules = IncidentRules()
    suppressions: tuple[Suppression, ...] = ()
    version: str = ""  # hash of the content: every story says which content produced it

    def in_list(self, name: str, value: str) -> bool:
        return value in self.lists.get(name, frozenset())

    def signal(self, signal_id: str) -> Signal:
        for signal in self.signals:
            if signal.id == signal_id:
                return signal
        raise KeyError(signal_id)


_OPS = ("equals", "in", "in_list", "not_in_list", "regex", "prefix", "exists", "gte", "lte",
        "any_in_list", "any_regex")


def _techniques(raw: Mapping[str, Any]) -> tuple[Technique, ...]:
    return tuple(
        Technique(framework, str(item["technique"]), str(item.get("technique_name", "")),
                  str(item.get("tactic", "")), str(item.get("tactic_name", "")))
        for framework in ("attack", "atlas") for item in raw.get(framework) or [])


def _predicates(raw: Mapping[str, Any], lists: Mapping[str, Any], where: str,
                ) -> tuple[Predicate, ...]:
    out = []
    for i, item in enumerate(raw.get("where") or []):
        ops = [op for op in _OPS if op in item]
        if len(ops) != 1:
            raise ContentError(f"{where}.where[{i}]: exactly one of {list(_OPS)}")
        op = ops[0]
        if op in ("in_list", "not_in_list", "any_in_list") and item[op] not in lists:
            raise ContentError(f"{where}.where[{i}]: {op} names the undefined list {item[op]!r}")
        value = frozenset(map(str, item[op])) if op == "in" else item[op]
        out.append(Predicate(str(item["field"]), op, value))
    return tuple(out)


def _signal(raw: Mapping[str, Any], lists: Mapping[str, Any], stages: set[str]) -> Signal:
    where = f"signal {raw['id']}"
    match = raw["match"]
    kinds = match["kind"] if isinstance(match["kind"], list) else [match["kind"]]
    novelty = match.get("novelty")
    rate = match.get("rate")
    after = match.get("after")
    if raw["stage"] not in stages:
        raise ContentError(f"{where}: stage {raw['stage']!r} is not in incidents.stages")
    return Signal(
        id=str(raw["id"]), name=str(raw["name"]), title=str(raw["title"]),
        status=raw["status"], level=raw["level"], layer=raw["layer"], stage=raw["stage"],
        kinds=tuple(kinds), where=_predicates(match, lists, where), risk=int(raw["risk"]),
        why=str(raw.get("why", raw["title"])), techniques=_techniques(raw),
        novelty=(novelty["dimension"], float(novelty.get("min_surprise", 0.0)),
                 bool(novelty.get("when_sparse", False))) if novelty else None,
        rate=(rate["metric"], float(rate.get("min_z", 0.0)), float(rate.get("min_ratio", 0.0)),
              float(rate.get("min_value", 0.0))) if rate else None,
        after=(after["mark"], int(after["within_s"] * 1e9)) if after else None,
        marks=tuple(raw.get("marks") or ()), clears=tuple(raw.get("clears") or ()),
        reopens=tuple(raw.get("reopens") or ()),
        critical=bool(raw.get("critical", False)),
        baseline=bool(novelty or rate),
        falsepositives=tuple(raw.get("falsepositives") or ()),
        tuning=tuple(raw.get("tuning") or ()),
    )


def _validate_schema(doc: Any, path: Path) -> None:
    import jsonschema  # a dependency of the worker: the content is checked where it runs

    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc),
                    key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        loc = "/".join(str(p) for p in first.absolute_path)
        signal_id = ""
        if first.absolute_path and first.absolute_path[0] == "signals":
            index = first.absolute_path[1]
            signal_id = f" ({doc['signals'][index].get('id', '?')})"
        raise ContentError(f"{path}: {loc}{signal_id}: {first.message}")


def load_content(
    path: Path = DEFAULT_CONTENT, overrides: Mapping[str, list[str]] | None = None,
) -> DetectionContent:
    """Load signals; ``overrides`` replaces named lists (the local tuning hooks)."""
    text = path.read_text()
    doc = yaml.safe_load(text)
    _validate_schema(doc, path)
    raw_lists = {**(doc.get("lists") or {}), **(overrides or {})}
    lists = {name: frozenset(map(str, values or [])) for name, values in raw_lists.items()}
    inc = doc["incidents"]
    stages = [s["id"] for s in inc["stages"]]
    signals = tuple(_signal(raw, lists, set(stages)) for raw in doc["signals"])
    ids = [s.id for s in signals]
    if len(ids) != len(set(ids)):
        raise ContentError(f"{path}: duplicate signal ids")
    from models.features import DIMENSIONS  # what the baselines observe

    for s in signals:
        dims = [*s.reopens, *([s.novelty[0]] if s.novelty else [])]
        unknown = [d for d in dims if d not in DIMENSIONS]
        if unknown:
            raise ContentError(f"signal {s.id}: unknown baseline dimension {unknown[0]!r}")
    marks = {m for s in signals for m in s.marks}
    for s in signals:
        if s.after and s.after[0] not in marks:
            raise ContentError(f"signal {s.id}: after names the mark {s.after[0]!r} "
                               "that no signal records")
    rules = IncidentRules(
        threshold=int(inc["threshold"]), window_ns=int(inc["window_s"] * 1e9),
        quiet_ns=int(inc["quiet_s"] * 1e9), cap_per_signal=int(inc["cap_per_signal"]),
        max_steps=int(inc.get("max_steps", 32)), stage_order=tuple(stages),
        stage_titles={s["id"]: s["title"] for s in inc["stages"]},
    )
    digest = hashlib.sha256(text.encode() + json.dumps(
        {k: sorted(v) for k, v in sorted(lists.items())}).encode()).hexdigest()[:12]
    suppressions = tuple(Suppression(**raw) for raw in doc.get("suppressions") or [])
    for sup in suppressions:
        if sup.signal not in ids:
            raise ContentError(f"suppression names the unknown signal {sup.signal!r}")
    return DetectionContent(signals, lists, rules, suppressions, version=digest)
