"""``agentstory collect kernel`` as a process against the embedded broker: pod events
reach the raw topic attributed, counters are on /metrics and in collector.stats, and
SIGTERM flushes (including the repeat counts of open dedup windows) and exits 0."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from collectors.kernel.sandbox import FakePod
from streams.events import decode_frame
from streams.topics import RAW_KERNEL
from tests.conftest import collect
from topologies.broker import free_port

pytestmark = [pytest.mark.root, pytest.mark.kafka]

REPO = Path(__file__).resolve().parents[2]


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        return resp.read().decode()


def test_collect_kernel_end_to_end(kernel_ok, kafka_bootstrap: str, tmp_path: Path) -> None:
    pod = FakePod("cli-bot", "cli").create()
    try:
        pods_file = tmp_path / "pods.yaml"
        pods_file.write_text(yaml.safe_dump(pod.manifest()))
        metrics_port = free_port()
        log = (tmp_path / "collector.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "topologies.cli", "collect", "kernel",
             "--bootstrap-servers", kafka_bootstrap, "--node", "cli-node",
             "--pods-file", str(pods_file), "--metrics-port", str(metrics_port),
             "--stats-interval", "1", "--dedup-window-ms", "60000"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    _scrape(metrics_port)
                    break
                except OSError:
                    assert proc.poll() is None, (tmp_path / "collector.log").read_text()
                    assert time.monotonic() < deadline, "collector never served /metrics"
                    time.sleep(0.2)
            marker = tmp_path / "marker.txt"
            marker.write_text("x")
            code = f"for _ in range(40):\n    open({str(marker)!r}).close()"
            pod.run(["/bin/echo", "cli"], stdout=subprocess.DEVNULL)
            pod.run([sys.executable, "-c", code])
            time.sleep(1.0)
            metrics = _scrape(metrics_port)
            assert "agentstory_kernel_collector_lost_total" in metrics
            assert "agentstory_kernel_collector_emitted_total" in metrics
            # the 60 s window is still open: only SIGTERM's flush reports the repeats
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, (tmp_path / "collector.log").read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()

        def events(messages: list) -> list:
            return [e for m in messages for e in decode_frame(m.value).events
                    if e.node == "cli-node"]

        def done(messages: list) -> bool:
            evs = events(messages)
            opened = sum(e.data.get("count", 0) for e in evs if e.kind == "file.open"
                         and e.data.get("path") == str(marker))
            return opened >= 40 and any(e.kind == "collector.stats" for e in evs)

        messages = asyncio.run(collect(kafka_bootstrap, [RAW_KERNEL.name], done,
                                       timeout_s=30))
        evs = events(messages)
        (echo,) = [e for e in evs if e.kind == "process.exec" and e.proc.exe == "/bin/echo"]
        assert echo.pod is not None and echo.pod.name == "cli-bot"
        assert echo.data["argv"] == ["/bin/echo", "cli"]
        keys = {m.key for m in messages
                if any(e.kind == "process.exec" and e.node == "cli-node"
                       for e in decode_frame(m.value).events)}
        assert pod.uid.encode() in keys
        opens = [e for e in evs if e.kind == "file.open" and e.data["path"] == str(marker)]
        assert sum(e.data["count"] for e in opens) == 40
        stats = [e for e in evs if e.kind == "collector.stats"]
        assert stats and "lost" in stats[-1].data["counters"]
        assert stats[-1].data["counters"]["published"] >= 1
    finally:
        pod.remove()
