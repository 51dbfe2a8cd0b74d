"""``agentstory demo``: the seed's attack, from real agents to one cross-layer story.

It starts the embedded broker and a Faust worker, then plays the seed's scenario
(:mod:`topologies.scenarios.demo`) through the recorder: a support bot on the official
``openai`` SDK (against a local TLS endpoint speaking OpenAI's wire format), its CRM as a
FastMCP server, a research agent beside it, both as real processes in kubelet-shaped pod
cgroups with the kernel (bcc) and L7 (uprobes on libssl) collectors loaded, and AWS calls
turned into CloudTrail records attributed through IRSA. The bot learns for 1.6 hours of
event time (idle gaps between tickets are closed, nothing inside one is sped up), then an
injected ticket leads to a PII query, an upload to a new domain and a secret read. What
the collectors published streams into the broker (CloudTrail five minutes late, as S3
delivers it), the worker joins it, and the story is read back from the stories topic.
Everything it started is stopped, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["ScenarioResult", "missing_requirements", "run_demo", "run_scenario",
           "worker_process"]


QUIET_AFTER_S = 45 * 60.0  # past the quiet period and CloudTrail's idleness (40 min)


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


async def _await_stories(bootstrap: str, bad_uid: str, timeout_s: float,
                         settle_s: float) -> list[dict[str, Any]]:
    """Latest version of every story, read until the bad pod's story closed (its quiet
    period passed on every source's watermark) and nothing else came for ``settle_s``."""
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
                    if seen_at is not None:  # a late step reopened a story: wait again
                        seen_at = time.monotonic()
            if seen_at is None and any(_pod_uid(d) == bad_uid and d["activity_id"] == 3
                                       for d in latest.values()):
                seen_at = time.monotonic()
    finally:
        await consumer.stop()
    return list(latest.values())


async def _drained(bootstrap: str, ends: dict[Any, int], timeout_s: float) -> None:
    """Wait until the worker's group has committed every raw partition to ``ends``: the
    heartbeats that make event time pass come after what they follow, as on a live node
    (a worker that reads a heartbeat before a flood's last frames takes them as late)."""
    from aiokafka import AIOKafkaConsumer

    from streams.topics import WORKER_APP_ID

    # a member of no group generation: it only reads the group's committed offsets
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=WORKER_APP_ID,
                              enable_auto_commit=False)
    await reader.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = [await reader.committed(tp) for tp in ends]
            if all(c is not None and c >= end for c, end in zip(done, ends.values(),
                                                               strict=True)):
                return
            await asyncio.sleep(0.5)
    finally:
        await reader.stop()


async def _heartbeats(bootstrap: str, recording: Path, after_s: float) -> None:
    """What running collectors send while nothing happens: one ``collector.stats`` per
    node and fast source, ``after_s`` of event time after the recording's last event, so
    the watermarks pass the quiet period (CloudTrail, with nothing more to deliver, goes
    idle) and the story closes, as it would on a live cluster."""
    from aiokafka import AIOKafkaProducer

    from streams.events import Envelope, encode_frame
    from streams.topics import raw_topic_for
    from topologies.export import read_lines

    last, nodes = 0, set()
    for line in read_lines([recording]):
        for doc in line.get("frame") or []:
            last = max(last, int(doc["ts"]))
            nodes.add(str(doc["node"]))
    at = last + int(after_s * 1e9)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for source in ("kernel", "l7"):
            for node in sorted(nodes):
                beat = Envelope("collector.stats", at, node, source)
                await producer.send(raw_topic_for(source).name, encode_frame([beat]),
                                    key=beat.key.encode())
        await producer.flush()
    finally:
        await producer.stop()


def _pod_uid(doc: dict[str, Any]) -> str:
    return str(doc["unmapped"]["agentstory"]["pod"]["uid"])


@dataclass
class ScenarioResult:
    stories: list[dict[str, Any]]  # latest version of every story on the topic
    pods: dict[str, dict[str, str]]  # scenario pod key → {uid, namespace, name, agent}
    meta: dict[str, Any]  # the recording's: wall time, event span, counts, collector stats

    def stories_of(self, key: str) -> list[dict[str, Any]]:
        return [d for d in self.stories if _pod_uid(d) == self.pods[key]["uid"]]


async def run_scenario(bootstrap: str, tmp: Path, *, learning_s: float, min_events: int,
                       timeout_s: float, enforce: Sequence[Any] = ()) -> ScenarioResult:
    """Worker up, the scenario recorded through the collectors and streamed in, the
    stories read back until the attacked pod's story closed; all stopped."""
    from streams.admin import ensure_topics
    from streams.topics import CATALOGUE
    from topologies.export import import_jsonl
    from topologies.record import record
    from topologies.scenarios.demo import demo_scenario
    from topologies.worker import worker_topics

    await ensure_topics(bootstrap, [*CATALOGUE, *worker_topics()])
    scenario = demo_scenario()
    with worker_process(bootstrap, tmp / "worker.log", learning_s=learning_s,
                        min_events=min_events):
        _say("worker started")
        _say("playing the scenario: a support bot and a research agent as real processes "
             "in pod cgroups, kernel and L7 collectors loaded (about 30 s)")
        out = tmp / "recording"
        if enforce:
            _say("enforcing: " + ", ".join(f"{p.agent} ({p.mode})" for p in enforce))
        meta = await asyncio.to_thread(record, scenario, out, progress=sys.stdout.isatty(),
                                       enforce=enforce)
        _say(f"{meta['event_span_s'] / 3600:.1f} h of event time in {meta['wall_seconds']} s:"
             f" {sum(meta['events'].values())} events from the collectors, "
             f"{meta['cloudtrail_records']} CloudTrail records")
        ends: dict[Any, int] = {}
        sent = await import_jsonl(bootstrap, [out / "events.jsonl.gz"], ends=ends)
        await _drained(bootstrap, ends, timeout_s)
        await _heartbeats(bootstrap, out / "events.jsonl.gz", after_s=QUIET_AFTER_S)
        _say(f"{sent} raw frames streamed to the broker, then the collectors' heartbeats "
             f"{QUIET_AFTER_S / 60:.0f} min of event time later; waiting for the stories")
        keys = {pod.key: {"uid": str(pod.uid), "namespace": pod.namespace, "name": pod.name}
                for pod in scenario.pods}
        stories = await _await_stories(bootstrap, keys["support"]["uid"], timeout_s,
                                       settle_s=3.0)
    return ScenarioResult(stories, keys, meta)


async def _demo(args: argparse.Namespace, bootstrap: str, tmp: Path) -> int:
    from topologies.tail import render_story

    result = await run_scenario(bootstrap, tmp, learning_s=args.learning_seconds,
                                min_events=args.min_events, timeout_s=args.timeout,
                                enforce=getattr(args, "enforce_policies", []))
    for doc in result.stories:
        print()
        print(render_story(doc))
    bad, good = result.pods["support"], result.pods["research"]
    ours, others = result.stories_of("support"), result.stories_of("research")
    layers = sorted({s["layer"] for d in ours for s in d["unmapped"]["agentstory"]["chain"]})
    print()
    refused = [s for d in ours for s in d["unmapped"]["agentstory"]["chain"]
               if s.get("kind") in ("enforce.blocked", "enforce.would_block")]
    for step in refused:
        _say(f"enforcement step in the story: {step.get('why')}")
    if len(ours) == 1 and not others and layers == ["cloud", "kernel", "l7"]:
        _say(f"OK: 1 story across {', '.join(layers)} for {bad['namespace']}/{bad['name']}, "
             f"none for {good['namespace']}/{good['name']}")
        return 0
    _say(f"FAILED: {len(ours)} stories for the attacked pod (want 1, with kernel, l7 and "
         f"cloud steps: {layers}), {len(others)} for the research agent (want 0); worker "
         f"log: {tmp / 'worker.log'}")
    return 1


def run_demo(args: argparse.Namespace) -> int:
    problems = missing_requirements()
    if problems:
        print("agentstory demo cannot run here:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    from collectors.enforce.policy import PolicyError, load_policies

    try:
        args.enforce_policies = load_policies(getattr(args, "enforce", None) or [])
    except PolicyError as exc:
        print(f"agentstory demo: {exc}", file=sys.stderr)
        return 2
    from topologies.broker import EmbeddedBroker, free_port

    keep = Path(tempfile.mkdtemp(prefix="agentstory-demo-"))
    # The output is the story and a short summary; the libraries' logs go to a file.
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    log_file = logging.FileHandler(keep / "demo.log")
    log_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(log_file)
    _say(f"logs: {keep}/ (demo.log, broker.log, worker.log)")
    if args.external_broker:
        return asyncio.run(_demo(args, args.bootstrap_servers, keep))
    _say("starting the embedded Kafka-protocol broker (tansu)")
    with EmbeddedBroker(port=free_port(), log_path=keep / "broker.log") as broker:
        _say(f"broker ready on {broker.bootstrap_servers}")
        return asyncio.run(_demo(args, broker.bootstrap_servers, keep))
