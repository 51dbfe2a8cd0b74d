"""``agentstory collect kernel``: the kernel collector as a node process (DaemonSet).

The top-level CLI owns ``--bootstrap-servers``, ``--node``, ``--pods-file`` and
``--log-level``; :func:`configure` adds the kernel collector's flags and :func:`run`
wires pod source → attributor → collector → framed publisher. The ring buffer is
drained in a thread (bcc's poll blocks); the publisher runs on the asyncio loop of the
main thread. SIGTERM/SIGINT stop polling, flush the publisher and return 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import threading
import time
from typing import Any

__all__ = ["configure", "run"]

log = logging.getLogger("agentstory.kernel")


# Measured cost of adding syscall.profile to the default concerns (see --concerns).
PROFILE_COST = ("with it / without it, medians of 9 repetitions: syscall-dense agent mix "
                "+8.3%% / +6.2%%, open/close storm in a pod +52%% / +38%%, the same storm "
                "by a host process +36%% / +23%%; on the realistic agent mix both are "
                "within the noise (+1.3%% / +3.2%%, ±5%% between repetitions)")


def _concerns(text: str) -> tuple[str, ...]:
    from collectors.kernel.loader import ALL_CONCERNS

    names = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in names if c not in ALL_CONCERNS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown concern(s) {unknown}; known: {','.join(ALL_CONCERNS)}")
    return names


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the kernel collector's own flags to the ``collect kernel`` subcommand."""
    from collectors.kernel.loader import ALL_CONCERNS, DEFAULT_CONCERNS

    group = parser.add_argument_group("kernel collector")
    group.add_argument("--concerns", type=_concerns, default=DEFAULT_CONCERNS,
                       metavar="LIST",
                       help=f"comma-separated event concerns out of {','.join(ALL_CONCERNS)} "
                            f"(default {','.join(DEFAULT_CONCERNS)}). 'syscalls' "
                            f"(syscall.profile, the per-container syscall counts a seccomp "
                            f"profile is made from) is off by default: it runs a program on "
                            f"every syscall of every process on the node. Measured here "
                            f"(tests/bench/bench_kernel_overhead.py, CPU time of the "
                            f"workload, 2 cores): {PROFILE_COST}")
    group.add_argument("--include-host", action="store_true",
                       help="also report host (non-pod) processes; they are dropped in "
                            "the kernel by default")
    group.add_argument("--ringbuf-pages", type=int, default=1024,
                       help="ring buffer size in pages, a power of two (default 1024)")
    group.add_argument("--poll-ms", type=int, default=100,
                       help="ring buffer poll timeout in ms (default 100)")
    group.add_argument("--stats-interval", type=float, default=30.0, metavar="SECONDS",
                       help="how often a collector.stats event is published (0: never)")
    group.add_argument("--metrics-port", type=int, default=0,
                       help="serve Prometheus metrics on this port (0: off)")
    group.add_argument("--metrics-addr", default="127.0.0.1",
                       help="address of the Prometheus endpoint (default 127.0.0.1)")
    group.add_argument("--cgroup-root", default=None,
                       help="cgroup v2 mount (default: found in /proc/self/mountinfo)")
    group.add_argument("--spool-limit", type=int, default=200_000,
                       help="envelopes held while the broker is away before counted drops")
    group.add_argument("--spool-dir", default=None, metavar="DIR",
                       help="keep what is still unpublished at shutdown here and send it "
                            "at the next start (default: counted as dropped)")
    group.add_argument("--sensitive-paths", default=None, metavar="YAML",
                       help="sensitive-path rules for file.open (default: the packaged "
                            "collectors/kernel/sensitive_paths.yaml)")
    group.add_argument("--dedup-window-ms", type=float, default=1000.0,
                       help="identical opens/connects per container within this window "
                            "are emitted once with a count (default 1000)")
    group.add_argument("--profile-interval", type=float, default=30.0, metavar="SECONDS",
                       help="how often per-container syscall profiles are flushed")
    group.add_argument("--metadata-wait-ms", type=float, default=2000.0,
                       help="how long an event of a pod without metadata waits for it "
                            "before going out with the pod uid only (default 2000)")
    group.add_argument("--tuning", action="append", default=[], metavar="KEY=VALUE",
                       help="further collector tuning (dns_port=53, max_dedup=16384, "
                            "dedup=0 …), repeatable")


def _tuning(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--tuning {item!r}: expected KEY=VALUE")
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    from pathlib import Path

    from collectors.cgroups import CgroupResolver
    from collectors.kernel.loader import CollectorError, KernelCollector
    from collectors.kernel.metrics import StatsReporter
    from collectors.pods import Attributor, PodIndex, make_pod_source
    from collectors.publish import FramePublisher

    index = PodIndex()
    source = make_pod_source(getattr(args, "pods_file", None), args.node)
    try:
        source.load(index)
    except Exception as exc:  # the watch retries; an empty index only delays metadata
        log.warning("initial pod list failed: %s", exc)
    pod_thread = threading.Thread(target=_run_source, args=(source, index),
                                  name="pod-source", daemon=True)
    pod_thread.start()
    root = Path(args.cgroup_root) if getattr(args, "cgroup_root", None) else None
    attributor = Attributor(index, CgroupResolver(root))
    publisher = FramePublisher(args.bootstrap_servers, spool_limit=args.spool_limit,
                               security=getattr(args, "kafka_security", None),
                               spool_dir=args.spool_dir)
    tuning = {
        "dedup_window_ms": args.dedup_window_ms, "profile_interval_s": args.profile_interval,
        "metadata_wait_ms": args.metadata_wait_ms, **_tuning(args.tuning),
    }
    if args.sensitive_paths:
        tuning["sensitive_paths"] = args.sensitive_paths
    try:
        collector = KernelCollector(
            args.node, attributor, publisher.submit, concerns=args.concerns,
            include_host=args.include_host, ringbuf_pages=args.ringbuf_pages, **tuning)
    except (TypeError, ValueError, OSError) as exc:
        log.error("kernel collector settings: %s", exc)
        source.stop()
        return 2
    try:
        collector.start()
    except CollectorError as exc:
        log.error("kernel collector cannot start: %s", exc)
        source.stop()
        return 2
    reporter = StatsReporter(collector, publisher, node=args.node)
    if args.metrics_port:
        reporter.serve(args.metrics_port, args.metrics_addr)
    log.info("kernel collector on %s: concerns %s, %d pods known", args.node,
             ",".join(args.concerns), len(index))
    try:
        return asyncio.run(_main(collector, publisher, reporter, args))
    finally:
        collector.close()
        source.stop()


def _run_source(source: Any, index: Any) -> None:
    try:
        source.run(index)
    except Exception:
        log.exception("pod source stopped")


async def _main(collector: Any, publisher: Any, reporter: Any, args: argparse.Namespace) -> int:
    stop = threading.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await publisher.start()
    poller = threading.Thread(
        target=_poll_loop, args=(collector, publisher, reporter, stop, args),
        name="kernel-poll", daemon=True)
    poller.start()
    while poller.is_alive() and not stop.is_set():
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.to_thread(poller.join, 5.0)
    publisher.submit(reporter.stats_envelope())
    await publisher.stop()
    final = publisher.stats.as_dict()
    log.info("kernel collector stopped: %s", {**collector.stats, **final})
    return 0


def _poll_loop(collector: Any, publisher: Any, reporter: Any, stop: threading.Event,
               args: argparse.Namespace) -> None:
    next_stats = time.monotonic() + args.stats_interval if args.stats_interval > 0 else None
    while not stop.is_set():
        try:
            collector.poll(args.poll_ms)
        except Exception:
            log.exception("poll failed")
            with contextlib.suppress(Exception):
                time.sleep(0.5)
        if next_stats is not None and time.monotonic() >= next_stats:
            publisher.submit(reporter.stats_envelope())
            next_stats = time.monotonic() + args.stats_interval
    # Stopping: what the collector still holds (ring buffer, repeat counts of open
    # dedup windows, syscall profiles, events waiting for metadata) goes to the
    # publisher before it flushes.
    try:
        collector.flush()
    except Exception:
        log.exception("final collector flush failed")
