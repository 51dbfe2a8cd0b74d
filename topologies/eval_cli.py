"""Subcommands of issue 12: ``record``, ``export``, ``import`` (added to the CLI by
:func:`add_subcommands`, one call in :mod:`topologies.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_subcommands"]

_BOOTSTRAP = os.environ.get("AGENTSTORY_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def cmd_record(args: argparse.Namespace) -> int:
    from topologies.demo import missing_requirements
    from topologies.record import record
    from topologies.scenarios import catalog

    problems = missing_requirements()
    if problems:
        print("agentstory record cannot run here:\n  - " + "\n  - ".join(problems),
              file=sys.stderr)
        return 2
    names = list(args.only or [])
    if not names:
        names = list(catalog.SCENARIOS) if args.split in ("dev", "all") else []
        if args.split in ("heldout", "all"):
            from topologies.scenarios import heldout

            names += list(heldout.SCENARIOS)
    failed = 0
    for name in names:
        scn = catalog.scenario(name)
        out = Path(args.out) / scn.split / name
        try:
            meta = record(scn, out, progress=not args.quiet)
        except Exception as exc:  # one broken scenario must not lose the others
            failed += 1
            print(f"record {name}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        lost = int(meta["collectors"]["kernel"].get("lost", 0)) + int(
            (meta["collectors"]["l7"].get("kernel") or {}).get("lost", 0))
        print(f"record {name}: {meta['activities']} activities, {meta['event_span_s'] / 3600:.2f}"
              f" h of event time in {meta['wall_seconds']} s; {sum(meta['events'].values())} "
              f"events; agent errors {len(meta['agent_errors'])}; lost in the kernel {lost}"
              f" -> {out}", flush=True)
        if lost or meta["agent_errors"]:
            failed += 1
            print(f"record {name}: INCOMPLETE (records lost or agent errors): record it "
                  "again on a quieter machine", file=sys.stderr)
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from topologies.export import export_topics, parse_time

    n = asyncio.run(export_topics(
        args.bootstrap_servers, Path(args.out), topics=args.topic or None,
        start_ms=parse_time(args.since), end_ms=parse_time(args.until),
        idle_timeout_s=args.idle_timeout, progress=not args.quiet,
        security=args.kafka_security))
    print(f"exported {n} messages to {args.out}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from topologies.export import import_jsonl

    n = asyncio.run(import_jsonl(args.bootstrap_servers, [Path(p) for p in args.files],
                                 topic_map=dict(_pair(m) for m in args.rename),
                                 progress=not args.quiet, security=args.kafka_security))
    print(f"imported {n} messages", file=sys.stderr)
    return 0


def _pair(text: str) -> tuple[str, str]:
    src, sep, dst = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--rename {text!r}: expected FROM=TO")
    return src, dst


def add_subcommands(sub: Any) -> None:
    """Add ``record``, ``export`` and ``import`` to the ``agentstory`` parser."""
    p = sub.add_parser("record", help="play scenarios through the real collectors and "
                                      "write recordings (root)")
    p.add_argument("--out", default="tests/recordings", help="folder (default %(default)s)")
    p.add_argument("--only", action="append", metavar="SCENARIO", help="one scenario "
                   "(repeatable); default: every scenario of --split")
    p.add_argument("--split", choices=["dev", "heldout", "all"], default="dev")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--log-level", default="warning")
    p.set_defaults(func=cmd_record)

    for name, helptext in (("export", "raw topics → JSONL (frames kept)"),
                           ("import", "JSONL → topics (frames, keys, timestamps kept)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--bootstrap-servers", default=_BOOTSTRAP)
        from streams.kafka_config import add_security_args

        add_security_args(p)
        p.add_argument("--log-level", default="warning")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        if name == "export":
            p.add_argument("--out", required=True, help="JSONL file (.gz compresses)")
            p.add_argument("--topic", action="append", help="topic (repeatable; default: "
                           "the raw topics)")
            p.add_argument("--since", help="ISO time or epoch ms: first message timestamp")
            p.add_argument("--until", help="ISO time or epoch ms: end (exclusive)")
            p.add_argument("--idle-timeout", type=float, default=3.0,
                           help="stop after this many seconds without a message")
            p.set_defaults(func=cmd_export)
        else:
            p.add_argument("files", nargs="+", help="JSONL files (.gz ok), e.g. recordings")
            p.add_argument("--rename", action="append", default=[], metavar="FROM=TO",
                           help="write topic FROM's messages to TO (repeatable)")
            p.set_defaults(func=cmd_import)
