"""Attack stories and their wire form: OCSF 1.5 Detection Finding (class_uid 2004).

A story is one incident for one pod: an ordered chain of evidence steps, each saying
what happened at which layer and why it is unusual for this agent. It is published once
per version under a deterministic uid, so a compacted topic and an upserting sink keep
the latest version, and a replay of the same input reproduces the same keys.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from streams.content import Signal, Technique
from streams.events import Pod
from streams.ocsf import OCSF_VERSION

__all__ = ["PRODUCT", "Step", "Story", "story_uid"]

PRODUCT = {"name": "agentstory", "vendor_name": "agentstory", "version": "0.1.0"}
_SEVERITY = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
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

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "ts": self.ts, "kind": self.kind, "what": self.what,
                "why": self.why, "signal": self.signal, "evidence": self.evidence}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Step:
        return cls(doc["layer"], doc["ts"], doc["kind"], doc["what"], doc["why"],
                   doc["signal"], dict(doc.get("evidence") or {}))


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

    def with_step(self, step: Step, signal: Signal, max_steps: int) -> Story:
        """The next version: one more step, the higher severity, the union of techniques."""
        steps = (*self.steps, step)[-max_steps:]
        techniques = self.techniques + tuple(
            t for t in signal.techniques if t not in self.techniques)
        signals = self.signals if signal.id in self.signals else (*self.signals, signal.id)
        return replace(self, steps=steps, techniques=techniques, signals=signals,
                       severity_id=max(self.severity_id, signal.severity_id),
                       version=self.version + 1)

    def to_state(self) -> dict[str, Any]:
        """Plain-JSON form for a Faust table (the story being built, not its wire form)."""
        return {
            "uid": self.uid, "title": self.title, "node": self.node, "pod": self.pod.to_dict(),
            "agent": self.agent, "severity_id": self.severity_id,
            "steps": [s.to_dict() for s in self.steps],
            "techniques": [[t.framework, t.uid, t.name, t.tactic, t.tactic_name]
                           for t in self.techniques],
            "signals": list(self.signals), "baseline_phase": self.baseline_phase,
            "version": self.version,
        }

    @classmethod
    def from_state(cls, doc: dict[str, Any]) -> Story:
        return cls(
            uid=doc["uid"], title=doc["title"], node=doc["node"], pod=Pod.from_dict(doc["pod"]),
            agent=doc["agent"], severity_id=doc["severity_id"],
            steps=tuple(Step.from_dict(s) for s in doc["steps"]),
            techniques=tuple(Technique(*t) for t in doc["techniques"]),
            signals=tuple(doc["signals"]), baseline_phase=doc["baseline_phase"],
            version=doc["version"],
        )

    def to_ocsf(self) -> dict[str, Any]:
        first, last = self.steps[0].ts, self.steps[-1].ts
        activity_id = 1 if self.version == 1 else 2  # Create, then Update
        attacks = [
            {"technique": {"uid": t.uid, "name": t.name},
             **({"tactic": {"uid": t.tactic, "name": t.tactic_name}} if t.tactic else {})}
            for t in self.techniques if t.framework == "attack"
        ]
        return {
            "class_uid": 2004, "class_name": "Detection Finding",
            "category_uid": 2, "category_name": "Findings",
            "activity_id": activity_id, "activity_name": "Create" if activity_id == 1 else "Update",
            "type_uid": 200400 + activity_id,
            "type_name": f"Detection Finding: {'Create' if activity_id == 1 else 'Update'}",
            "severity_id": self.severity_id, "severity": _SEVERITY[self.severity_id],
            "status_id": 1, "status": "New",
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
                "analytic": {"uid": self.signals[0], "name": "agentstory baseline",
                             "type_id": 2, "type": "Behavioral"},
                **({"attacks": attacks} if attacks else {}),
            },
            "resources": [{
                "uid": self.pod.uid, "name": self.pod.name, "namespace": self.pod.namespace,
                "type": "Kubernetes Pod",
                "data": {"agent": self.agent, "service_account": self.pod.service_account,
                         "container": self.pod.container, "node": self.node},
            }],
            "evidences": [{"name": s.kind, "data": s.to_dict()} for s in self.steps],
            "unmapped": {"agentstory": {
                "story_version": self.version, "agent": self.agent, "node": self.node,
                "pod": self.pod.to_dict(), "baseline_phase": self.baseline_phase,
                "chain": [s.to_dict() for s in self.steps],
                "atlas": [{"uid": t.uid, "name": t.name}
                          for t in self.techniques if t.framework == "atlas"],
            }},
        }
