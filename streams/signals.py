"""Evaluate the signal catalogue on one event, its baseline scores and its pod's context.

Pure. A signal matches when the event's kind is one of its kinds, every field predicate
holds, its baseline condition holds (a judged, novel value with enough surprise, or a
rate far from the learned windows) and, for sequences, the pod's context holds the mark
it waits for. A match of a ``risk: 0`` signal only records its marks.
"""

from __future__ import annotations

import fnmatch
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from models.features import canonical_exe
from models.novelty import NoveltyScore
from models.profile import Scores
from models.rates import RateScore
from streams.content import DetectionContent, Predicate, Signal
from streams.events import Envelope

__all__ = ["Hit", "SignalEvaluator", "field_value"]

SECOND_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Hit:
    """One signal on one event: what a story step is made of."""

    signal: str
    ts: int
    risk: int
    why: str
    value: str  # what repeats fold on: the novel value, the rate metric, or the event's kind
    critical: bool = False
    figures: dict[str, Any] = field(default_factory=dict)  # the baseline numbers behind `why`
    dimension: str = ""  # the baseline dimension of a novelty hit (what a disposition teaches)


def _exe(event: Envelope) -> str:
    raw = (event.proc.exe if event.proc else "") or str(event.data.get("filename", ""))
    return canonical_exe(raw) if raw else ""


def field_value(event: Envelope, path: str) -> Any:
    """``exe``, ``kind``, ``argv_text`` or a dotted path into data/proc/pod (list indexes
    allowed)."""
    if path == "exe":
        return _exe(event)
    if path == "kind":
        return event.kind
    if path == "argv_text":
        return " ".join(str(a) for a in event.data.get("argv") or [])
    head, _, rest = path.partition(".")
    node: Any = {"data": event.data, "proc": event.proc, "pod": event.pod}.get(head)
    for part in rest.split("."):
        if node is None:
            return None
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list):
            node = node[int(part)] if part.isdigit() and int(part) < len(node) else None
        else:
            node = getattr(node, part, None)
    return node


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    import orjson
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class SignalEvaluator:
    """The catalogue compiled for one content version (lists canonicalized once)."""

    def __init__(self, content: DetectionContent, evidence_policy: str = "keep") -> None:
        self.content = content
        self.evidence_policy = evidence_policy  # tool content in a `why` only with keep
        self.by_kind: dict[str, list[Signal]] = {}
        for signal in content.signals:
            for kind in signal.kinds:
                self.by_kind.setdefault(kind, []).append(signal)
        # Executable lists hold canonical paths, so /usr/bin/bash matches /bin/bash.
        self.lists = {name: frozenset(canonical_exe(v) if v.startswith("/") else v
                                      for v in values)
                      for name, values in content.lists.items()}
        self.suppressed = 0

    def kinds(self) -> frozenset[str]:
        return frozenset(self.by_kind)

    def _holds(self, event: Envelope, p: Predicate) -> bool:
        value = field_value(event, p.field)
        if p.op == "exists":
            return (value is not None and value != "") == bool(p.value)
        if p.op == "not_in_list":
            return value is None or str(value) not in self.lists[p.value]
        if value is None:
            return False
        if p.op == "equals":
            return bool(value == p.value)
        if p.op == "in":
            return str(value) in p.value
        if p.op == "in_list":
            return str(value) in self.lists[p.value]
        if p.op == "regex":
            return _regex(p.value).search(_as_text(value)) is not None
        if p.op == "prefix":
            return str(value).startswith(p.value)
        if p.op in ("gte", "lte"):
            if not isinstance(value, int | float):
                return False
            return bool(value >= p.value if p.op == "gte" else value <= p.value)
        items = value if isinstance(value, list) else [value]
        if p.op == "any_in_list":
            return any(str(v) in self.lists[p.value] for v in items)
        return any(_regex(p.value).search(str(v)) for v in items)  # any_regex

    def evaluate(
        self, event: Envelope, scores: Scores, *, judging: bool,
        since: Callable[[str, int], int | None],
        agent: str,
    ) -> tuple[list[Hit], list[str]]:
        """(hits, marks to record; a mark prefixed with '-' is cleared). ``judging`` is
        False while the agent learns: then only signals without a baseline condition can
        fire."""
        hits: dict[str, Hit] = {}  # per baseline condition: only the riskiest reading of it
        new_marks: list[str] = []
        for signal in self.by_kind.get(event.kind, ()):
            if not all(self._holds(event, p) for p in signal.where):
                continue
            figures: dict[str, Any] = {}
            if signal.after is not None:
                mark, within = signal.after
                elapsed = since(mark, event.ts)
                if elapsed is None or elapsed > within:
                    continue
                figures["since"] = f"{elapsed / SECOND_NS:.0f}s"
            value = _subject(event)
            if signal.novelty is not None:
                if not judging:
                    continue
                score = _novel(scores, *signal.novelty)
                if score is None:
                    continue
                value = score.value
                figures.update(value=score.value, distinct=score.distinct,
                               observations=f"{score.observations:.0f}",
                               p_new=f"{score.p_new:.3f}", surprise=f"{score.surprise:.2f}")
            if signal.rate is not None:
                if not judging:
                    continue
                rate = _unusual_rate(event, scores, *signal.rate)
                if rate is None:
                    continue
                value = rate.metric
                figures.update(value=f"{rate.value:.0f}", mean=f"{rate.mean:.1f}",
                               ratio=f"{rate.ratio:.0f}", z=f"{rate.z:.1f}")
            new_marks.extend(signal.marks)
            new_marks.extend(f"-{m}" for m in signal.clears)
            if signal.is_marker:
                continue
            if self._suppressed(signal.id, agent, value):
                continue
            if self.evidence_policy != "keep":
                figures.setdefault("argument_excerpt", "arguments withheld by the evidence "
                                                       "policy")
            hit = Hit(signal.id, event.ts, signal.risk, explain(signal.why, event, figures, agent),
                      value, signal.critical, figures,
                      signal.novelty[0] if signal.novelty else "")
            # A shell that is a new executable is one fact: the specific signal wins.
            condition = (signal.novelty[0] if signal.novelty else
                         signal.rate[0] if signal.rate else signal.id)
            if condition not in hits or hits[condition].risk < hit.risk:
                hits[condition] = hit
        return list(hits.values()), new_marks


    def _suppressed(self, signal: str, agent: str, value: str) -> bool:
        for sup in self.content.suppressions:
            if (sup.signal == signal and fnmatch.fnmatchcase(agent, sup.agent)
                    and fnmatch.fnmatchcase(value, sup.value)):
                self.suppressed += 1
                return True
        return False


def _subject(event: Envelope) -> str:
    """What a hit is about, so repeats fold on it: the program, the path, the
    destination, the tool, the API action; else the kind."""
    d = event.data
    for value in (_exe(event) if event.family == "process" else "", d.get("path"),
                  d.get("domain") or d.get("dst_addr"), d.get("tool"),
                  f"{d['service']}:{d['action']}" if d.get("action") else ""):
        if value:
            return str(value)
    return event.kind


def _novel(scores: Scores, dimension: str, min_surprise: float, when_sparse: bool,
           ) -> NoveltyScore | None:
    for score in scores.novelty:
        if score.dimension != dimension or not score.novel or score.learning:
            continue
        if score.judged and score.surprise >= min_surprise:
            return score
        if when_sparse and not score.judged:
            return score
    return None


def _unusual_rate(event: Envelope, scores: Scores, metric: str, min_z: float,
                  min_ratio: float, min_value: float) -> RateScore | None:
    if "{" in metric:
        metric = metric.format_map(_Fields(event, {}, ""))
    rate = scores.rate(metric)
    if (rate is None or not rate.judged or rate.z < min_z or rate.ratio < min_ratio
            or rate.value < min_value):
        return None
    return rate


class _Fields(dict[str, Any]):
    """What a `why` template can name: the baseline figures, then facts of the event."""

    def __init__(self, event: Envelope, figures: Mapping[str, Any], agent: str) -> None:
        super().__init__(figures)
        self.event = event
        self.agent = agent

    def __missing__(self, key: str) -> Any:
        e, d = self.event, self.event.data
        simple: dict[str, Any] = {
            "agent": self.agent, "kind": e.kind, "exe": _exe(e) or "?",
            "comm": e.proc.comm if e.proc and e.proc.comm else "a process",
            "path": d.get("path"), "rule": (d.get("sensitive") or {}).get("rule"),
            "tool": d.get("tool"), "service": d.get("service"), "action": d.get("action"),
            "outcome": d.get("outcome"), "exe_origin": d.get("exe_origin"),
        }
        if key in simple:
            return "?" if simple[key] is None else simple[key]
        if key == "dst":
            name = d.get("domain")
            addr = f"{d.get('dst_addr', '?')}:{d.get('dst_port', '?')}"
            return f"{name} ({addr})" if name else addr
        if key == "peer":
            stdin = (d.get("stdio") or {}).get("stdin") or {}
            return stdin.get("peer") or "an unknown peer"
        if key == "question":
            questions = d.get("questions") or [{}]
            return questions[0].get("name", "?")
        if key == "principal":
            principal = d.get("principal") or {}
            return principal.get("arn") or principal.get("type") or "?"
        if key in ("channel", "indicators", "score"):
            inj = d.get("injection") or {}
            if key == "indicators":
                names = [i.get("id", "?") if isinstance(i, Mapping) else str(i)
                         for i in inj.get("indicators") or []]
                return ", ".join(names[:4]) or "indicators"
            if key == "score":
                return f"{float(inj.get('score') or 0):.2f}"
            return inj.get("channel") or inj.get("source") or "model input"
        if key == "argument_excerpt":
            return _as_text(d.get("arguments", ""))[:120]
        return "?"


def explain(template: str, event: Envelope, figures: Mapping[str, Any], agent: str) -> str:
    """Fill a signal's `why` template; an unknown name becomes '?' instead of an error."""
    return string.Formatter().vformat(template, (), _Fields(event, figures, agent))
