"""The worker's HTTP endpoint: ``/metrics`` (Prometheus), ``/healthz`` (ready: joined
its consumer group and restored its tables) and ``/livez`` (the process serves).

Faust's own web server stays off (it would pull aiohttp routes and a second port); this
is a stdlib server on a daemon thread that only reads what the event loop publishes in
:class:`~topologies.metrics.WorkerMetrics`.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from topologies.metrics import WorkerMetrics

__all__ = ["HealthServer", "watch_app"]


class HealthServer:
    def __init__(self, metrics: WorkerMetrics, port: int, addr: str = "127.0.0.1") -> None:
        self.metrics = metrics
        handler = type("_Handler", (_Handler,), {"metrics": metrics})
        self.server = ThreadingHTTPServer((addr, port), handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="health",
                                        daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    metrics: WorkerMetrics

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/readyz"):
            ready = self.metrics.ready
            body = orjson.dumps({"ready": ready, "reason": self.metrics.ready_reason})
            self._send(200 if ready else 503, body, "application/json")
        elif path == "/livez":
            self._send(200, b'{"live": true}', "application/json")
        else:
            self._send(404, b"not found: /metrics, /healthz, /livez\n", "text/plain")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not log lines
        return


def watch_app(app: Any, metrics: WorkerMetrics, *, table: Any = None,
              lag_interval_s: float = 5.0) -> None:
    """Wire Faust's rebalance signals and a lag timer into ``metrics``.

    Ready means: the consumer joined the group (a generation was assigned) and Faust's
    recovery finished restoring the tables from their changelogs, which is also when it
    resumes the streams. A rebalance makes it not ready until the new assignment is
    restored.
    """

    @app.on_partitions_revoked.connect
    async def _revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
        metrics.rebalance_started()
        metrics.forget_agents()

    @app.on_partitions_assigned.connect
    async def _assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
        metrics.rebalance_started()

    @app.on_rebalance_complete.connect
    async def _complete(app: Any, **kwargs: Any) -> None:
        # Sent by Faust's recovery just before it resumes the streams; the tables of the
        # new assignment are restored by then.
        assigned: dict[str, int] = {}
        for tp in app.consumer.assignment():
            if not tp.topic.endswith("-changelog"):
                assigned[tp.topic] = assigned.get(tp.topic, 0) + 1
        if table is not None:
            metrics.table_keys = len(table)
        metrics.rebalance_done(assigned)

    @app.timer(interval=lag_interval_s)
    async def _lag() -> None:
        metrics.lag = consumer_lag(app)


def consumer_lag(app: Any) -> dict[tuple[str, int], int]:
    """Per assigned input partition: high watermark less the next offset to read."""
    consumer = app.consumer
    out: dict[tuple[str, int], int] = {}
    for tp in consumer.assignment():
        if tp.topic.endswith("-changelog"):
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # not fetched yet: unknown, not zero
            continue
        if highwater is None:
            continue
        read = consumer._read_offset.get(tp)  # last offset handed to a stream
        position = (read + 1) if read is not None else _committed(consumer, tp)
        out[(tp.topic, tp.partition)] = max(0, int(highwater) - position)
    return out


def _committed(consumer: Any, tp: Any) -> int:
    committed = getattr(consumer, "_committed_offset", {}).get(tp)
    return int(committed) + 1 if committed is not None else 0
