"""User-space half of the in-kernel de-duplication (pure bookkeeping).

The kernel emits the first of identical events (same container, same key, same window)
and counts the rest in a table keyed by (key, window). When a window has closed, the
loader reads and deletes its table entries and asks :class:`RepeatLedger` for the
envelope that reports the repeats: a copy of the first one with ``data.count`` = the
number of repeats and ``data.repeat`` = True. Summing ``data.count`` over the envelopes
of a key gives the exact number of events; nothing is silently folded away.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Hashable

from streams.events import Envelope

__all__ = ["RepeatLedger"]


class RepeatLedger:
    """First envelope per open dedup window, bounded (oldest forgotten, counted).

    >>> from streams.events import Envelope
    >>> ledger = RepeatLedger()
    >>> first = Envelope("file.open", 10, "n", "kernel", {"path": "/x", "count": 1})
    >>> ledger.opened(("k", 1), first)
    >>> ledger.closed(("k", 1), total=5, ts=99).data
    {'path': '/x', 'count': 4, 'repeat': True}
    >>> ledger.closed(("k", 1), total=1, ts=99) is None
    True
    """

    def __init__(self, max_entries: int = 65_536) -> None:
        self.max_entries = max_entries
        self._first: OrderedDict[Hashable, Envelope] = OrderedDict()
        self.evicted = 0
        self.first_missing = 0

    def opened(self, key: Hashable, envelope: Envelope) -> None:
        self._first[key] = envelope
        self._first.move_to_end(key)
        while len(self._first) > self.max_entries:
            self._first.popitem(last=False)
            self.evicted += 1

    def closed(self, key: Hashable, *, total: int, ts: int,
               fallback: Envelope | None = None) -> Envelope | None:
        """The window of ``key`` closed with ``total`` events in the kernel's table (the
        first one included). Returns the repeats envelope, or None when there were none.
        ``fallback`` stands in for a first envelope that is unknown here (lost in a full
        ring buffer or evicted); it is then marked ``first_missing``."""
        first = self._first.pop(key, None)
        repeats = total - 1
        if repeats <= 0:
            return None
        data_extra: dict[str, object] = {"count": repeats, "repeat": True}
        if first is None:
            if fallback is None:
                return None
            self.first_missing += 1
            first = fallback
            data_extra["first_missing"] = True
        return dataclasses.replace(first, ts=max(ts, first.ts),
                                   data={**first.data, **data_extra})

    def forget_before(self, window: int, window_of: Callable[[Hashable], int]) -> int:
        """Drop the first envelopes of windows before ``window``: the loader calls it once
        those windows were swept, so what is left of them had no entry in the kernel's
        table (emitted without de-duplication: the table was full) and can have no
        repeats. Without it such entries stay until evicted, and at a high rate of
        distinct events the ledger sits at its bound (tens of MiB of envelopes).
        Entries are in arrival order, so this pops from the front. Returns how many.

        >>> ledger = RepeatLedger()
        >>> for w in (1, 1, 2, 3):
        ...     ledger.opened(("k", w, len(ledger)), Envelope("file.open", w, "n", "kernel"))
        >>> ledger.forget_before(3, lambda key: key[1]), len(ledger)
        (3, 1)
        """
        dropped = 0
        while self._first:
            key = next(iter(self._first))
            if window_of(key) >= window:
                break
            del self._first[key]
            dropped += 1
        return dropped

    def __len__(self) -> int:
        return len(self._first)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._first
