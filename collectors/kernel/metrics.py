"""The kernel collector's counters, out two ways: a Prometheus endpoint and a periodic
``collector.stats`` envelope on the raw topic (so the pipeline itself sees its losses).

Both read the same numbers at the moment they are asked (kernel per-CPU counters summed,
user-space counters, publisher counters), so there is one source of truth and nothing
to keep in step.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Protocol

from streams.events import Envelope

__all__ = ["StatsReporter", "merged_stats"]

# Counters that only go up (exported as Prometheus counters); everything else is a gauge.
_GAUGES = frozenset({"spooled", "pod_cgroups", "pending_attribution", "procs_tracked",
                     "clock_offset_ns", "clock_drift_ns", "clock_drift_max_ns"})


class _HasStats(Protocol):
    @property
    def stats(self) -> dict[str, int]: ...


def merged_stats(collector: _HasStats, publisher: Any | None) -> dict[str, int]:
    """Collector stats plus the publisher's as ``published``/``failed``/``dropped`` …

    The issue names five numbers: emitted, deduplicated, lost (kernel), published and
    failed (publisher: envelopes dropped because the spool was full or still unsent when
    it stopped; ``send_failures`` counts retried attempts, which lose nothing).
    """
    out = dict(collector.stats)
    if publisher is not None:
        p = publisher.stats.as_dict()
        out["published"] = p.get("published_events", 0)
        out["published_frames"] = p.get("published_frames", 0)
        out["submitted"] = p.get("submitted", 0)
        out["send_failures"] = p.get("send_failures", 0)
        out["dropped_spool_full"] = p.get("dropped_spool_full", 0)
        out["failed"] = out["dropped_spool_full"] + p.get("dropped_on_stop", 0)
        out["spooled"] = p.get("spooled", 0)
        for key, value in p.items():
            out.setdefault(f"publish_{key}", value)
    return out


class StatsReporter:
    """Builds ``collector.stats`` envelopes and serves ``/metrics``."""

    def __init__(self, collector: _HasStats, publisher: Any | None, *, node: str,
                 name: str = "kernel") -> None:
        self.collector = collector
        self.publisher = publisher
        self.node = node
        self.name = name
        self._server: Any = None

    def snapshot(self) -> dict[str, int]:
        return merged_stats(self.collector, self.publisher)

    def stats_envelope(self) -> Envelope:
        return Envelope(
            kind="collector.stats", ts=time.time_ns(), node=self.node, source="kernel",
            data={"collector": self.name, "counters": self.snapshot()},
        )

    # -- Prometheus ---------------------------------------------------------------------
    def registry(self) -> Any:
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_PromCollector(self))
        return registry

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Start the endpoint in a daemon thread; returns the bound port."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=addr, registry=self.registry())
        self._server = server
        return int(server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _PromCollector:
    """prometheus_client custom collector: reads the numbers at scrape time."""

    def __init__(self, reporter: StatsReporter) -> None:
        self.reporter = reporter

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        prefix = f"agentstory_{self.reporter.name}_collector"
        for key, value in sorted(self.reporter.snapshot().items()):
            if key in _GAUGES:
                metric: Any = GaugeMetricFamily(f"{prefix}_{key}", f"{key} (gauge)")
            else:
                metric = CounterMetricFamily(f"{prefix}_{key}", f"{key} (count)")
            metric.add_metric([], float(value))
            yield metric

    def describe(self) -> list[Any]:
        return []
