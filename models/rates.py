"""Rates and volumes of one agent on event-time windows, learned with river estimators.

Each metric is tallied into the window its event falls in (``window_ns``, aligned on the
epoch) the moment the event is *scored*, so a burst is visible while it happens. Windows
stay open until the watermark passes their end (``close_until``): a late cloud event
still lands in its own window. A closed window's totals are learned into a per-metric
river ``stats.EWMean`` / ``stats.EWVar`` — unless the window was *protected* (it held a
flagged hit: what an attacker did is not normal), river's ``protect_anomaly_detector``
idea. Idle windows count as zeros (up to ``max_gap_windows`` of them per metric), or a
metric seen once a day would look like its busy minutes; a metric first seen in a
window starts with the zeros of the windows learned before it.

The river estimators are Rust-backed; their state is kept as the bytes of their own
``__getstate__`` — which is why a saved profile carries the river version.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

from river import stats

__all__ = ["RateScore", "Rates", "RatesSettings"]

SECOND_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class RatesSettings:
    window_ns: int = 60 * SECOND_NS
    fading_factor: float = 0.05  # EWMean/EWVar weight of the newest window (~20-window memory)
    min_windows: int = 10  # closed windows learned before a metric is judged
    max_gap_windows: int = 60  # idle windows learned as zeros after a metric's last window
    max_open_windows: int = 64  # open windows kept while the watermark lags
    max_metrics: int = 128  # metrics per agent (cloud.call:service:action can be many)
    max_distinct: int = 256  # distinct keys counted per window for distinct-count metrics
    std_floor_ratio: float = 0.1  # z uses max(std, ratio * mean, std_floor)
    std_floor: float = 1.0
    ratio_floor: float = 0.1  # ratio = value / max(mean, this): 30 never-seen calls → 300x


@dataclass(frozen=True, slots=True)
class RateScore:
    metric: str
    value: float  # the current window's total so far (this event included)
    mean: float  # learned mean of closed windows
    std: float
    z: float  # (value - mean) / max(std, floors); 0.0 when not judged
    ratio: float  # value / max(mean, ratio_floor)
    judged: bool  # enough closed windows learned


class _Stat:
    """One metric's learned window totals (river EWMean + EWVar) and bookkeeping."""

    __slots__ = ("last", "mean", "mu", "n", "sigma", "var")

    def __init__(self, fading_factor: float) -> None:
        self.mean = stats.EWMean(fading_factor)
        self.var = stats.EWVar(fading_factor)
        self.n = 0  # windows learned
        self.last = -1  # start of the last window learned
        self.mu = 0.0  # mean and std as of the last update (they change only then)
        self.sigma = 0.0

    def update(self, x: float) -> None:
        self.mean.update(x)
        self.var.update(x)
        self.n += 1
        self.refresh()

    def refresh(self) -> None:
        self.mu = self.mean.get()
        self.sigma = math.sqrt(max(self.var.get(), 0.0))

    def to_list(self) -> list[Any]:
        return [self.n, self.last, _pack(self.mean), _pack(self.var)]

    @classmethod
    def from_list(cls, doc: list[Any], fading_factor: float) -> _Stat:
        s = cls(fading_factor)
        s.n, s.last = int(doc[0]), int(doc[1])
        _unpack(s.mean, doc[2], "_ewmean")
        _unpack(s.var, doc[3], "_ewvar")
        s.refresh()
        return s


def _pack(estimator: stats.EWMean | stats.EWVar) -> str:
    inner = estimator._ewmean if isinstance(estimator, stats.EWMean) else estimator._ewvar
    return base64.b64encode(inner.__getstate__()).decode()


def _unpack(estimator: stats.EWMean | stats.EWVar, text: str, attr: str) -> None:
    getattr(estimator, attr).__setstate__(base64.b64decode(text))


class Rates:
    """Per-metric window totals of one agent.

    Examples
    --------
    >>> r = Rates(RatesSettings(window_ns=60 * SECOND_NS, min_windows=3))
    >>> for w in range(10):
    ...     for _ in range(5):
    ...         _ = r.tally("cloud.call", 1.0, w * 60 * SECOND_NS)
    >>> r.close_until(10 * 60 * SECOND_NS)
    10
    >>> s = None
    >>> for _ in range(500):
    ...     s = r.tally("cloud.call", 1.0, 10 * 60 * SECOND_NS + 1)
    >>> s.judged, s.value, round(s.mean, 1), s.ratio > 50
    (True, 500.0, 5.0, True)
    """

    __slots__ = ("distinct", "late", "learned", "open", "protected", "settings",
                 "skipped", "stats", "watermark")

    def __init__(self, settings: RatesSettings | None = None) -> None:
        self.settings = settings or RatesSettings()
        self.open: dict[int, dict[str, float]] = {}  # window start → metric → total
        self.distinct: dict[int, dict[str, set[str]]] = {}  # window start → metric → keys
        self.protected: set[int] = set()  # window starts that held a flagged hit
        self.stats: dict[str, _Stat] = {}
        self.watermark = 0  # windows ending at or before this are closed
        self.learned = 0  # windows learned
        self.skipped = 0  # protected windows not learned
        self.late = 0  # tallies for windows already closed (scored, not learned)

    def _start(self, ts: int) -> int:
        return ts - ts % self.settings.window_ns

    def _score(self, metric: str, value: float) -> RateScore:
        s = self.stats.get(metric)
        cfg = self.settings
        if s is None:  # never seen: zero in every window learned so far
            judged = self.learned >= cfg.min_windows and len(self.stats) < cfg.max_metrics
            z = value / cfg.std_floor if judged else 0.0
            return RateScore(metric, value, 0.0, 0.0, z, value / cfg.ratio_floor, judged)
        mean, std = s.mu, s.sigma
        judged = s.n >= cfg.min_windows
        floor = max(std, cfg.std_floor_ratio * abs(mean), cfg.std_floor)
        z = (value - mean) / floor if judged else 0.0
        return RateScore(metric, value, mean, std, z, value / max(mean, cfg.ratio_floor),
                         judged)

    def tally(self, metric: str, amount: float, ts: int) -> RateScore:
        """Add ``amount`` to the window holding ``ts`` and score that window's total."""
        start = self._start(ts)
        if start + self.settings.window_ns <= self.watermark:
            self.late += 1
            return self._score(metric, amount)
        window = self.open.get(start)
        if window is None:
            window = self._open_window(start)
        total = window.get(metric, 0.0) + amount
        window[metric] = total
        return self._score(metric, total)

    def tally_distinct(self, metric: str, key: str, ts: int) -> RateScore:
        """Count ``key`` once per window under ``metric`` (e.g. distinct destinations)."""
        start = self._start(ts)
        if start + self.settings.window_ns <= self.watermark:
            self.late += 1
            return self._score(metric, 1.0)
        window = self.open.get(start)
        if window is None:
            window = self._open_window(start)
        keys = self.distinct.setdefault(start, {}).setdefault(metric, set())
        if key not in keys and len(keys) < self.settings.max_distinct:
            keys.add(key)
            window[metric] = float(len(keys))
        return self._score(metric, window.get(metric, 0.0))

    def current(self, metric: str, ts: int) -> RateScore:
        window = self.open.get(self._start(ts), {})
        return self._score(metric, window.get(metric, 0.0))

    def _open_window(self, start: int) -> dict[str, float]:
        window: dict[str, float] = {}
        self.open[start] = window
        if len(self.open) > self.settings.max_open_windows:
            oldest = min(self.open)
            self._close(oldest)
            self.watermark = max(self.watermark, oldest + self.settings.window_ns)
        return window

    def protect(self, ts: int) -> None:
        """The window holding ``ts`` had a flagged hit: do not learn its totals."""
        self.protected.add(self._start(ts))

    def close_until(self, watermark: int) -> int:
        """Close (and learn) every open window that ends at or before ``watermark``;
        returns how many closed."""
        if watermark <= self.watermark:
            return 0
        self.watermark = watermark
        done = sorted(s for s in self.open if s + self.settings.window_ns <= watermark)
        for start in done:
            self._close(start)
        self.protected = {s for s in self.protected if s + self.settings.window_ns > watermark}
        return len(done)

    def _close(self, start: int) -> None:
        window = self.open.pop(start)
        self.distinct.pop(start, None)
        if start in self.protected:
            self.protected.discard(start)
            self.skipped += 1
            return
        cfg = self.settings
        w = cfg.window_ns
        for metric in set(window) | set(self.stats):
            s = self.stats.get(metric)
            if s is None:
                if len(self.stats) >= cfg.max_metrics:
                    continue
                s = self.stats[metric] = _Stat(cfg.fading_factor)
                # A metric first seen now was zero in the windows already learned: an
                # action the agent never did at all is judged against zeros, not against
                # its own first window.
                for _ in range(min(self.learned, cfg.max_gap_windows)):
                    s.update(0.0)
            elif s.last >= start:
                continue
            if s.last >= 0:  # idle windows since this metric's last one count as zeros
                gap = min((start - s.last) // w - 1, cfg.max_gap_windows)
                for _ in range(max(gap, 0)):
                    s.update(0.0)
            s.update(window.get(metric, 0.0))
            s.last = start
        self.learned += 1

    # -- state -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "wm": self.watermark,
            "open": {str(k): v for k, v in self.open.items()},
            "stats": {m: s.to_list() for m, s in self.stats.items()},
            "learned": self.learned,
        }
        if self.distinct:
            doc["distinct"] = {str(k): {m: sorted(v) for m, v in d.items()}
                               for k, d in self.distinct.items()}
        if self.protected:
            doc["protected"] = sorted(self.protected)
        if self.skipped:
            doc["skipped"] = self.skipped
        if self.late:
            doc["late"] = self.late
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any], settings: RatesSettings | None = None) -> Rates:
        r = cls(settings)
        ff = r.settings.fading_factor
        r.watermark = int(doc["wm"])
        r.open = {int(k): {m: float(x) for m, x in v.items()} for k, v in doc["open"].items()}
        r.stats = {m: _Stat.from_list(v, ff) for m, v in doc["stats"].items()}
        r.learned = int(doc.get("learned", 0))
        r.distinct = {int(k): {m: set(v) for m, v in d.items()}
                      for k, d in doc.get("distinct", {}).items()}
        r.protected = {int(s) for s in doc.get("protected", ())}
        r.skipped = int(doc.get("skipped", 0))
        r.late = int(doc.get("late", 0))
        return r
