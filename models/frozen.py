"""The frozen exact-set allowlist: the baseline this project replaces, kept to compare.

It sees the same generalized observations as :class:`~models.profile.AgentProfile`,
learns every exact value during ``learning_ns`` of event time from the first event,
then freezes: every value not in the set is novel and fully surprising, however often
the agent meets new values. Same ``score``/``learn`` shape as the profile.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from models.features import Observation, observations
from models.novelty import NoveltyScore
from models.profile import Scores
from models.risk import RiskClass
from streams.events import Envelope

__all__ = ["FrozenAllowlist"]

HOUR_NS = 3600 * 1_000_000_000


class FrozenAllowlist:
    """
    Examples
    --------
    >>> from streams.events import Envelope, Proc
    >>> f = FrozenAllowlist("a/b/c", learning_ns=10)
    >>> ex = lambda exe, ts: Envelope("process.exec", ts, "n", "kernel", {}, proc=Proc(1, exe=exe))
    >>> f.learn(ex("/bin/ls", 0)); f.learn(ex("/bin/cat", 20))
    >>> [s.novel for s in f.score(ex("/bin/cat", 30)).novelty]
    [True]
    """

    def __init__(self, agent: str, learning_ns: int = 24 * HOUR_NS) -> None:
        self.agent = agent
        self.learning_ns = learning_ns
        self.first_ts = -1
        self.now = -1  # the watermark the engine advanced to
        self.seen: dict[str, set[str]] = {}

    def frozen(self, ts: int) -> bool:
        return self.first_ts >= 0 and ts - self.first_ts >= self.learning_ns

    @property
    def phase(self) -> str:
        return "enforce" if self.frozen(self.now) else "learning"

    @property
    def judging(self) -> bool:
        return self.frozen(self.now)

    def judging_at(self, ts: int) -> bool:
        """An event read late from the learning span is learned, not judged."""
        return self.frozen(ts)

    # What the engine asks of any baseline; an allowlist has no rates, holds nothing and
    # knows no risk: an analyst's verdict adds the value, as an operator edits the list.
    def protect(self, ts: int) -> None:
        pass

    def advance(self, ts: int) -> None:
        self.now = max(self.now, ts)

    def reopen(self, dimensions: Iterable[str], why: str) -> None:
        pass  # an allowlist is edited by people, not reopened

    def knows(self, o: Observation) -> bool:
        return o.value in self.seen.get(o.dimension, ())

    def hold_observations(self, obs: Iterable[Observation], ts: int) -> list[Observation]:
        return []

    def accept(self, dimension: str, value: str, ts: int) -> None:
        self.seen.setdefault(dimension, set()).add(value)

    def risk(self) -> RiskClass:
        return RiskClass("low", ("a frozen allowlist classifies no risk",))

    def summary(self) -> dict[str, Any]:
        return {"agent": self.agent, "phase": self.phase, "baseline": "frozen allowlist",
                "dimensions": {d: {"distinct": len(v), "top": [{"value": x, "count": 1}
                                                             for x in sorted(v)[:10]]}
                               for d, v in sorted(self.seen.items())}}

    def score(self, event: Envelope) -> Scores:
        judged = self.frozen(event.ts)
        out = []
        obs = observations(event)
        for o in obs:
            values = self.seen.get(o.dimension, set())
            novel = o.value not in values
            out.append(NoveltyScore(o.dimension, o.value, novel, judged,
                                    1.0 if novel and judged else 0.0, 0.0,
                                    float(len(values)), len(values), not judged))
        return Scores(tuple(out), (), tuple(obs))

    def learn(self, event: Envelope) -> None:
        self.learn_observations(observations(event), event.ts)

    def learn_observations(self, obs: Iterable[Observation], ts: int) -> None:
        if self.first_ts < 0:
            self.first_ts = ts
        if self.frozen(ts):
            return
        for o in obs:
            self.seen.setdefault(o.dimension, set()).add(o.value)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "frozen", "agent": self.agent, "learning_ns": self.learning_ns,
                "first": self.first_ts, "now": self.now,
                "seen": {d: sorted(v) for d, v in self.seen.items()}}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> FrozenAllowlist:
        f = cls(str(doc["agent"]), int(doc["learning_ns"]))
        f.first_ts = int(doc["first"])
        f.now = int(doc.get("now", -1))
        f.seen = {d: set(v) for d, v in doc["seen"].items()}
        return f
