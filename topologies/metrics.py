"""The worker's Prometheus metrics: what went in, what was refused, what came out, and
how far behind it is.

The worker's agents call a handful of cheap methods (a counter bump, a dict write) on
the event loop; everything that needs a walk (agents by phase, state bytes, lag per
partition) is summed at scrape time from plain dicts the loop keeps current, so a scrape
from the HTTP thread never touches Faust or the table. Label values are bounded: dead
letter reasons are classes, not messages; agents are counted, never a label.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

__all__ = ["WorkerMetrics", "reason_class"]

PREFIX = "agentstory_worker"
# Seconds per message in route (decode + re-frame) and detect (engine + state write).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
RISK_EVERY_S = 30.0  # the risk class walks every dimension: refreshed at most this often


def reason_class(reason: str, field: str) -> str:
    """A dead letter's reason as a bounded label (the message itself is in the letter)."""
    if reason.startswith("not JSON"):
        return "not_json"
    if reason.startswith("frame must be"):
        return "not_a_frame"
    if reason.startswith("oversized") or "Oversized(" in reason:
        return "oversized"
    if reason.startswith(("route failed", "detect failed")):
        return "processing_error"
    if reason.startswith("unsupported schema version"):
        return "schema_version"
    if field == "message":
        return "bad_internal_message"
    return "invalid_field"


class WorkerMetrics:
    """One registry per worker app (tests run several apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_in = Counter(f"{PREFIX}_events_in", "valid envelopes read, per raw topic",
                                 ["topic"], registry=r)
        self.frames_in = Counter(f"{PREFIX}_frames_in", "raw messages (frames) read, per topic",
                                 ["topic"], registry=r)
        self.dead_letters = Counter(f"{PREFIX}_dead_letters",
                                    "inputs sent to the dead-letter topic, by stage and reason",
                                    ["stage", "reason"], registry=r)
        self.node_events = Counter(
            f"{PREFIX}_node_events", "valid envelopes read per node and source, collector "
            "heartbeats included (a node whose collector stops stops counting)",
            ["node", "source"], registry=r)
        self.stories = Counter(f"{PREFIX}_story_versions",
                               "story versions published, by severity", ["severity"], registry=r)
        self.latency = Histogram(f"{PREFIX}_processing_seconds",
                                 "wall-clock time to process one message, by agent (stage)",
                                 ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.rebalances = Counter(f"{PREFIX}_rebalances", "consumer-group rebalances completed",
                                  registry=r)
        self.rebalance_seconds = Histogram(
            f"{PREFIX}_rebalance_seconds",
            "from partitions revoked to streams resumed (tables restored)",
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300), registry=r)
        # agent → (phase, risk class, open incidents, story incidents, state bytes)
        self.agents: dict[str, tuple[str, str, int, int, int]] = {}
        self._risk: dict[str, tuple[float, str]] = {}
        self.lag: dict[tuple[str, int], int] = {}
        self.assigned: dict[str, int] = {}  # input topic → partitions assigned here
        self.rebalanced_at = 0.0  # wall-clock end of the last rebalance
        self.table_keys = 0  # keys in the state table after the last restore
        self.ready = False
        self.ready_reason = "starting"
        self._rebalance_started: float | None = None
        r.register(_Snapshot(self))

    # -- called by the worker's agents, on the event loop --------------------------------
    def frame(self, topic: str, events: Sequence[Any]) -> None:
        self.frames_in.labels(topic).inc()
        self.events_in.labels(topic).inc(len(events))
        for (node, source), n in Tally((e.node, e.source) for e in events).items():
            self.node_events.labels(node, source).inc(n)

    def dead_letter(self, stage: str, reason: str, field: str) -> None:
        self.dead_letters.labels(stage, reason_class(reason, field)).inc()

    def story(self, severity: str) -> None:
        self.stories.labels(severity.lower()).inc()

    def agent_state(self, state: Any, size_bytes: int) -> None:
        """An agent's state after a message: phase, risk class, incidents, encoded size."""
        now = time.monotonic()
        known = self._risk.get(state.agent)
        if known is None or now - known[0] > RISK_EVERY_S:
            known = (now, str(state.profile.risk().level))
            self._risk[state.agent] = known
        open_ = story = 0
        for pod in state.pods.values():
            for incident in pod.incidents:
                if not incident.closed:
                    open_ += 1
                    story += incident.opened
        self.agents[state.agent] = (state.profile.phase, known[1], open_, story, size_bytes)

    def forget_agents(self) -> None:
        """On rebalance: the agents of revoked partitions are another worker's now."""
        self.agents.clear()
        self._risk.clear()

    def timed(self, stage: str) -> _Timer:
        return _Timer(self.latency.labels(stage))

    # -- group membership ---------------------------------------------------------------
    def rebalance_started(self) -> None:
        if self._rebalance_started is None:
            self._rebalance_started = time.monotonic()
        self.ready, self.ready_reason = False, "rebalancing: restoring tables"

    def rebalance_done(self, assigned: dict[str, int] | None = None) -> None:
        if self._rebalance_started is not None:
            self.rebalance_seconds.observe(time.monotonic() - self._rebalance_started)
            self._rebalance_started = None
        self.rebalances.inc()
        if assigned is not None:
            self.assigned = assigned
        self.rebalanced_at = time.time()
        self.ready, self.ready_reason = True, "joined the group, tables restored"


class _Timer:
    __slots__ = ("child", "t0")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.t0 = 0.0

    def __enter__(self) -> _Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.child.observe(time.perf_counter() - self.t0)


class _Snapshot:
    """Gauges summed at scrape time from the dicts the event loop keeps (copied first)."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.m = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        agents = list(dict(self.m.agents).values())
        lag = dict(self.m.lag)
        by_phase = Tally(a[0] for a in agents)
        by_risk = Tally(a[1] for a in agents)
        g = GaugeMetricFamily(f"{PREFIX}_agents", "agents held by this worker, by phase",
                              labels=["phase"])
        for phase in sorted({"learning", "audit", "enforce-ready", *by_phase}):
            g.add_metric([phase], by_phase.get(phase, 0))
        yield g
        g = GaugeMetricFamily(f"{PREFIX}_agents_by_risk", "agents held, by risk class",
                              labels=["risk_class"])
        for level in sorted({"low", "medium", "high", *by_risk}):
            g.add_metric([level], by_risk.get(level, 0))
        yield g
        g = GaugeMetricFamily(f"{PREFIX}_open_incidents",
                              "incidents not closed, of the agents held (story: opened)",
                              labels=["state"])
        stories = sum(a[3] for a in agents)
        g.add_metric(["story"], stories)
        g.add_metric(["accumulating"], sum(a[2] for a in agents) - stories)
        yield g
        yield GaugeMetricFamily(f"{PREFIX}_state_bytes",
                                "encoded size of the agent states held (the table values)",
                                value=sum(a[4] for a in agents))
        g = GaugeMetricFamily(f"{PREFIX}_consumer_lag",
                              "messages behind the partition's high watermark, per assigned "
                              "partition", labels=["topic", "partition"])
        for (topic, partition), n in sorted(lag.items()):
            g.add_metric([topic, str(partition)], n)
        yield g
        g = GaugeMetricFamily(f"{PREFIX}_assigned_partitions",
                              "input partitions this worker holds, per topic", labels=["topic"])
        for topic, n in sorted(dict(self.m.assigned).items()):
            g.add_metric([topic], n)
        yield g
        yield GaugeMetricFamily(f"{PREFIX}_table_keys",
                                "agents in the state table after the last restore (standby "
                                "copies of other workers' partitions included)",
                                value=self.m.table_keys)
        yield GaugeMetricFamily(f"{PREFIX}_last_rebalance_timestamp_seconds",
                                "when the last rebalance ended (Unix time)",
                                value=self.m.rebalanced_at)
        yield GaugeMetricFamily(f"{PREFIX}_ready",
                                "1 when joined to the group with its tables restored",
                                value=1.0 if self.m.ready else 0.0)
