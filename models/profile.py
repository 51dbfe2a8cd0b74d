"""One agent's behavioural profile: every dimension it touches, as a distribution.

The engine calls, per event of the agent in event-time order:

- :meth:`AgentProfile.score` at *arrival*: novelty of each observation (nothing learned)
  and the event's quantities tallied into its event-time window (a burst is seen while it
  happens);
- :meth:`AgentProfile.learn` *later*, only for events behind the slowest source's
  watermark that belong to no incident and were not flagged — an attacker cannot teach
  the baseline by repeating himself;
- :meth:`AgentProfile.protect` for a window that held a flagged hit (its totals are not
  learned), and :meth:`AgentProfile.advance` when the watermark moves (windows close,
  phases move).

A value flagged on novelty alone can be *held* (:meth:`AgentProfile.hold`): once it has
recurred on ``accept_after_days`` distinct days with no other signal, it is learned. An
analyst's disposition learns it at once (:meth:`AgentProfile.accept`).

State is bounded everywhere and serializes compactly (``to_dict``); it carries the river
version and refuses to load under another one (river pickles broke in 0.25).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from models.exec_profile import ExecProfile
from models.features import (
    EXTERNAL_DIMENSIONS,
    Observation,
    PathTree,
    observations,
    quantities,
)
from models.novelty import Novelty, NoveltyScore, NoveltySettings
from models.phases import Phases, PhaseSettings
from models.rates import Rates, RateScore, RatesSettings
from models.risk import RiskClass, classify
from streams.events import Envelope

__all__ = [
    "FORMAT_VERSION",
    "AgentProfile",
    "ExecProfile",
    "ProfileSettings",
    "Scores",
    "VersionMismatch",
]

FORMAT_VERSION = 1
RIVER_VERSION = version("river")  # saved profiles carry it and refuse another
DAY_NS = 86_400 * 1_000_000_000
_PATH_DIMS = frozenset({"file.read", "file.write"})
DESTINATIONS = "net.destinations"  # distinct external destinations per window


class VersionMismatch(ValueError):
    """A saved profile from another river version or format: refuse, do not guess."""


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    novelty: NoveltySettings = field(default_factory=NoveltySettings)
    rates: RatesSettings = field(default_factory=RatesSettings)
    phases: PhaseSettings = field(default_factory=PhaseSettings)
    path_collapse: int = 50  # children before a directory collapses (Kubescape's 50)
    path_dirs: int = 128  # directories tracked for collapse
    accept_after_days: int = 3  # K: a held value recurring on K days unflagged is learned
    max_held: int = 64  # held values kept (oldest dropped, counted)

    def to_dict(self) -> dict[str, Any]:
        """Only what differs from the defaults (most profiles: nothing)."""
        default = dataclasses.asdict(ProfileSettings())
        mine = dataclasses.asdict(self)
        out: dict[str, Any] = {}
        for k, v in mine.items():
            if isinstance(v, dict):
                diff = {kk: vv for kk, vv in v.items() if default[k][kk] != vv}
                if diff:
                    out[k] = diff
            elif default[k] != v:
                out[k] = v
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ProfileSettings:
        try:
            return cls(
                novelty=NoveltySettings(**doc.get("novelty", {})),
                rates=RatesSettings(**doc.get("rates", {})),
                phases=PhaseSettings(**doc.get("phases", {})),
                **{k: v for k, v in doc.items() if k not in ("novelty", "rates", "phases")},
            )
        except TypeError as exc:  # a setting this version does not know
            raise VersionMismatch(f"profile settings: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Scores:
    novelty: tuple[NoveltyScore, ...]
    rates: tuple[RateScore, ...]
    # The raw observations scored: what the engine keeps to learn later (compact, no event).
    observations: tuple[Observation, ...] = ()

    def get(self, dimension: str) -> NoveltyScore | None:
        """The first score of ``dimension`` (None when the event does not touch it)."""
        for s in self.novelty:
            if s.dimension == dimension:
                return s
        return None

    def rate(self, metric: str) -> RateScore | None:
        for r in self.rates:
            if r.metric == metric:
                return r
        return None

    def novel(self) -> tuple[NoveltyScore, ...]:
        """Scores of judged, novel values, most surprising first."""
        return tuple(sorted((s for s in self.novelty if s.novel and s.judged),
                            key=lambda s: -s.surprise))


class AgentProfile:
    """The baseline of one agent (``namespace/kind/workload``).

    Examples
    --------
    >>> from streams.events import Envelope, Proc
    >>> p = AgentProfile("shop/Deployment/bot")
    >>> def ex(exe, ts):
    ...     return Envelope("process.exec", ts, "n1", "kernel", {"argv": [exe]},
    ...                     proc=Proc(pid=1, exe=exe))
    >>> for i in range(100):
    ...     p.learn(ex("/usr/bin/python3", i * 10**9))
    >>> s = p.score(ex("/bin/sh", 101 * 10**9)).get("process.exe")
    >>> s.value, s.novel, s.surprise > 0.95
    ('/usr/bin/sh', True, True)
    >>> p.score(ex("/usr/bin/python3", 102 * 10**9)).get("process.exe").novel
    False
    """

    __slots__ = ("agent", "dims", "first_ts", "held", "held_dropped", "last_ts", "learned",
                 "paths", "phases", "rates", "settings")

    def __init__(self, agent: str, settings: ProfileSettings | None = None) -> None:
        self.agent = agent
        self.settings = settings or ProfileSettings()
        self.dims: dict[str, Novelty] = {}
        self.rates = Rates(self.settings.rates)
        self.phases = Phases(self.settings.phases)
        self.paths = PathTree(self.settings.path_collapse, self.settings.path_dirs)
        self.first_ts = -1
        self.last_ts = -1
        self.learned = 0  # events learned
        # "dim\tvalue" → [first_ts_s, [day numbers seen]] for values flagged on novelty only
        self.held: dict[str, list[Any]] = {}
        self.held_dropped = 0

    # -- scoring ---------------------------------------------------------------------
    def _value(self, o: Observation) -> str:
        if o.dimension in _PATH_DIMS:
            return self.paths.apply(o.value)
        return o.value

    def reopen(self, dimensions: Iterable[str], why: str) -> None:
        """Relearn these dimensions only (a new version of the agent)."""
        self.phases.reopen(dimensions, why)

    def knows(self, o: Observation) -> bool:
        """Whether the (generalized) value is already part of the baseline."""
        nov = self.dims.get(o.dimension)
        return nov is not None and nov.known(self._value(o))

    def score_observation(self, o: Observation, ts: int) -> NoveltyScore:
        value = self._value(o)
        nov = self.dims.get(o.dimension)
        learning = self.phases.learning(o.dimension)
        if nov is None:
            return NoveltyScore(o.dimension, value, True, False, 0.0, 0.5, 0.0, 0, learning)
        return nov.score(value, ts, learning)

    def score(self, event: Envelope) -> Scores:
        """Novelty of the event's observations (no learning) and its quantities tallied
        into the current event-time window."""
        ts = event.ts
        obs = observations(event)
        novelty = tuple(self.score_observation(o, ts) for o in obs)
        rates = [self.rates.tally(m, x, ts) for m, x in quantities(event)]
        for o in obs:
            if o.dimension in EXTERNAL_DIMENSIONS:
                rates.append(self.rates.tally_distinct(DESTINATIONS, o.value, ts))
        return Scores(novelty, tuple(rates), tuple(obs))

    # -- learning --------------------------------------------------------------------
    def _learn_value(self, dim: str, value: str, ts: int) -> bool:
        nov = self.dims.get(dim)
        if nov is None:
            nov = self.dims[dim] = Novelty(dim, self.settings.novelty)
        if dim in _PATH_DIMS:
            value = self.paths.learn(value)
        is_new = nov.learn(value, ts)
        self.phases.note(dim, is_new, ts)
        return is_new

    def learn(self, event: Envelope) -> None:
        """Learn the event's observations (the engine calls this only for unflagged events
        behind the slowest watermark)."""
        self.learn_observations(observations(event), event.ts)

    def learn_observations(self, obs: Iterable[Observation], ts: int) -> None:
        """Learn one event's observations as :meth:`score` returned them (what the engine
        keeps while the event waits for the watermark, instead of the whole event)."""
        if self.first_ts < 0 or ts < self.first_ts:
            self.first_ts = ts
        if ts > self.last_ts:
            self.last_ts = ts
        self.learned += 1
        for o in obs:
            self._learn_value(o.dimension, o.value, ts)

    def protect(self, ts: int) -> None:
        """The window holding ``ts`` had a flagged hit: its totals are not learned."""
        self.rates.protect(ts)

    def advance(self, ts: int) -> None:
        """Event time (the watermark) moved to ``ts``: close windows, move phases."""
        self.rates.close_until(ts)
        self.phases.advance(ts)

    def hold(self, event: Envelope) -> list[Observation]:
        """The event was flagged on novelty alone (no other signal): remember its novel
        values; one that recurs on ``accept_after_days`` distinct days is learned.
        Its observations count as phase evidence (drift). Returns the observations
        learned by this call."""
        return self.hold_observations(observations(event), event.ts)

    def hold_observations(self, obs: Iterable[Observation], ts: int) -> list[Observation]:
        """:meth:`hold` on the observations :meth:`score` returned (what the engine keeps)."""
        day = ts // DAY_NS
        done: list[Observation] = []
        for o in obs:
            value = self._value(o)
            nov = self.dims.get(o.dimension)
            known = nov is not None and nov.known(value)
            # held events are evidence for the phases too: a new image whose every new
            # binary is flagged must still show up as drift on that dimension
            self.phases.note(o.dimension, not known, ts)
            if known:
                continue
            key = f"{o.dimension}\t{value}"
            entry = self.held.get(key)
            if entry is None:
                if len(self.held) >= self.settings.max_held:
                    del self.held[next(iter(self.held))]
                    self.held_dropped += 1
                entry = self.held[key] = [ts // 1_000_000_000, []]
            if day not in entry[1]:
                entry[1].append(day)
            if len(entry[1]) >= self.settings.accept_after_days:
                del self.held[key]
                self._learn_value(o.dimension, o.value, ts)
                done.append(o)
        return done

    def accept(self, dimension: str, value: str, ts: int) -> None:
        """An analyst's disposition: ``value`` is normal for this agent."""
        self.held.pop(f"{dimension}\t{value}", None)
        self._learn_value(dimension, value, ts)

    # -- views -----------------------------------------------------------------------
    @property
    def phase(self) -> str:
        return self.phases.phase

    @property
    def judging(self) -> bool:
        """Whether novelty and rates are judged: once the minimum learning span has passed
        (each dimension then on its own evidence; one that drifted relearns alone, its
        scores say so), whatever the phase still waits for."""
        return self.phases.phase != "learning" or bool(self.phases.relearning) \
            or self.phases.span_passed()

    def judging_at(self, ts: int) -> bool:
        """:attr:`judging`, for an event at ``ts``: one from the first learning span that
        is read late (a source read behind the others) is learned, not judged, so the
        stories do not depend on the order the sources were read in."""
        phases = self.phases
        return self.judging and (bool(phases.relearning)
                                 or ts >= phases.first_ts + phases.settings.min_span_ns)

    def risk(self) -> RiskClass:
        return classify({d: {v: c[0] for v, c in n.values.items()} for d, n in self.dims.items()})

    def summary(self, top: int = 10) -> dict[str, Any]:
        """Readable audit summary (the ``agentstory.profiles.v1`` record)."""
        risk = self.risk()
        ts = max(self.last_ts, 0)
        dims: dict[str, Any] = {}
        for name in sorted(self.dims):
            nov = self.dims[name]
            n, _ = nov.counts(ts)
            dims[name] = {
                "observations": round(n, 1), "distinct": len(nov.values),
                "p_new": round(nov.p_new(ts), 4), "evicted": nov.evicted,
                "learning": self.phases.learning(name),
                "top": [{"value": v, "count": c[0], "first_seen": _iso(c[1]),
                         "last_seen": _iso(c[2])} for v, c in nov.top(top)],
            }
        rates = {}
        for m in sorted(self.rates.stats):
            st = self.rates.stats[m]
            rates[m] = {"mean": round(st.mean.get(), 3),
                        "std": round(max(st.var.get(), 0.0) ** 0.5, 3), "windows": st.n}
        return {
            "agent": self.agent, "does": self._does(), "phase": self.phase,
            "phase_reasons": list(self.phases.reasons),
            "relearning": sorted(self.phases.relearning),
            "risk": {"level": risk.level, "reasons": list(risk.reasons)},
            "first_seen": _iso(self.first_ts // 1_000_000_000) if self.first_ts >= 0 else None,
            "last_seen": _iso(self.last_ts // 1_000_000_000) if self.last_ts >= 0 else None,
            "events_learned": self.learned,
            "window_s": self.settings.rates.window_ns // 1_000_000_000,
            "dimensions": dims, "rates": rates,
            "held": len(self.held),
            "collapsed_dirs": sorted(self.paths.collapsed),
        }

    _DOES = (
        ("process.exe", "runs {n} program{s}"), ("file.read", "reads {n} file class{es}"),
        ("file.write", "writes {n} file class{es}"),
        ("net.domain", "connects to {n} domain{s}"),
        ("net.ip_prefix", "connects to {n} unnamed network{s}"),
        ("net.listen_port", "listens on {n} port{s}"),
        ("l7.provider_model", "calls {n} model{s}"), ("l7.tool_called", "calls {n} tool{s}"),
        ("l7.mcp_tool", "uses {n} MCP tool{s}"),
        ("cloud.action", "makes {n} kind{s} of cloud call"),
    )

    def _does(self, k: int = 3) -> list[str]:
        """What the agent does, one sentence per layer it touched (most frequent first)."""
        out = []
        for dim, template in self._DOES:
            nov = self.dims.get(dim)
            if nov is None or not nov.values:
                continue
            n = len(nov.values)
            head = template.format(n=n, s="" if n == 1 else "s", es="" if n == 1 else "es")
            more = f" and {nov.evicted} more forgotten" if nov.evicted else ""
            top = ", ".join(f"{v} ({c[0]}x)" for v, c in nov.top(k))
            out.append(f"{head}{more}: {top}")
        return out

    # -- state -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": FORMAT_VERSION, "river": RIVER_VERSION, "agent": self.agent,
            "first": self.first_ts, "last": self.last_ts, "learned": self.learned,
            "dims": {d: n.to_dict() for d, n in self.dims.items()},
            "rates": self.rates.to_dict(), "phases": self.phases.to_dict(),
            "paths": self.paths.to_dict(),
        }
        settings = _settings_doc(self.settings)
        if settings:
            doc["settings"] = settings
        if self.held:
            doc["held"] = self.held
        if self.held_dropped:
            doc["held_dropped"] = self.held_dropped
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> AgentProfile:
        if doc.get("format") != FORMAT_VERSION:
            raise VersionMismatch(f"profile format {doc.get('format')!r}, this reader: "
                                  f"{FORMAT_VERSION}")
        if doc.get("river") != RIVER_VERSION:
            raise VersionMismatch(f"profile saved with river {doc.get('river')!r}, this is "
                                  f"river {RIVER_VERSION}: relearn instead of guessing")
        settings = ProfileSettings.from_dict(doc.get("settings", {}))
        p = cls(str(doc["agent"]), settings)
        p.first_ts, p.last_ts = int(doc["first"]), int(doc["last"])
        p.learned = int(doc["learned"])
        p.dims = {d: Novelty.from_dict(d, n, settings.novelty) for d, n in doc["dims"].items()}
        p.rates = Rates.from_dict(doc["rates"], settings.rates)
        p.phases = Phases.from_dict(doc["phases"], settings.phases)
        p.paths = PathTree.from_dict(doc["paths"], settings.path_collapse, settings.path_dirs)
        p.held = {k: [int(v[0]), [int(d) for d in v[1]]] for k, v in doc.get("held", {}).items()}
        p.held_dropped = int(doc.get("held_dropped", 0))
        return p


@functools.lru_cache(maxsize=64)
def _settings_doc(settings: ProfileSettings) -> dict[str, Any]:
    """Settings are frozen and shared by every profile of a worker: diffed once."""
    return settings.to_dict()


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
