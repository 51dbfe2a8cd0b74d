"""Which name a pod resolved an address from (pure, bounded).

Naming a connection by the last DNS answer seen anywhere on the node names it wrong
whenever pods share an address (CDNs, cloud load balancers, a service mesh's VIPs), and
names a bare-IP connect after someone else's lookup. Answers are kept per pod (or per
container cgroup when the pod is unknown) with their TTL, plus a grace period for
clients that cache a little longer than the TTL says; a connect is named only by what
its own pod resolved, before the entry expired.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["PodDnsNames"]

NS = 1_000_000_000


class PodDnsNames:
    """(scope, address) → (name, expiry), least recently learnt evicted first.

    >>> names = PodDnsNames(grace_s=0)
    >>> names.learn("pod-a", "10.1.2.3", "a.example.com", ts=0, ttl_s=60)
    >>> names.learn("pod-b", "10.1.2.3", "b.example.com", ts=0, ttl_s=60)
    >>> names.name_for("pod-a", "10.1.2.3", ts=5 * NS), names.name_for("pod-b", "10.1.2.3", ts=5)
    ('a.example.com', 'b.example.com')
    >>> names.name_for("pod-c", "10.1.2.3", ts=5)   # pod-c resolved nothing
    ''
    >>> names.name_for("pod-a", "10.1.2.3", ts=61 * NS)   # expired
    ''
    """

    def __init__(self, max_entries: int = 65_536, *, grace_s: float = 30.0) -> None:
        self.max_entries = max_entries
        self.grace_ns = int(grace_s * NS)
        self._entries: OrderedDict[tuple[str, str], tuple[str, int]] = OrderedDict()
        self.counts = {"learnt": 0, "named": 0, "expired": 0, "evicted": 0}

    def learn(self, scope: str, address: str, name: str, *, ts: int, ttl_s: int) -> None:
        key = (scope, address)
        self._entries[key] = (name, ts + max(0, ttl_s) * NS + self.grace_ns)
        self._entries.move_to_end(key)
        self.counts["learnt"] += 1
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.counts["evicted"] += 1

    def name_for(self, scope: str, address: str, *, ts: int) -> str:
        found = self._entries.get((scope, address))
        if found is None:
            return ""
        name, expires = found
        if ts > expires:
            del self._entries[(scope, address)]
            self.counts["expired"] += 1
            return ""
        self.counts["named"] += 1
        return name

    def __len__(self) -> int:
        return len(self._entries)
