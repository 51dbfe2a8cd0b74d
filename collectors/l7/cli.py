"""``agentstory collect l7``: the TLS plaintext collector as a node process.

The lead's CLI owns the common flags (``--bootstrap-servers``, ``--node``,
``--pods-file``, ``--log-level``); :func:`configure` adds the L7 ones and :func:`run`
wires pod source → attributor, probes → capture → parser → framed publisher. SIGTERM
and SIGINT stop the probes, flush parser state and the publisher, and return 0.
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

from collectors.l7.policy import MODES, ContentPolicy

__all__ = ["configure", "parse_content", "run"]

log = logging.getLogger("agentstory.l7")

_FAMILIES = ("prompts", "tool_arguments", "tool_results")


def parse_content(specs: list[str] | None, max_chars: int) -> ContentPolicy:
    """``["prompts=hash", "tool_results=drop"]`` → :class:`ContentPolicy`.

    >>> parse_content(["prompts=hash", "tool_arguments=keep"], 100).prompts
    'hash'
    """
    values: dict[str, Any] = {"max_chars": max_chars}
    for spec in specs or []:
        for item in spec.split(","):
            family, sep, mode = item.strip().partition("=")
            if not sep or family not in _FAMILIES or mode not in MODES:
                raise argparse.ArgumentTypeError(
                    f"--content {item!r}: expected <{'|'.join(_FAMILIES)}>="
                    f"<{'|'.join(sorted(MODES))}>"
                )
            values[family] = mode
    return ContentPolicy(**values)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the L7 collector's own flags to the ``collect l7`` subcommand."""
    group = parser.add_argument_group("L7 capture")
    group.add_argument(
        "--max-capture",
        type=int,
        default=128 * 1024,
        metavar="BYTES",
        help="plaintext bytes captured per SSL call; the rest is counted "
        "as truncated (default 131072)",
    )
    group.add_argument(
        "--chunk-size",
        type=int,
        default=4096,
        metavar="BYTES",
        help="bytes per ring-buffer record, a power of two (default 4096)",
    )
    group.add_argument(
        "--ringbuf-pages",
        type=int,
        default=4096,
        help="ring buffer size in pages, a power of two (default 4096: "
        "16 MiB; bursts of large bodies overflow smaller ones)",
    )
    group.add_argument(
        "--include-host",
        action="store_true",
        help="capture every process, not only pod cgroups (debugging)",
    )
    group.add_argument(
        "--no-plain-http",
        dest="plain_http",
        action="store_false",
        help="do not capture unencrypted HTTP on pod sockets (syscall tracepoints on "
        "read/write/sendto/recvfrom)",
    )
    group.add_argument(
        "--no-stdio-mcp",
        dest="stdio_mcp",
        action="store_false",
        help="do not capture MCP over stdio (read/write tracepoints on the pipes of pod "
        "processes that sent an MCP initialize to a child)",
    )
    group.add_argument(
        "--mcp-stdio-server",
        action="append",
        default=[],
        metavar="NAME",
        help="an executable known to be an MCP stdio server (basename, or a label such as "
        "'python3.12 -m tickets.server'); running ones are taken up even when their "
        "initialize was missed (repeatable)",
    )
    group.add_argument(
        "--libssl",
        action="append",
        default=[],
        metavar="PATH",
        help="also probe this libssl at start (repeatable); pod "
        "libraries are found in /proc/<pid>/maps",
    )
    group.add_argument(
        "--content",
        action="append",
        default=[],
        metavar="FAMILY=MODE",
        help="prompts|tool_arguments|tool_results = keep|hash|drop "
        "(repeatable or comma-separated; default keep)",
    )
    group.add_argument(
        "--max-chars",
        type=int,
        default=4096,
        help="cap on each kept prompt/tool string (default 4096)",
    )
    group.add_argument(
        "--score-user-turns",
        action="store_true",
        help="score every user turn for injection (apps whose end users are untrusted); "
        "by default only tool/MCP results, retrieved content and documents quoted in "
        "user turns are scored",
    )
    group.add_argument(
        "--rescan-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often pod cgroups and their libssl copies are rescanned",
    )
    group.add_argument(
        "--stats-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how often a collector.stats event is published (0: never)",
    )
    group.add_argument(
        "--cgroup-root",
        default=None,
        help="cgroup v2 mount (default: found in /proc/self/mountinfo)",
    )
    group.add_argument(
        "--packages",
        action="store_true",
        help="publish process.packages: the AI SDKs installed in each pod process's root "
             "(its *.dist-info, for the runtime AI-BOM)",
    )


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    level = getattr(args, "log_level", None) or "INFO"
    logging.basicConfig(
        level=str(level).upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        policy = parse_content(args.content, args.max_chars)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    return asyncio.run(_main(args, policy))


async def _main(args: argparse.Namespace, policy: ContentPolicy) -> int:
    from pathlib import Path

    from collectors.cgroups import CgroupResolver
    from collectors.l7.capture import Capture
    from collectors.l7.libssl import PodProcesses
    from collectors.l7.loader import SslProbes, TlsCollector
    from collectors.l7.parser import L7Parser
    from collectors.pods import Attributor, PodIndex, make_pod_source
    from collectors.publish import FramePublisher
    from streams.events import Envelope

    index = PodIndex()
    source = make_pod_source(args.pods_file, args.node)
    source.load(index)
    source_thread = threading.Thread(
        target=source.run, args=(index,), name="pod-source", daemon=True
    )
    source_thread.start()
    resolver = CgroupResolver(Path(args.cgroup_root) if args.cgroup_root else None)
    attributor = Attributor(index, resolver)
    publisher = FramePublisher(args.bootstrap_servers, client_id=f"agentstory-l7-{args.node}",
                               security=getattr(args, "kafka_security", None))
    probes = SslProbes(
        max_capture=args.max_capture,
        chunk_size=args.chunk_size,
        ringbuf_pages=args.ringbuf_pages,
        plain_http=args.plain_http,
        include_host=args.include_host,
    )
    for path in args.libssl:
        log.info("probing %s: %s", path, probes.attach_library(path))
    capture = Capture(
        L7Parser(policy, score_user_turns=getattr(args, "score_user_turns", False)),
        node=args.node,
        attribute=attributor.pod_for_cgroup,
        emit=publisher.submit,
        max_capture=args.max_capture,
    )
    collector = TlsCollector(probes, capture, PodProcesses(resolver), rescan_s=args.rescan_interval,
                             report_packages=args.packages)
    stdio = None
    if getattr(args, "stdio_mcp", True):
        from collectors.l7.stdio import StdioMcp
        from collectors.l7.stdio_loader import StdioCollector, StdioProbes, find_server

        stdio_probes = StdioProbes(chunk_size=args.chunk_size)
        cgroup_root = str(resolver.root)
        stdio = StdioCollector(
            stdio_probes,
            StdioMcp(
                L7Parser(policy, score_user_turns=getattr(args, "score_user_turns", False)),
                node=args.node, attribute=attributor.pod_for_cgroup, emit=publisher.submit,
                find_server=lambda pid, fd: find_server(pid, fd, cgroup_root=cgroup_root),
                watch=stdio_probes.watch, unwatch=stdio_probes.unwatch,
                settle=stdio_probes.settle,
                clock_offset_ns=capture.clock_offset_ns,
                max_capture=stdio_probes.max_capture,
            ),
            PodProcesses(resolver), rescan_s=args.rescan_interval,
            servers=getattr(args, "mcp_stdio_server", []),
        )

    def stats_event() -> Envelope:
        snap = collector.snapshot()
        if stdio is not None:
            snap["stdio_mcp"] = stdio.snapshot()
        snap["attribution"] = dict(attributor.counts)
        snap["publish"] = publisher.stats.as_dict()
        return Envelope(
            kind="collector.stats", ts=time.time_ns(), node=args.node, source="l7", data=snap
        )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await publisher.start()
    collector.start()
    if stdio is not None:
        stdio.start()
    log.info("l7 collector on %s: probing %s", args.node, sorted(probes.libraries) or "-")
    try:
        while not stop.is_set():
            timeout = args.stats_interval if args.stats_interval > 0 else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
            if args.stats_interval > 0:
                publisher.submit(stats_event())
    finally:
        await asyncio.to_thread(collector.stop)
        if stdio is not None:
            await asyncio.to_thread(stdio.stop)
        publisher.submit(stats_event())
        log.info("l7 collector stopping: %s", collector.snapshot())
        await publisher.stop()
        source.stop()
        probes.close()
        if stdio is not None:
            stdio.probes.close()
    return 0
