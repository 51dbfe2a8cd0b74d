"""Detection content (signals and lists) loaded from YAML and checked before use.

The content says *what* is suspicious; :mod:`streams.detect` says *how* it is evaluated.
A malformed content file fails loudly at start-up, naming the signal and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULT_CONTENT", "ContentError", "DetectionContent", "Signal", "Technique",
           "load_content"]

DEFAULT_CONTENT = Path(__file__).parent / "content" / "signals.yaml"
_LEVELS = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
_STATUSES = {"experimental", "test", "stable"}
_MATCH_KEYS = {"kind", "novel", "exe_in"}


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
class Signal:
    id: str
    name: str
    title: str
    status: str
    level: str
    kind: str
    novel: str | None
    exe_in: str | None
    techniques: tuple[Technique, ...]
    falsepositives: tuple[str, ...] = ()
    samples: tuple[str, ...] = ()

    @property
    def severity_id(self) -> int:
        """OCSF severity_id: 1 informational … 5 critical."""
        return _LEVELS[self.level]


@dataclass(frozen=True, slots=True)
class DetectionContent:
    signals: tuple[Signal, ...]
    lists: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def in_list(self, name: str, value: str) -> bool:
        return value in self.lists.get(name, frozenset())


def _techniques(raw: Mapping[str, Any], where: str) -> tuple[Technique, ...]:
    out = []
    for framework in ("attack", "atlas"):
        for item in raw.get(framework) or []:
            if not isinstance(item, Mapping) or "technique" not in item:
                raise ContentError(f"{where}.{framework}: each entry needs a technique id")
            out.append(Technique(framework, str(item["technique"]),
                                 str(item.get("technique_name", "")),
                                 str(item.get("tactic", "")), str(item.get("tactic_name", ""))))
    return tuple(out)


def _signal(raw: Any, lists: Mapping[str, frozenset[str]], index: int) -> Signal:
    where = f"signals[{index}]"
    if not isinstance(raw, Mapping):
        raise ContentError(f"{where}: expected a mapping")
    for key in ("id", "name", "title", "status", "level", "match"):
        if key not in raw:
            raise ContentError(f"{where} ({raw.get('id', '?')}): missing {key!r}")
    where = f"signal {raw['id']}"
    if raw["status"] not in _STATUSES:
        raise ContentError(f"{where}: status must be one of {sorted(_STATUSES)}")
    if raw["level"] not in _LEVELS:
        raise ContentError(f"{where}: level must be one of {sorted(_LEVELS)}")
    match = raw["match"]
    if not isinstance(match, Mapping) or "kind" not in match:
        raise ContentError(f"{where}: match needs at least a kind")
    unknown = set(match) - _MATCH_KEYS
    if unknown:
        raise ContentError(f"{where}: unknown match keys {sorted(unknown)}")
    exe_in = match.get("exe_in")
    if exe_in is not None and exe_in not in lists:
        raise ContentError(f"{where}: exe_in names the undefined list {exe_in!r}")
    if raw["status"] == "stable" and not raw.get("samples"):
        raise ContentError(f"{where}: a stable signal must point to sample events")
    return Signal(
        id=str(raw["id"]), name=str(raw["name"]), title=str(raw["title"]),
        status=raw["status"], level=raw["level"], kind=str(match["kind"]),
        novel=match.get("novel"), exe_in=exe_in, techniques=_techniques(raw, where),
        falsepositives=tuple(raw.get("falsepositives") or ()),
        samples=tuple(raw.get("samples") or ()),
    )


def load_content(
    path: Path = DEFAULT_CONTENT, overrides: Mapping[str, list[str]] | None = None,
) -> DetectionContent:
    """Load signals; ``overrides`` replaces named lists (the local tuning hooks)."""
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, Mapping) or doc.get("version") != 1:
        raise ContentError(f"{path}: expected a mapping with version: 1")
    raw_lists = {**(doc.get("lists") or {}), **(overrides or {})}
    lists = {name: frozenset(map(str, values or [])) for name, values in raw_lists.items()}
    signals = tuple(_signal(raw, lists, i) for i, raw in enumerate(doc.get("signals") or []))
    ids = [s.id for s in signals]
    if len(ids) != len(set(ids)):
        raise ContentError(f"{path}: duplicate signal ids")
    return DetectionContent(signals, lists)
