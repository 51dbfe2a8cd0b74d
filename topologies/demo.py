"""``agentstory demo``: the whole path on one machine, from a kernel exec to a story.

It starts the embedded broker, the kernel collector (bcc) and a Faust worker, then plays
a scenario: two agent pods, standing as kubelet-shaped cgroups on this machine, run
their usual tools while their baselines learn; then one of them spawns a shell. The
story for it is read back from the stories topic and printed. Everything it started is
stopped, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

__all__ = ["ScenarioResult", "missing_requirements", "run_demo", "run_scenario",
           "worker_process"]

log = logging.getLogger("agentstory.demo")

# The interpreter by its real path: a version-manager shim (pyenv) would add a bash and a
# dozen helper programs to every agent's baseline.
PYTHON = shutil.which("python3", path="/usr/bin:/bin") or os.path.realpath(sys.executable)
# What each pod does while learning, and again after: its normal toolset.
ROUTINE = [[PYTHON, "-c", "import json; json.dumps({})"], ["ls", "/"], ["cat", "/etc/hostname"],
           ["date", "+%s"]]
# What the compromised agent does once it has been learned: a shell from its tool runtime.
ATTACK = [PYTHON, "-c",
          "import subprocess; subprocess.run(['/bin/sh', '-c', 'id; uname -a'], check=False)"]


def missing_requirements() -> list[str]:
    """What this machine lacks for the demo, each said so a person can fix it."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root: loading eBPF programs and making cgroups needs root "
                        "(run with sudo)")
    if not Path("/sys/kernel/btf/vmlinux").exists():
        problems.append("no BTF: /sys/kernel/btf/vmlinux is missing (kernel without "
                        "CONFIG_DEBUG_INFO_BTF)")
    try:
        import bcc  # noqa: F401
    except ImportError:
        problems.append("no bcc: install Debian's python3-bpfcc (./taskw setup does it)")
    build = Path(f"/lib/modules/{platform.release()}/build")
    if not build.exists():
        problems.append(f"no kernel headers: {build} is missing (./taskw setup links it)")
    try:
        from collectors.cgroups import find_cgroup2_mount

        find_cgroup2_mount()
    except FileNotFoundError as exc:
        problems.append(str(exc))
    return problems


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def _pods(tmp: Path) -> tuple[Any, Any, Path]:
    from collectors.kernel.sandbox import FakePod

    good = FakePod("research-agent-5c7d9-x2kq9", "research")
    bad = FakePod("support-bot-7d9f8-abcde", "support")
    manifests = []
    for pod, rs, pod_hash, sa in ((good, "research-agent-5c7d9", "5c7d9", "research-agent"),
                                  (bad, "support-bot-7d9f8", "7d9f8", "support-bot")):
        manifests.append(pod.manifest(owner=("ReplicaSet", rs), service_account=sa,
                                      node=platform.node(), container="agent",
                                      labels={"pod-template-hash": pod_hash}))
    path = tmp / "pods.yaml"
    path.write_text(yaml.safe_dump_all(manifests))
    return good, bad, path


@contextlib.contextmanager
def worker_process(bootstrap: str, log_path: Path, *, learning_s: float, min_events: int,
                   app_id: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``agentstory worker`` process, logging to ``log_path``; stopped on exit."""
    argv = [sys.executable, "-m", "topologies.cli", "worker", "--bootstrap-servers", bootstrap,
            "--learning-seconds", str(learning_s), "--min-events", str(min_events),
            "--log-level", "info", *(["--app-id", app_id] if app_id else [])]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class _Collector:
    """The kernel collector and its publisher, run in this process."""

    def __init__(self, bootstrap: str, pods_file: Path) -> None:
        from collectors.cgroups import CgroupResolver
        from collectors.kernel.loader import KernelCollector
        from collectors.pods import Attributor, FilePodSource, PodIndex
        from collectors.publish import FramePublisher

        self.index = PodIndex()
        self.source = FilePodSource(pods_file)
        self.source.load(self.index)
        self.publisher = FramePublisher(bootstrap, client_id="agentstory-demo")
        self.collector = KernelCollector(platform.node(), Attributor(self.index, CgroupResolver()),
                                         self.publisher.submit)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="kernel-poll", daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.collector.poll(100)

    async def start(self) -> None:
        self.collector.start()
        await self.publisher.start()
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.collector.flush()  # dedup repeats, profiles, events waiting for metadata
        await self.publisher.stop()
        self.collector.close()


async def _play(good: Any, bad: Any, learning_s: float) -> None:
    """Routine during learning (spread past the learning time), then the attack."""
    rounds = 3
    for _ in range(rounds):
        for pod in (good, bad):
            for argv in ROUTINE:
                await asyncio.to_thread(pod.run, argv, stdout=subprocess.DEVNULL)
        await asyncio.sleep(learning_s / (rounds - 1) + 0.2)
    _say("baselines learned; the support bot's tool runtime now spawns a shell")
    for argv in ROUTINE:
        await asyncio.to_thread(good.run, argv, stdout=subprocess.DEVNULL)
    await asyncio.to_thread(bad.run, ATTACK, stdout=subprocess.DEVNULL)


async def _await_stories(bootstrap: str, bad_uid: str, timeout_s: float,
                         settle_s: float) -> list[dict[str, Any]]:
    """Latest version of every story, read until the bad pod's shows up and settles."""
    from aiokafka import AIOKafkaConsumer

    from streams.topics import STORIES

    consumer = AIOKafkaConsumer(STORIES.name, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    latest: dict[bytes, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    seen_at: float | None = None
    try:
        while time.monotonic() < deadline:
            if seen_at is not None and time.monotonic() - seen_at > settle_s:
                break
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    latest[message.key] = orjson.loads(message.value)
            if seen_at is None and any(_pod_uid(d) == bad_uid for d in latest.values()):
                seen_at = time.monotonic()
    finally:
        await consumer.stop()
    return list(latest.values())


def _pod_uid(doc: dict[str, Any]) -> str:
    return str(doc["unmapped"]["agentstory"]["pod"]["uid"])


@dataclass
class ScenarioResult:
    stories: list[dict[str, Any]]  # latest version of every story on the topic
    benign: Any
    compromised: Any
    collector_stats: dict[str, int]
    publisher_stats: dict[str, int]

    def stories_of(self, pod: Any) -> list[dict[str, Any]]:
        return [d for d in self.stories if _pod_uid(d) == pod.uid]


async def run_scenario(bootstrap: str, tmp: Path, *, learning_s: float, min_events: int,
                       timeout_s: float) -> ScenarioResult:
    """Collector and worker up, the two pods play, the stories read back; all stopped."""
    from streams.admin import ensure_topics
    from streams.topics import CATALOGUE
    from topologies.worker import worker_topics

    await ensure_topics(bootstrap, [*CATALOGUE, *worker_topics()])
    good, bad, pods_file = _pods(tmp)
    collector = _Collector(bootstrap, pods_file)
    _say("loading the kernel collector (bcc: sched_process_exec, cgroup_mkdir …)")
    await collector.start()
    try:
        with worker_process(bootstrap, tmp / "worker.log", learning_s=learning_s,
                            min_events=min_events):
            _say(f"worker started (log: {tmp / 'worker.log'}); pods: {good.namespace}/"
                 f"{good.name} and {bad.namespace}/{bad.name}")
            with good, bad:
                _say(f"agents run their routine while learning ({learning_s:.0f}s "
                     "of event time)")
                await _play(good, bad, learning_s)
                await asyncio.sleep(1.0)
                await collector.publisher.flush()
                _say("waiting for the story on agentstory.stories.v1")
                stories = await _await_stories(bootstrap, bad.uid, timeout_s, settle_s=3.0)
    finally:
        await collector.stop()
    return ScenarioResult(stories, good, bad, collector.collector.stats,
                          collector.publisher.stats.as_dict())


async def _demo(args: argparse.Namespace, bootstrap: str, tmp: Path) -> int:
    from topologies.tail import render_story

    result = await run_scenario(bootstrap, tmp, learning_s=args.learning_seconds,
                                min_events=args.min_events, timeout_s=args.timeout)
    print(f"    collector: {result.collector_stats}")
    print(f"    publisher: {result.publisher_stats}")
    for doc in result.stories:
        print()
        print(render_story(doc))
    good, bad = result.benign, result.compromised
    ours, others = result.stories_of(bad), result.stories_of(good)
    print()
    if len(ours) == 1 and not others:
        _say(f"OK: 1 story for {bad.namespace}/{bad.name}, none for "
             f"{good.namespace}/{good.name}")
        return 0
    _say(f"FAILED: {len(ours)} stories for the compromised pod (want 1), {len(others)} for "
         f"the benign one (want 0); worker log: {tmp / 'worker.log'}")
    return 1


def run_demo(args: argparse.Namespace) -> int:
    problems = missing_requirements()
    if problems:
        print("agentstory demo cannot run here:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    from topologies.broker import EmbeddedBroker, free_port

    keep = Path(tempfile.mkdtemp(prefix="agentstory-demo-"))
    if args.external_broker:
        return asyncio.run(_demo(args, args.bootstrap_servers, keep))
    _say("starting the embedded Kafka-protocol broker (tansu)")
    with EmbeddedBroker(port=free_port(), log_path=keep / "broker.log") as broker:
        _say(f"broker ready on {broker.bootstrap_servers}")
        return asyncio.run(_demo(args, broker.bootstrap_servers, keep))
