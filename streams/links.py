"""What ties one step of a story to an earlier one: a small, bounded context per pod.

The context remembers, on event time, what later steps may need to name their cause:
process lineage (``start_ns:pid`` → parent), recent marks (a token read, injected
content) and connections to cloud API endpoints (a connection's own step carries its
local port, so L7 steps on it link without a table). Every step records the facts it can
be linked by (:func:`link_facts`); :func:`link_steps` then links the ordered steps of a story:

- *causal* when lineage (the process or one of its ancestors made the earlier step), a
  connection (the L7 request rode the kernel's connection), a request/response pair
  (a tool call answered on the connection that carried injected content), a dispatched
  tool call (the MCP call or process that carried out the model's tool call), or the
  cloud endpoint (the pod connected to that AWS service just before the CloudTrail call)
  ties them;
- *temporal* when only the pod and the incident window do.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from streams.events import Envelope

__all__ = ["PodContext", "link_facts", "link_steps"]

SECOND_NS = 1_000_000_000
TOOL_WINDOW_NS = 120 * SECOND_NS  # a tool's effects follow its call within this
CLOUD_SKEW_NS = 2 * SECOND_NS  # CloudTrail times are whole seconds, clocks drift
CLOUD_WINDOW_NS = 900 * SECOND_NS


def _lru_put(table: OrderedDict[Any, Any], key: Any, value: Any, limit: int) -> int:
    """Insert as most recent; evict the oldest past ``limit``; the number evicted."""
    table[key] = value
    table.move_to_end(key)
    evicted = 0
    while len(table) > limit:
        table.popitem(last=False)
        evicted += 1
    return evicted


@dataclass
class PodContext:
    """Bounded event-time memory of one pod (LRU per table, evictions counted)."""

    # pid → [ppid, exe, start_ns]; AWS service → [ts, pid, domain]
    procs: OrderedDict[int, list[Any]] = field(default_factory=OrderedDict)
    aws: OrderedDict[str, list[Any]] = field(default_factory=OrderedDict)
    # mark → [[ts, 1 set | 0 cleared], …] in event-time order (bounded): a fact's history,
    # so "was it set at t" does not depend on the order the topics were read in
    marks: dict[str, list[list[int]]] = field(default_factory=dict)
    last_ts: int = 0
    evicted: int = 0

    MAX_PROCS = 256

    def observe(self, event: Envelope) -> None:
        self.last_ts = max(self.last_ts, event.ts)
        proc, data = event.proc, event.data
        if event.kind == "process.exec" and proc is not None:
            self.evicted += _lru_put(self.procs, proc.pid,
                                     [proc.ppid, proc.exe or data.get("filename", ""),
                                      proc.start_ns], self.MAX_PROCS)
        elif event.kind == "net.connect" and proc is not None and data.get("dst_addr"):
            domain = str(data.get("domain") or "")
            service = aws_service(domain)
            if service:
                self.evicted += _lru_put(self.aws, service, [event.ts, proc.pid, domain], 32)

    MAX_MARK_HISTORY = 32

    def mark(self, name: str, ts: int, on: bool = True) -> None:
        """Record a set (or a clear) at ``ts``. A clear right after a clear says nothing
        new and is not kept, so a routine of clean requests cannot push the last set out
        of the bounded history before a lagging topic's steps ask about it."""
        history = self.marks.get(name)
        if history is None:
            if not on:
                return
            history = self.marks[name] = []
        i = bisect.bisect_right(history, [ts, int(on)])
        if not on and i > 0 and not history[i - 1][1]:
            return
        history.insert(i, [ts, int(on)])
        del history[:-self.MAX_MARK_HISTORY]

    def since(self, name: str, ts: int) -> int | None:
        """Event time since ``name`` was last set at or before ``ts``; None when it was
        not, or was cleared after."""
        history = self.marks.get(name)
        if not history:
            return None
        i = bisect.bisect_right(history, [ts, 1]) - 1
        if i < 0 or not history[i][1]:
            return None
        return ts - history[i][0]

    def ancestors(self, pid: int, depth: int = 16) -> list[int]:
        """``pid`` and its known ancestors in this pod, nearest first."""
        chain = [pid]
        while len(chain) < depth:
            entry = self.procs.get(chain[-1])
            if entry is None or not entry[0] or entry[0] in chain:
                break
            chain.append(entry[0])
        return chain

    def to_dict(self) -> dict[str, Any]:
        return {"procs": [[k, *v] for k, v in self.procs.items()],
                "aws": [[k, *v] for k, v in self.aws.items()],
                "marks": self.marks, "last_ts": self.last_ts, "evicted": self.evicted}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> PodContext:
        return cls(OrderedDict((r[0], r[1:]) for r in doc["procs"]),
                   OrderedDict((r[0], r[1:]) for r in doc["aws"]),
                   {k: [list(e) for e in v] for k, v in doc["marks"].items()},
                   doc["last_ts"], doc["evicted"])


def aws_service(domain: str) -> str:
    """``s3.us-east-1.amazonaws.com`` → ``s3``; '' for other domains."""
    if not domain.endswith(".amazonaws.com"):
        return ""
    first = domain.split(".", 1)[0]
    return {"bucket": "s3"}.get(first, first)


def link_facts(event: Envelope, ctx: PodContext) -> dict[str, Any]:
    """What a step of this event can be linked by, captured at the event (context changes)."""
    facts: dict[str, Any] = {}
    proc = event.proc
    if proc is not None and proc.pid:
        if event.kind == "process.exec" and proc.ppid:  # not in the context yet
            facts["lineage"] = [proc.pid, *ctx.ancestors(proc.ppid)]
        else:
            facts["lineage"] = ctx.ancestors(proc.pid)
    data = event.data
    conn = data.get("conn")
    if isinstance(conn, dict):
        facts["conn"] = conn.get("id")
        if conn.get("sport"):
            facts["local"] = f"{conn.get('sport')}"
    if event.kind == "net.connect" and data.get("src_port"):
        facts["local"] = f"{data['src_port']}"
    if data.get("tool"):
        facts["tool"] = str(data["tool"])
    if event.kind == "cloud.api":
        service = str(data.get("service") or "")
        seen = ctx.aws.get(service) or ctx.aws.get("sts")
        if seen and event.ts - seen[0] + CLOUD_SKEW_NS >= -CLOUD_WINDOW_NS:
            facts["aws_connect"] = {"pid": seen[1], "domain": seen[2], "ts": seen[0]}
    return facts


def _link(later: dict[str, Any], earlier: dict[str, Any]) -> tuple[str, bool] | None:
    """The strongest tie from ``later`` back to ``earlier`` (both step dicts), if any."""
    lf, ef = later.get("facts") or {}, earlier.get("facts") or {}
    dt = later["ts"] - earlier["ts"]
    epid = (ef.get("lineage") or [None])[0]
    lineage = lf.get("lineage") or []
    if ef.get("local") and ef.get("local") == lf.get("local") and (
            earlier["kind"] == "net.connect" or later["kind"] == "net.connect"):
        return "connection", True
    if ef.get("conn") and ef.get("conn") == lf.get("conn"):
        return "request/response", True
    if earlier["kind"] in ("llm.tool_call", "mcp.call") and 0 <= dt <= TOOL_WINDOW_NS:
        if later["kind"] == "mcp.call" and ef.get("tool") and ef.get("tool") == lf.get("tool"):
            return "tool dispatch", True
        if epid is not None and epid in lineage[1:]:
            return "tool call → spawned process", True
    # The process that reached the AWS endpoint just before made the call.
    if (later["kind"] == "cloud.api" and epid is not None
            and (lf.get("aws_connect") or {}).get("pid") == epid):
        return "cloud endpoint", True
    if epid is not None and epid in lineage and later["layer"] == earlier["layer"] == "kernel":
        return "lineage", True
    if earlier.get("signal") in ("AS-L7-INJECTION",) and later["kind"] in (
            "llm.tool_call", "mcp.call") and epid is not None and epid in lineage:
        return "next turn after injected content", True
    return None


def link_steps(steps: list[dict[str, Any]]) -> None:
    """Set ``link`` on each step (in event-time order): the nearest earlier step it is
    causally tied to, else a temporal link to the step before it."""
    for j, step in enumerate(steps):
        step.pop("link", None)
        if j == 0:
            continue
        for i in range(j - 1, -1, -1):
            tie = _link(step, steps[i])
            if tie is not None:
                step["link"] = {"to": i + 1, "type": tie[0], "causal": tie[1]}
                break
        else:
            step["link"] = {"to": j, "type": "same pod, within the incident window",
                            "causal": False}
