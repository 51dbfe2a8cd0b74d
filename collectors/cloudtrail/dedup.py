"""Drop a CloudTrail event seen twice, by ``eventID`` (pure).

With the SQS source (seconds after the call) and the S3 source (the trail's files,
minutes later) both running, every management event arrives twice; a message SQS
redelivers after a visibility timeout arrives twice too. ``eventID`` is CloudTrail's
unique id of an event, so the second copy is dropped and counted. Memory is bounded
twice: ids older than ``window_s`` of event time behind the newest are forgotten, and
at most ``max_ids`` are kept (oldest first out, counted), so a copy later than the
window goes out again — at-least-once, never lost.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

__all__ = ["EventIdDedup"]

_NS = 1_000_000_000


class EventIdDedup:
    """Remembers recent event ids with their event time.

    >>> d = EventIdDedup(window_s=3600)
    >>> d.first("e1", 10 * _NS), d.first("e1", 11 * _NS), d.first("", 12 * _NS)
    (True, False, True)
    """

    def __init__(self, *, window_s: float = 6 * 3600.0, max_ids: int = 200_000) -> None:
        self.window_s = window_s
        self.max_ids = max_ids
        self._window_ns = int(window_s * _NS)
        self._ids: OrderedDict[str, int] = OrderedDict()  # in arrival order
        self._newest = 0
        self.counts: dict[str, int] = {"duplicates": 0, "expired": 0, "evicted": 0}

    def __len__(self) -> int:
        return len(self._ids)

    def first(self, event_id: str, ts: int) -> bool:
        """True the first time ``event_id`` is seen (an empty id always is)."""
        if not event_id:
            return True
        if event_id in self._ids:
            self.counts["duplicates"] += 1
            return False
        self._ids[event_id] = ts
        if ts > self._newest:
            self._newest = ts
            self._expire()
        while len(self._ids) > self.max_ids:
            self._ids.popitem(last=False)
            self.counts["evicted"] += 1
        return True

    def _expire(self) -> None:
        # arrival order is close to event-time order; stop at the first recent id
        limit = self._newest - self._window_ns
        while self._ids:
            event_id, ts = next(iter(self._ids.items()))
            if ts >= limit:
                return
            del self._ids[event_id]
            self.counts["expired"] += 1

    def snapshot(self) -> dict[str, Any]:
        return {"newest": self._newest, "ids": list(self._ids.items())}

    def restore(self, doc: Mapping[str, Any] | None) -> None:
        if not doc:
            return
        self._newest = int(doc.get("newest", 0))
        self._ids = OrderedDict((str(k), int(v)) for k, v in doc.get("ids", []))
