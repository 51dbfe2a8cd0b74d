"""An agent's phase, moved by evidence: ``learning`` → ``audit`` → ``enforce-ready``.

Evidence is the per-dimension novelty rate (share of learned observations that were new)
on event-time phase windows (``window_ns``). A dimension with fewer than
``min_window_obs`` observations in a window is carried into the next one, so a quiet
agent's windows are simply longer (it still leaves learning).

- learning → audit: at least ``min_span_ns`` since the first event, and every dimension
  with enough evidence is *settled* over its last ``stable_windows`` windows: its rate is
  low (≤ ``low_rate``) or steady (all ≤ ``max_steady_rate`` and spread ≤ ``max_spread``).
  A research agent that meets 5 % new domains every hour is steady: its novelty scoring
  already expects new values, so learning longer would teach nothing more.
- audit → enforce-ready: ``stable_windows`` more windows in audit, every dimension settled,
  and the overall rate over them ≤ ``enforce_rate`` (an allowlist could hold).
- enforce-ready → audit when a window's overall rate exceeds ``enforce_rate`` again.
- drift: outside learning, a dimension whose window rate jumps above
  ``max(drift_rate, 3 x its recent mean)`` reopens learning *on that dimension only*
  (e.g. a new image that ships other binaries); the agent is ``learning`` until every
  drifting dimension has settled again, then returns to audit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["AUDIT", "ENFORCE_READY", "LEARNING", "PHASES", "PhaseSettings", "Phases"]

LEARNING, AUDIT, ENFORCE_READY = "learning", "audit", "enforce-ready"
PHASES = (LEARNING, AUDIT, ENFORCE_READY)
HOUR_NS = 3600 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class PhaseSettings:
    window_ns: int = HOUR_NS
    min_span_ns: int = 24 * HOUR_NS
    stable_windows: int = 6
    min_window_obs: int = 5
    low_rate: float = 0.02
    max_steady_rate: float = 0.5
    max_spread: float = 0.1
    enforce_rate: float = 0.02
    drift_rate: float = 0.3
    max_dims: int = 64


class Phases:
    """Phase state of one agent. Feed ``note(dim, is_new, ts)`` on every learned
    observation and ``advance(ts)`` when event time moves on.

    Examples
    --------
    >>> p = Phases(PhaseSettings(window_ns=10, min_span_ns=30, stable_windows=3))
    >>> for t in range(100):
    ...     p.note("process.exe", t < 3, t)
    >>> p.advance(100)
    >>> p.phase
    'enforce-ready'
    """

    __slots__ = ("audit_windows", "current", "first_ts", "history", "phase", "reasons",
                 "relearning", "settings", "totals", "window_start")

    def __init__(self, settings: PhaseSettings | None = None) -> None:
        self.settings = settings or PhaseSettings()
        self.phase = LEARNING
        self.first_ts = -1
        self.window_start = -1
        self.current: dict[str, list[int]] = {}  # dim → [obs, new] in the open window
        self.history: dict[str, list[float]] = {}  # dim → recent window rates (newest last)
        self.totals: list[list[int]] = []  # recent [obs, new] over all settled dims
        self.relearning: set[str] = set()
        self.audit_windows = 0
        self.reasons: list[str] = ["new agent"]

    def note(self, dim: str, is_new: bool, ts: int) -> None:
        w = self.settings.window_ns
        if self.first_ts < 0 or ts < self.first_ts:
            self.first_ts = ts
        start = ts - ts % w
        if self.window_start < 0:
            self.window_start = start
        elif start > self.window_start:
            self.advance(start)
        c = self.current.get(dim)
        if c is None:
            if len(self.current) >= self.settings.max_dims:
                return
            c = self.current[dim] = [0, 0]
        c[0] += 1
        if is_new:
            c[1] += 1

    def reopen(self, dims: Iterable[str], why: str) -> None:
        """Relearn these dimensions (a new version of the agent: its tool definitions
        changed), as drift would after a window; the others keep judging."""
        new = set(dims) - self.relearning
        if not new:
            return
        self.relearning.update(new)
        for dim in new:
            self.history.pop(dim, None)
        self.phase = LEARNING
        self.audit_windows = 0
        self.reasons = [f"{why}: relearning {', '.join(sorted(self.relearning))}"]

    def learning(self, dim: str) -> bool:
        """Whether ``dim`` is not judged yet: a drifted dimension until it settles again;
        in the agent's first learning, every dimension until the minimum span has passed.
        After that a dimension is judged on its own evidence (its ``min_obs`` and p(new)),
        while the phase still waits for every dimension to settle before it says audit."""
        if self.phase != LEARNING:
            return False
        if self.relearning:
            return dim in self.relearning
        return not self.span_passed()

    def span_passed(self) -> bool:
        return (self.first_ts >= 0 and self.window_start >= 0
                and self.window_start + self.settings.window_ns - self.first_ts
                >= self.settings.min_span_ns)

    def advance(self, ts: int) -> None:
        """Close the open phase window when ``ts`` is past its end."""
        w = self.settings.window_ns
        if self.window_start < 0 or ts < self.window_start + w:
            return
        self._close()
        self.window_start = ts - ts % w

    def _settled(self, rates: list[float]) -> bool:
        s = self.settings
        if len(rates) < s.stable_windows:
            return False
        recent = rates[-s.stable_windows:]
        if max(recent) <= s.low_rate:
            return True
        return max(recent) <= s.max_steady_rate and max(recent) - min(recent) <= s.max_spread

    def _close(self) -> None:
        s = self.settings
        obs_all = new_all = 0
        drifted: list[str] = []
        carry: dict[str, list[int]] = {}
        for dim, (obs, new) in self.current.items():
            if obs < s.min_window_obs:  # too little to judge: carried into the next window
                carry[dim] = [obs, new]
                continue
            rate = new / obs
            hist = self.history.setdefault(dim, [])
            if self.phase != LEARNING or self.relearning:
                recent = hist[-s.stable_windows:]
                mean = sum(recent) / len(recent) if recent else 0.0
                if (dim not in self.relearning and len(recent) >= s.stable_windows
                        and rate > max(s.drift_rate, 3 * mean)):
                    drifted.append(dim)
                    hist.clear()
            hist.append(rate)
            del hist[:-s.stable_windows]
            if dim not in self.relearning and dim not in drifted:
                obs_all += obs
                new_all += new
        self.current = carry
        if obs_all:
            self.totals.append([obs_all, new_all])
            del self.totals[:-s.stable_windows]
        if drifted:
            self.relearning.update(drifted)
            self.phase = LEARNING
            self.audit_windows = 0
            self.reasons = [f"drift on {', '.join(sorted(self.relearning))}: "
                            "relearning those dimensions"]
            return
        for dim in sorted(self.relearning):
            if self._settled(self.history.get(dim, [])):
                self.relearning.discard(dim)
        settled = all(self._settled(h) for d, h in self.history.items()
                      if d not in self.relearning and len(h) >= s.stable_windows)
        evidence = any(len(h) >= s.stable_windows for h in self.history.values())
        obs = sum(t[0] for t in self.totals)
        overall = sum(t[1] for t in self.totals) / obs if obs else 1.0
        if self.phase == LEARNING:
            if self.relearning:
                return
            if self.span_passed() and evidence and settled:
                self.phase, self.audit_windows = AUDIT, 0
                self.reasons = [f"novelty settled on every dimension over {s.stable_windows} "
                                f"windows (overall new-value rate {overall:.1%})"]
            return
        if self.phase == AUDIT:
            self.audit_windows += 1
            if (self.audit_windows >= s.stable_windows and settled
                    and len(self.totals) >= s.stable_windows and overall <= s.enforce_rate):
                self.phase = ENFORCE_READY
                self.reasons = [f"new-value rate {overall:.1%} ≤ {s.enforce_rate:.0%} over "
                                f"{s.stable_windows} audit windows"]
            return
        last_obs, last_new = self.totals[-1] if self.totals else (0, 0)
        if last_obs and last_new / last_obs > s.enforce_rate:
            self.phase, self.audit_windows = AUDIT, 0
            self.reasons = [f"new-value rate rose to {last_new / last_obs:.1%}"]

    # -- state -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "first": self.first_ts, "ws": self.window_start,
                "cur": self.current, "hist": self.history, "tot": self.totals,
                "re": sorted(self.relearning), "aw": self.audit_windows,
                "why": self.reasons}

    @classmethod
    def from_dict(cls, doc: dict[str, Any], settings: PhaseSettings | None = None) -> Phases:
        p = cls(settings)
        if doc["phase"] not in PHASES:
            raise ValueError(f"unknown phase {doc['phase']!r}")
        p.phase = doc["phase"]
        p.first_ts, p.window_start = int(doc["first"]), int(doc["ws"])
        p.current = {k: [int(x) for x in v] for k, v in doc["cur"].items()}
        p.history = {k: [float(x) for x in v] for k, v in doc["hist"].items()}
        p.totals = [[int(x) for x in t] for t in doc["tot"]]
        p.relearning = set(doc["re"])
        p.audit_windows = int(doc["aw"])
        p.reasons = [str(r) for r in doc["why"]]
        return p
