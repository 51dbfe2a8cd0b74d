"""Attack stories and their wire form: OCSF 1.5 Detection Finding (class_uid 2004).

A story is one incident of one pod: an ordered chain of steps, each saying what happened
at which layer, why it is unusual for this agent (with the baseline figures), and how it
is tied to an earlier step (causal or temporal). It is published once per version under a
deterministic uid (agent, pod, anchor), so a compacted topic and an upserting sink keep
the latest version and a replay of the same input reproduces the same keys. ``status`` is
set only on Create: an update must not overwrite an analyst's triage in an upserting sink.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from streams.content import Technique
from streams.events import Pod
from streams.ocsf import OCSF_VERSION

__all__ = ["ACTIVITIES", "PRODUCT", "Step", "Story", "story_uid"]

PRODUCT = {"name": "agentstory", "vendor_name": "agentstory", "version": "0.2.0"}
_SEVERITY = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
ACTIVITIES = {"create": 1, "update": 2, "close": 3}
_NS_PER_MS = 1_000_000


def story_uid(*parts: str) -> str:
    """Deterministic id from what identifies the incident (never from wall-clock)."""
    return "as-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Step:
    layer: str  # kernel | l7 | cloud
    ts: int
    kind: str
    what: str
    why: str
    signal: str
    evidence: dict[str, Any] = field(default_factory=dict)
    risk: int = 0
    stage: str = ""
    count: int = 1
    last_ts: int = 0
    link: dict[str, Any] | None = None  # {"to": step number, "type": ..., "causal": bool}
    ref: str = ""  # the raw event's id (topic:partition:offset:index)

    @classmethod
    def from_state(cls, doc: dict[str, Any]) -> Step:
        return cls(doc["layer"], doc["ts"], doc["kind"], doc["what"], doc["why"],
                   doc["signal"], doc.get("evidence") or {}, doc["risk"], doc["stage"],
                   doc.get("count", 1), doc.get("last_ts", doc["ts"]), doc.get("link"),
                   doc.get("ref", ""))

    def to_dict(self) -> dict[str, Any]:
        out = {"layer": self.layer, "ts": self.ts, "kind": self.kind, "what": self.what,
               "why": self.why, "signal": self.signal, "risk": self.risk, "stage": self.stage,
               "evidence": self.evidence}
        if self.count > 1:
            out.update(count=self.count, last_ts=self.last_ts)
        if self.link:
            out["link"] = self.link
        if self.ref:
            out["ref"] = self.ref
        return out


@dataclass(frozen=True, slots=True)
class Story:
    uid: str
    title: str
    node: str
    pod: Pod
    agent: str
    severity_id: int
    steps: tuple[Step, ...]
    techniques: tuple[Technique, ...]
    signals: tuple[str, ...]
    baseline_phase: str
    version: int = 1
    activity: str = "create"
    risk_score: int = 0
    risk_class: dict[str, Any] = field(default_factory=dict)  # the agent's: level + reasons
    observed: dict[str, Any] = field(default_factory=dict)  # layers seen, losses (blind spots)
    content_version: str = ""
    dropped_steps: int = 0
    disposition: dict[str, Any] = field(default_factory=dict)  # an analyst's verdict

    def to_ocsf(self) -> dict[str, Any]:
        first, last = self.steps[0].ts, max(s.last_ts or s.ts for s in self.steps)
        activity_id = ACTIVITIES[self.activity]
        activity_name = self.activity.capitalize()
        attacks = [
            {"technique": {"uid": t.uid, "name": t.name},
             **({"tactic": {"uid": t.tactic, "name": t.tactic_name}} if t.tactic else {})}
            for t in self.techniques if t.framework == "attack"
        ]
        doc: dict[str, Any] = {
            "class_uid": 2004, "class_name": "Detection Finding",
            "category_uid": 2, "category_name": "Findings",
            "activity_id": activity_id, "activity_name": activity_name,
            "type_uid": 200400 + activity_id,
            "type_name": f"Detection Finding: {activity_name}",
            "severity_id": self.severity_id, "severity": _SEVERITY[self.severity_id],
            "risk_score": self.risk_score,
            "time": last // _NS_PER_MS, "start_time": first // _NS_PER_MS,
            "end_time": last // _NS_PER_MS, "count": len(self.steps),
            "message": f"{self.title} in pod {self.pod.namespace}/{self.pod.name or self.pod.uid}",
            "metadata": {"version": OCSF_VERSION, "product": PRODUCT, "uid": self.uid,
                         "sequence": self.version},
            "finding_info": {
                "uid": self.uid, "title": self.title,
                "desc": " → ".join(s.what for s in self.steps),
                "types": list(self.signals),
                "first_seen_time": first // _NS_PER_MS, "last_seen_time": last // _NS_PER_MS,
                "data_sources": sorted({s.layer for s in self.steps}),
                "analytic": {"uid": self.signals[0], "name": "agentstory cross-layer story",
                             "type_id": 2, "type": "Behavioral",
                             "version": self.content_version},
                "related_events": [{"uid": s.ref, "type": s.kind} for s in self.steps if s.ref],
                **({"attacks": attacks} if attacks else {}),
            },
            "resources": [{
                "uid": self.pod.uid, "name": self.pod.name, "namespace": self.pod.namespace,
                "type": "Kubernetes Pod",
                "data": {"agent": self.agent, "service_account": self.pod.service_account,
                         "container": self.pod.container, "node": self.node},
            }],
            "evidences": [_evidence(s) for s in self.steps],
            "unmapped": {"agentstory": {
                "story_version": self.version, "agent": self.agent, "node": self.node,
                "pod": self.pod.to_dict(), "baseline_phase": self.baseline_phase,
                "risk_class": self.risk_class, "observed": self.observed,
                "content_version": self.content_version, "dropped_steps": self.dropped_steps,
                **({"disposition": self.disposition} if self.disposition else {}),
                "chain": [s.to_dict() for s in self.steps],
                "atlas": [{"uid": t.uid, "name": t.name}
                          for t in self.techniques if t.framework == "atlas"],
            }},
        }
        if self.disposition:  # the analyst's own verdict, given through agentstory
            d = self.disposition
            doc.update(status_id=4, status="Resolved",
                       status_detail=f"{d['verdict']} ({d.get('by') or 'analyst'}): "
                                     f"{d.get('note') or 'no note'}")
        elif activity_id == 1:  # set once: updates must not overwrite an analyst's triage
            doc.update(status_id=1, status="New")
        return doc


def _evidence(step: Step) -> dict[str, Any]:
    """One OCSF evidence per step: the free-form step in ``data`` and, where the layer has
    one, the OCSF object (process, file, endpoint, api) an analyst pivots on."""
    out: dict[str, Any] = {"name": step.kind, "data": step.to_dict()}
    ev = step.evidence
    if ev.get("api"):
        out["api"] = ev["api"]
    for key in ("process", "file", "dst_endpoint"):
        if ev.get(key):
            out[key] = ev[key]
    return out
