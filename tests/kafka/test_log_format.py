"""``--log-format json``: every line a long-running command writes is one JSON object
(the worker under Faust's own logging, the broker, a collector); tracebacks stay inside
their record."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from tests.kafka.workers import REPO, own_broker, wait_ready, worker
from topologies.broker import free_port
from topologies.logs import JsonFormatter

pytestmark = pytest.mark.kafka


def json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    docs = []
    for line in lines:
        doc = orjson.loads(line)  # raises on any line that is not one JSON object
        assert {"ts", "level", "logger", "message", "pid"} <= set(doc), doc
        docs.append(doc)
    return docs


def test_a_traceback_stays_inside_its_record() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger(f"test.json.{uuid.uuid4().hex}")
    log.addHandler(handler)
    log.propagate = False
    try:
        raise ValueError("bad\nframe")
    except ValueError:
        log.exception("route failed on %s", "raw[1]@7")
    [doc] = json_lines(out.getvalue())
    assert doc["message"] == "route failed on raw[1]@7" and doc["level"] == "error"
    assert "ValueError: bad\nframe" in doc["exc"] and doc["ts"].endswith("Z")


def test_worker_broker_and_collector_write_json_lines(tmp_path: Path) -> None:
    app_id = f"agentstory-logs-{uuid.uuid4().hex[:8]}"
    port = free_port()
    with own_broker(tmp_path, app_id) as bootstrap:
        with worker(bootstrap, tmp_path / "worker.log", app_id, "--metrics-port", str(port),
                    "--log-format", "json") as proc:
            wait_ready(port, proc)
        docs = json_lines((tmp_path / "worker.log").read_text())
        assert any("Joined group" in d["message"] for d in docs)  # Faust's own lines
        assert any(d["logger"] == "agentstory.worker" for d in docs)

        trail = tmp_path / "trail"
        trail.mkdir()
        (trail / "bad.json").write_text('{"Records": [{"eventVersion": ')  # a damaged file
        collector = subprocess.run(
            [sys.executable, "-m", "topologies.cli", "collect", "cloudtrail", "--dir",
             str(trail), "--once", "--bootstrap-servers", bootstrap, "--log-format", "json",
             "--pods-file", os.devnull],
            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
            timeout=120)
        assert collector.returncode == 0, collector.stderr[-2000:]
        assert collector.stderr.strip() == ""
        json_lines(collector.stdout)

    broker_port = free_port()
    broker = subprocess.Popen(
        [sys.executable, "-m", "topologies.cli", "broker", "--port", str(broker_port),
         "--log-format", "json"], env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first = broker.stdout.readline() if broker.stdout else ""
    finally:
        os.killpg(broker.pid, signal.SIGTERM)
        out, err = broker.communicate(timeout=30)
    docs = json_lines(first + out)
    assert "tansu broker ready" in docs[0]["message"] and err.strip() == ""
