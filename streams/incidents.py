"""Risk accumulation per pod on event time, as risk-based alerting does it.

Each hit becomes a step of the pod's incident. The incident's risk is the sum of its
steps' risk with one signal's contribution capped (``cap_per_signal`` times its risk), so
one noisy signal repeating cannot open a story alone. A story opens when the risk passes
the threshold or at once for a critical hit; its uid comes from the agent, the pod and
the incident's anchor (its earliest step when it opened) and never changes, also when a
late step earlier than the anchor joins. Repeats of a step (same signal, same value) fold
into it with a count; past ``max_steps`` the first steps and the riskiest are kept.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from streams.content import IncidentRules

__all__ = ["Incident"]


@dataclass
class Incident:
    pod: dict[str, Any]
    node: str
    steps: list[dict[str, Any]] = field(default_factory=list)  # event-time order
    uid: str = ""  # set when the story opens
    version: int = 0  # story versions published
    phase: str = ""  # the agent's phase when the story opened
    dropped: int = 0  # steps not kept past max_steps
    closed: bool = False
    disposition: dict[str, Any] | None = None  # an analyst's verdict on the story

    @property
    def first_ts(self) -> int:
        return int(self.steps[0]["ts"])

    @property
    def last_ts(self) -> int:
        return max(int(s.get("last_ts", s["ts"])) for s in self.steps)

    @property
    def opened(self) -> bool:
        return bool(self.uid)

    def covers(self, ts: int, rules: IncidentRules) -> bool:
        """Whether a hit at ``ts`` belongs here (within the window of its span)."""
        return self.first_ts - rules.window_ns <= ts <= self.last_ts + rules.window_ns

    def add(self, step: dict[str, Any], rules: IncidentRules) -> None:
        for kept in self.steps:
            if kept["signal"] == step["signal"] and kept["value"] == step["value"]:
                kept["count"] = kept.get("count", 1) + 1
                if step["ts"] < kept["ts"]:  # a late, earlier repeat becomes the step shown
                    step_count, last = kept["count"], max(kept.get("last_ts", kept["ts"]),
                                                          kept["ts"])
                    kept.clear()
                    kept.update(step, count=step_count, last_ts=last)
                    self.steps.sort(key=_order)
                else:
                    kept["last_ts"] = max(kept.get("last_ts", kept["ts"]), step["ts"])
                return
        bisect.insort(self.steps, step, key=_order)
        if len(self.steps) > rules.max_steps:
            self._shed(rules.max_steps)

    def _shed(self, limit: int) -> None:
        """Keep the first half of the steps in time and the riskiest of the rest."""
        head = self.steps[: limit // 2]
        rest = sorted(self.steps[limit // 2:], key=lambda s: (-s["risk"], s["ts"]))
        keep = rest[: limit - len(head)]
        self.dropped += len(self.steps) - len(head) - len(keep)
        self.steps = sorted(head + keep, key=_order)

    def risk(self, rules: IncidentRules) -> int:
        per_signal: dict[str, int] = {}
        caps: dict[str, int] = {}
        for step in self.steps:
            for signal, risk in step["risks"].items():
                per_signal[signal] = per_signal.get(signal, 0) + risk * step.get("count", 1)
                caps[signal] = risk * rules.cap_per_signal
        return sum(min(total, caps[sig]) for sig, total in per_signal.items())

    def due(self, rules: IncidentRules) -> bool:
        """Whether the story should be open now."""
        return any(s.get("critical") for s in self.steps) or self.risk(rules) >= rules.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"pod": self.pod, "node": self.node, "steps": self.steps, "uid": self.uid,
                "version": self.version, "phase": self.phase, "dropped": self.dropped,
                "closed": self.closed, "disposition": self.disposition}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Incident:
        return cls(**doc)


_SECOND = 1_000_000_000


def _order(step: dict[str, Any]) -> tuple[int, str, str]:
    """Event time, then a stable tie-break so equal times sort the same in every run.

    CloudTrail times are whole seconds: a cloud step sorts at the end of its second,
    after the kernel and L7 steps of that second that led to it."""
    ts = step["ts"] + (_SECOND - 1 if step["layer"] == "cloud" else 0)
    return ts, step["signal"], str(step["value"])
