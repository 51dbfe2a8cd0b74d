"""Categorical novelty of one dimension of one agent, sound on small samples.

The chance that the agent's next value on this dimension is new is estimated from
counts decayed on event time (half-life ``half_life_ns``) with add-one smoothing:
``p_new = (new + 1) / (n + 2)``, where ``n`` is the decayed number of observations and
``new`` the decayed number of those that were new when learned. It starts near 1/2
(not 0 or 1), falls as an agent repeats itself and stays high for an agent that meets
new values all the time — so a new value is *surprising* (``1 - p_new``) only for an
agent that rarely meets one. A dimension judges nothing before ``min_obs`` observations.

Values are bounded (``max_values``): past the bound the least recently learned eighth is
evicted (counted in ``evicted``) into a river ``sketch.Set`` (Bloom filter) created only
then, so an evicted value stays known — a Bloom filter has no false negatives. The sketch
is fed a stable 64-bit digest, not ``hash(str)``, which Python salts per process: a
restored profile must recognise what it evicted before the restart.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import math
from dataclasses import dataclass
from typing import Any

from river import sketch

__all__ = ["Novelty", "NoveltyScore", "NoveltySettings", "stable_key"]

SECOND_NS = 1_000_000_000
DAY_NS = 86_400 * SECOND_NS


@dataclass(frozen=True, slots=True)
class NoveltySettings:
    half_life_ns: int = 7 * DAY_NS  # a week-old habit weighs half as much as today's
    min_obs: int = 20  # observations of its own before a dimension judges anything
    max_values: int = 128  # distinct values kept per dimension (then evict to the sketch)
    sketch_capacity: int = 8192  # evicted values the Bloom filter holds at sketch_fp_rate
    sketch_fp_rate: float = 0.01  # chance an unseen value passes as evicted-and-known
    seed: int = 42  # the sketch's hash masks


@dataclass(frozen=True, slots=True)
class NoveltyScore:
    dimension: str
    value: str
    novel: bool  # value never learned (and not in the eviction sketch)
    judged: bool  # the dimension had >= min_obs observations of its own
    surprise: float  # 0..1: 1 - p_new for a novel judged value, else 0.0
    p_new: float  # (new + 1) / (n + 2) on decayed counts
    observations: float  # decayed observation count of the dimension
    distinct: int  # distinct values kept
    learning: bool = False  # the dimension is (re)learning (new agent or drift)


def _bits_to_text(bits: int) -> str:
    return base64.b64encode(bits.to_bytes((bits.bit_length() + 7) // 8, "little")).decode()


def _text_to_bits(text: str) -> int:
    return int.from_bytes(base64.b64decode(text), "little")


@functools.lru_cache(maxsize=65536)
def stable_key(value: str) -> int:
    """A process-independent 64-bit key (``hash(str)`` is salted per interpreter)."""
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")


class Novelty:
    """One dimension: ``score(value, ts)`` (no side effect) and ``learn(value, ts)``.

    Examples
    --------
    >>> nov = Novelty("net.domain", NoveltySettings(min_obs=5))
    >>> for i in range(50):
    ...     _ = nov.learn("openai.com", i * SECOND_NS)
    >>> s = nov.score("evil.example", 60 * SECOND_NS)
    >>> s.novel, s.judged, round(s.p_new, 3), s.surprise > 0.95
    (True, True, 0.038, True)
    >>> nov.score("openai.com", 60 * SECOND_NS).novel
    False
    """

    __slots__ = ("_bits", "_n", "_new", "_t", "dimension", "evicted", "settings", "sketch",
                 "values")

    def __init__(self, dimension: str, settings: NoveltySettings | None = None) -> None:
        self.dimension = dimension
        self.settings = settings or NoveltySettings()
        # value → [count, first_seen_s, last_seen_s]; seconds keep the JSON short
        self.values: dict[str, list[int]] = {}
        self._n = 0.0  # decayed observations at time _t
        self._new = 0.0  # decayed new-when-learned observations at time _t
        self._t = 0  # ns of the last decay
        self.evicted = 0
        self.sketch: sketch.Set | None = None
        self._bits = b""  # little-endian bytes of the sketch's bits, for fast lookups

    # -- counts ------------------------------------------------------------------------
    def _decay(self, ts: int) -> float:
        if ts <= self._t:
            return 1.0
        return math.exp2(-(ts - self._t) / self.settings.half_life_ns)

    def counts(self, ts: int) -> tuple[float, float]:
        """Decayed (observations, new) at ``ts`` (no side effect)."""
        f = self._decay(ts)
        return self._n * f, self._new * f

    def p_new(self, ts: int) -> float:
        n, new = self.counts(ts)
        return (new + 1.0) / (n + 2.0)

    def known(self, value: str) -> bool:
        if value in self.values:
            return True
        return self.sketch is not None and self._in_sketch(value)

    def _in_sketch(self, value: str) -> bool:
        """``stable_key(value) in self.sketch``, without river's per-call list building
        (same hash functions: river's ``Set._hash`` of an int key)."""
        sk = self.sketch
        assert sk is not None
        h = hash(stable_key(value))  # hash(int) is not salted
        bits, size = self._bits, sk._asize
        for m in sk._masks:
            p = (h ^ m) % size
            if not (bits[p >> 3] >> (p & 7)) & 1:
                return False
        return True

    def _sync_bits(self) -> None:
        """Mirror the river sketch's integer bit array as bytes: testing a bit of a
        80k-bit Python int costs a shift of the whole int, a byte lookup does not."""
        assert self.sketch is not None
        bloom = self.sketch._bloom
        self._bits = bloom.to_bytes((bloom.bit_length() + 7) // 8, "little")

    # -- API ---------------------------------------------------------------------------
    def score(self, value: str, ts: int, learning: bool = False) -> NoveltyScore:
        """How new ``value`` is at ``ts`` (no side effect); ``learning`` is passed through
        to the score (the dimension is (re)learning)."""
        f = self._decay(ts)
        n = self._n * f
        p_new = (self._new * f + 1.0) / (n + 2.0)
        novel = value not in self.values and not (
            self.sketch is not None and self._in_sketch(value))
        judged = n >= self.settings.min_obs
        return NoveltyScore(
            self.dimension, value, novel, judged,
            (1.0 - p_new) if novel and judged else 0.0, p_new, n, len(self.values), learning,
        )

    def learn(self, value: str, ts: int) -> bool:
        """Count one observation; True when the value was new."""
        f = self._decay(ts)
        if ts > self._t:
            self._t = ts
        sec = ts // SECOND_NS
        entry = self.values.get(value)
        is_new = entry is None and not (self.sketch is not None and self._in_sketch(value))
        self._n = self._n * f + 1.0
        self._new = self._new * f + (1.0 if is_new else 0.0)
        if entry is not None:
            entry[0] += 1
            if sec > entry[2]:
                entry[2] = sec
            elif sec < entry[1]:
                entry[1] = sec
            del self.values[value]  # keep the dict in learn order: oldest first
            self.values[value] = entry
        else:
            self.values[value] = [1, sec, sec]
            if len(self.values) > self.settings.max_values:
                self._evict()
        return is_new

    def _evict(self) -> None:
        """Drop the least recently learned eighth (the dict is kept in learn order) into
        the Bloom sketch, created here on first use."""
        if self.sketch is None:
            s = self.settings
            self.sketch = sketch.Set(capacity=s.sketch_capacity, fp_rate=s.sketch_fp_rate,
                                     seed=s.seed)
        drop = max(1, len(self.values) // 8)
        for value in list(itertools.islice(self.values, drop)):
            del self.values[value]
            self.sketch.add(stable_key(value))
        self.evicted += drop
        self._sync_bits()

    def top(self, k: int = 10) -> list[tuple[str, list[int]]]:
        return sorted(self.values.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]

    # -- state -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"n": self._n, "new": self._new,
                               "t": self._t, "v": self.values}
        if self.evicted:
            doc["ev"] = self.evicted
        if self.sketch is not None:
            doc["sk"] = _bits_to_text(self.sketch._bloom)
        return doc

    @classmethod
    def from_dict(cls, dimension: str, doc: dict[str, Any],
                  settings: NoveltySettings | None = None) -> Novelty:
        nov = cls(dimension, settings)
        nov._n = float(doc["n"])
        nov._new = float(doc["new"])
        nov._t = int(doc["t"])
        nov.values = {str(k): [int(x) for x in v] for k, v in doc["v"].items()}
        nov.evicted = int(doc.get("ev", 0))
        if "sk" in doc:
            s = nov.settings
            nov.sketch = sketch.Set(capacity=s.sketch_capacity, fp_rate=s.sketch_fp_rate,
                                    seed=s.seed)
            bloom = _text_to_bits(str(doc["sk"]))
            if bloom.bit_length() != nov.sketch._bloom.bit_length():
                raise ValueError(f"{dimension}: sketch size does not match the settings")
            nov.sketch._bloom = bloom
            nov._sync_bits()
        return nov
