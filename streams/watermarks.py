"""The route's watermarks: per source, the event time it has surely read up to.

Each raw partition keeps its own newest event time per source. A source's watermark is
the slowest of its partitions that still have messages to read, or the newest of all once
every partition is read up to its end, less the source's allowed lateness. Why: a worker
that catches up (after a restart, a flood, a lagging fetch) reads some partitions far
ahead of others, and a collector's heartbeat keyed by node sits in another partition than
the pods' events; a single newest-per-source would let one partition's time pass events
still unread in another (Flink and Kafka Streams also keep one watermark per partition).

A source read to its end is idle and stops holding the others back (as Flink's idleness
does): read live (``recent_s`` > 0), as soon as nothing came for ``recent_s`` of wall
clock, and then its allowed lateness has passed too, so a quiet pipeline still releases
its last events; in a replay, when its newest event is ``idle_ns`` behind the fastest
source (a CloudTrail collector with nothing to deliver). A source with messages left to
read is never idle, however far behind: it is being caught up.

"Messages left to read" is the client's high-water mark past the message, or a message
read less than ``recent_s`` ago (wall clock): the high-water mark is as old as the last
fetch, and a partition still being written to (a flood being imported, a busy pod) must
not look read to its end between two fetches. Partitions not read from yet are not known
here: the first message of each counts.
"""

from __future__ import annotations

from streams.events import Envelope

__all__ = ["Watermarks"]

Partition = tuple[str, int]


class Watermarks:
    def __init__(self, lateness_ns: dict[str, int], idle_ns: int, recent_s: float = 0.0,
                 ) -> None:
        self.lateness = lateness_ns
        self.idle_ns = idle_ns
        self.recent_s = recent_s
        self.parts: dict[Partition, dict[str, int]] = {}  # partition → source → newest ts
        self.backlog: dict[Partition, bool] = {}  # partition → messages left to read
        self.read_at: dict[Partition, float] = {}  # partition → when its last message came

    def see(self, event: Envelope, part: Partition = ("", 0), *, backlog: bool = False,
            now: float = 0.0) -> None:
        """``event`` was read from ``part`` at ``now`` (monotonic seconds); ``backlog``:
        the client's high-water mark says the partition has more to read."""
        newest = self.parts.setdefault(part, {})
        if event.ts > newest.get(event.source, 0):
            newest[event.source] = event.ts
        self.backlog[part] = backlog
        self.read_at[part] = now

    def _reading(self, part: Partition, now: float) -> bool:
        return self.backlog[part] or now - self.read_at[part] < self.recent_s

    @property
    def newest(self) -> dict[str, int]:
        """Per source, the newest event time read in any partition."""
        out: dict[str, int] = {}
        for newest in self.parts.values():
            for source, ts in newest.items():
                out[source] = max(ts, out.get(source, 0))
        return out

    def _behind(self, now: float) -> dict[str, int]:
        """Per source with messages left to read, its slowest such partition's newest."""
        behind: dict[str, int] = {}
        for part, newest in self.parts.items():
            if self._reading(part, now):
                for source, ts in newest.items():
                    behind[source] = min(ts, behind.get(source, ts))
        return behind

    def current(self, now: float = 0.0) -> dict[str, int]:
        behind = self._behind(now)
        reached = {source: behind.get(source, ts) for source, ts in self.newest.items()}
        fastest = max(reached.values(), default=0)
        live = self.recent_s > 0
        marks = {source: ts - (0 if live and source not in behind
                               else self.lateness.get(source, 0))
                 for source, ts in reached.items()}
        idle = {source for source, ts in reached.items() if source not in behind
                and (live or ts < fastest - self.idle_ns)}
        active = [mark for source, mark in marks.items() if source not in idle]
        # an idle source holds nothing back: it takes the slowest active watermark
        floor = min(active) if active else max(marks.values(), default=0)
        return {source: max(mark, floor) if source in idle else mark
                for source, mark in marks.items()}

    def ahead(self, lead_ns: int, now: float = 0.0) -> set[Partition]:
        """Partitions of the other sources read more than ``lead_ns`` of event time past
        the slowest source still being read: to pause until it catches up (back-pressure,
        as Kafka Streams synchronizes its inputs on timestamps). Partitions of one source
        are not paced against each other: each keeps its own watermark, and the waiting
        events an agent holds grow only with the skew between sources."""
        behind = self._behind(now)
        if len(behind) < 2:
            return set()
        slowest_source = min(behind, key=lambda source: behind[source])
        limit = behind[slowest_source] + lead_ns
        return {part for part, newest in self.parts.items()
                if any(source != slowest_source and ts > limit for source, ts in newest.items())}
