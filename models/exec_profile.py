"""Per-agent executable baseline: which programs an agent runs, learned on event time.

An agent first *learns* (for ``learning_ns`` of event time and at least ``min_events``
execs), then *monitors*: an executable outside the learned set is novel. What is flagged
is kept apart (``flagged``) and never learned, so an attacker cannot teach the baseline
by repeating himself (river's ``protect_anomaly_detector`` idea).

State is a plain dict-serializable object: it lives in a Faust table whose changelog is
JSON, so it must stay small (bounded sets) and be written back by assignment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ExecProfile", "Phase"]

Phase = str  # "learning" | "monitoring"


@dataclass
class ExecProfile:
    agent: str
    first_ts: int = 0
    last_ts: int = 0
    execs: int = 0
    executables: dict[str, int] = field(default_factory=dict)
    flagged: dict[str, int] = field(default_factory=dict)
    overflow: int = 0  # executables not kept because the set was full
    max_executables: int = 2048

    def phase(self, learning_ns: int, min_events: int) -> Phase:
        learned = self.last_ts - self.first_ts >= learning_ns and self.execs >= min_events
        return "monitoring" if learned else "learning"

    def knows(self, exe: str) -> bool:
        return exe in self.executables or exe in self.flagged

    def observe(self, exe: str, ts: int, *, learn: bool) -> None:
        """Count one exec; ``learn`` adds a new executable to the baseline, otherwise a
        new one is only remembered as flagged."""
        if self.execs == 0 or ts < self.first_ts:
            self.first_ts = ts
        self.last_ts = max(self.last_ts, ts)
        self.execs += 1
        target = self.executables if learn or exe in self.executables else self.flagged
        if exe in target or len(target) < self.max_executables:
            target[exe] = target.get(exe, 0) + 1
        else:
            self.overflow += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent, "first_ts": self.first_ts, "last_ts": self.last_ts,
            "execs": self.execs, "executables": self.executables, "flagged": self.flagged,
            "overflow": self.overflow,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ExecProfile:
        return cls(
            agent=doc["agent"], first_ts=doc["first_ts"], last_ts=doc["last_ts"],
            execs=doc["execs"], executables=dict(doc["executables"]),
            flagged=dict(doc["flagged"]), overflow=doc.get("overflow", 0),
        )
