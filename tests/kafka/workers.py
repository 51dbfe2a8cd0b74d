"""Helpers for the operations tests: a broker of the test's own (exact counts), real
``agentstory worker`` processes with extra flags, HTTP scrapes of their endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from streams.admin import ensure_topics
from streams.topics import CATALOGUE
from topologies.broker import EmbeddedBroker, free_port
from topologies.worker import worker_topics

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def own_broker(log_dir: Path, app_id: str, *, partitions: int | None = None) -> Iterator[str]:
    """A tansu broker for one test, with the catalogue (and ``app_id``'s changelog)."""
    with EmbeddedBroker(port=free_port(), log_path=log_dir / "tansu.log") as broker:
        specs = [*CATALOGUE, *worker_topics(app_id)]
        if partitions is not None:
            specs = [s.with_partitions(partitions) for s in specs]
        asyncio.run(ensure_topics(broker.bootstrap_servers, specs))
        yield broker.bootstrap_servers


@contextlib.contextmanager
def worker(bootstrap: str, log: Path, app_id: str, *extra: str, learning_s: float = 4.0,
           min_events: int = 4, env: dict[str, str] | None = None,
           ) -> Iterator[subprocess.Popen[bytes]]:
    argv = [sys.executable, "-m", "topologies.cli", "worker", "--bootstrap-servers", bootstrap,
            "--learning-seconds", str(learning_s), "--min-events", str(min_events),
            "--app-id", app_id, "--log-level", "info", *extra]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                cwd=log.parent, start_new_session=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 90.0) -> list[int]:
    """Poll /healthz until 200; returns every status seen (connection refused: 0)."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the worker exited"
        try:
            code, _ = get(f"http://127.0.0.1:{port}/healthz")
        except OSError:
            code = 0
        seen.append(code)
        if code == 200:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"not ready within {timeout_s}s: {seen[-5:]}")


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics`` parsed by Prometheus' own parser: sample name → labels → value."""
    code, body = get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out
