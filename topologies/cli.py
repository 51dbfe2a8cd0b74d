"""``agentstory``: one command line for the broker, the collectors, the worker and the demo.

Every command that talks to Kafka takes ``--bootstrap-servers`` (or
``AGENTSTORY_BOOTSTRAP_SERVERS``), so an existing cluster replaces the embedded broker
with no code change.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from streams.topics import WORKER_APP_ID

__all__ = ["main"]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
COLLECTORS = {
    "kernel": "process, file, network, DNS and syscall events from eBPF (root)",
    "l7": "TLS plaintext via uprobes on libssl: HTTP, LLM and MCP calls (root)",
    "cloudtrail": "AWS CloudTrail records from S3 or a directory, attributed to pods",
}


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get(name, default)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers", default=_env("AGENTSTORY_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP),
        help="Kafka bootstrap servers, host:port[,host:port] "
             "(env AGENTSTORY_BOOTSTRAP_SERVERS; default %(default)s)")
    parser.add_argument("--log-level", default=_env("AGENTSTORY_LOG_LEVEL", "info"),
                        choices=["debug", "info", "warning", "error"])
    _log_format(parser)
    from streams.kafka_config import add_security_args

    add_security_args(parser)


def _log_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", default=_env("AGENTSTORY_LOG_FORMAT", "text"),
                        choices=["text", "json"],
                        help="text, or JSON lines on stdout for log pipelines "
                             "(env AGENTSTORY_LOG_FORMAT; default %(default)s)")


def _node_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", default=_env("AGENTSTORY_NODE", socket.gethostname()),
                        help="this node's name (env AGENTSTORY_NODE; default: hostname)")
    parser.add_argument(
        "--pods-file", default=_env("AGENTSTORY_PODS_FILE", None),
        help="YAML of Pod manifests (embedded mode); without it, watch the Kubernetes API "
             "for pods on --node (env AGENTSTORY_PODS_FILE)")


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def cmd_broker(args: argparse.Namespace) -> int:
    from streams.admin import ensure_topics
    from topologies.broker import EmbeddedBroker

    with EmbeddedBroker(args.host, args.port) as broker:
        created = asyncio.run(ensure_topics(broker.bootstrap_servers))  # plaintext, local
        ready = (f"tansu broker ready on {broker.bootstrap_servers}; "
                 f"created {len(created)} topics. Ctrl-C stops it.")
        if args.log_format == "json":  # one format on stdout for the log pipeline
            logging.getLogger("agentstory.broker").info("%s", ready)
        else:
            print(ready, flush=True)
        _wait_for_signal()
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from streams.admin import ensure_topics
    from streams.topics import CATALOGUE
    from topologies.worker import worker_topics

    specs = [*CATALOGUE, *worker_topics()]
    if args.action == "migrate":
        return _migrate(args)
    if args.action == "list":
        for spec in specs:
            print(f"{spec.name:48} partitions={spec.partitions:<2} {spec.cleanup_policy:8} "
                  f"key={spec.key}\n    {spec.carries}")
        return 0
    created = asyncio.run(ensure_topics(args.bootstrap_servers, specs,
                                        security=args.kafka_security))
    print(f"created: {', '.join(created) or 'none (all present)'}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    import time

    from streams.topics import PARTITIONS
    from topologies.migrate import MigrationError, migrate_partitions

    backup = Path(args.backup or f"agentstory-state-backup-{time.strftime('%Y%m%dT%H%M%S')}"
                  ".jsonl.gz")
    try:
        report = asyncio.run(migrate_partitions(
            args.bootstrap_servers, PARTITIONS, app_id=args.app_id, backup=backup,
            recreate=args.recreate, from_backup=args.from_backup,
            security=args.kafka_security))
    except MigrationError as exc:
        print(f"agentstory topics migrate: {exc}", file=sys.stderr)
        return 1
    print(f"{PARTITIONS} partitions: grown {len(report.grown)}, recreated "
          f"{len(report.recreated)}, already so {len(report.unchanged)}; "
          f"{report.states} agent states rewritten"
          + (f" (backup: {report.backup})" if report.backup else ""))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.admin import ensure_topics
    from streams.engine import SECOND_NS, EngineSettings
    from streams.topics import CATALOGUE
    from topologies.worker import build_app, worker_topics

    asyncio.run(ensure_topics(args.bootstrap_servers,
                              [*CATALOGUE, *worker_topics(args.app_id)],
                              security=args.kafka_security))
    asyncio.set_event_loop(asyncio.new_event_loop())
    settings = EngineSettings(learning_ns=int(args.learning_seconds * SECOND_NS),
                              min_events=args.min_events, evidence_policy=args.evidence)
    app = build_app(args.bootstrap_servers, settings=settings, app_id=args.app_id,
                    fetch_max_wait_ms=args.fetch_max_wait_ms, store=args.store,
                    security=args.kafka_security)
    if args.metrics_port:
        from topologies.health import HealthServer

        server = HealthServer(app.agentstory_metrics, args.metrics_port,
                              args.metrics_addr).start()
        logging.getLogger("agentstory.worker").info(
            "metrics and health on http://%s:%d/ (/metrics, /healthz, /livez)",
            args.metrics_addr, server.port)
    from faust import Worker

    from topologies.logs import faust_logging_config

    Worker(app, loglevel=args.log_level.upper(), quiet=True,
           logging_config=faust_logging_config(args.log_level, args.log_format),
           ).execute_from_commandline()
    return 0


def cmd_stories(args: argparse.Namespace) -> int:
    from topologies.tail import tail_stories

    if args.action == "resolve":
        from topologies.analyst import resolve_story

        if not args.uid or not args.verdict:
            print("agentstory stories resolve UID --benign|--malicious", file=sys.stderr)
            return 2
        try:
            agent = asyncio.run(resolve_story(args.bootstrap_servers, args.uid, args.verdict,
                                              note=args.note, by=args.by,
                                              security=args.kafka_security))
        except LookupError as exc:
            print(f"agentstory: {exc}", file=sys.stderr)
            return 1
        print(f"{args.verdict} verdict on {args.uid} sent for {agent}")
        return 0
    return asyncio.run(tail_stories(args.bootstrap_servers, follow=args.follow,
                                    as_json=args.json, timeout_s=args.timeout,
                                    security=args.kafka_security))


def cmd_profiles(args: argparse.Namespace) -> int:
    import orjson

    from topologies.analyst import render_profile, show_profile

    if args.action != "show":  # bom, export: topologies/profiles_cli.py
        return int(importlib.import_module("topologies.profiles_cli").run(args))
    try:
        doc = asyncio.run(show_profile(args.bootstrap_servers, args.agent,
                                       security=args.kafka_security))
    except LookupError as exc:
        print(f"agentstory: {exc}", file=sys.stderr)
        return 1
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() if args.json
          else render_profile(doc))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    import orjson

    from streams.content import load_content
    from streams.engine import SECOND_NS, EngineSettings
    from topologies.export import parse_time
    from topologies.replay import load_params, replay_topics
    from topologies.tail import render_story

    settings = EngineSettings(learning_ns=int(args.learning_seconds * SECOND_NS),
                              min_events=args.min_events)
    overrides = {"allowed_new_executables": args.allow} if args.allow else None
    content = load_content(overrides=overrides)
    if args.params:
        try:
            settings, content = load_params(Path(args.params), settings, overrides)
        except (OSError, ValueError) as exc:
            print(f"agentstory replay: {exc}", file=sys.stderr)
            return 2
    stories, replayer = asyncio.run(replay_topics(
        args.bootstrap_servers, settings, content, idle_timeout_s=args.idle_timeout,
        publish_to=args.publish_to, start_ms=parse_time(args.since),
        end_ms=parse_time(args.until), progress=sys.stderr.isatty(),
        security=args.kafka_security))
    for story in stories:
        doc = story.to_ocsf()
        print(orjson.dumps(doc).decode() if args.json else render_story(doc) + "\n")
    print(f"replayed {replayer.events} events of {len(replayer.states)} agents "
          f"({replayer.unattributed} without a pod): {len(stories)} stories", file=sys.stderr)
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    return int(args.collector_run(args))


def cmd_demo(args: argparse.Namespace) -> int:
    from topologies.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentstory",
        description="Detection pipeline for AI agents on Kubernetes: kernel, L7 and cloud "
                    "events joined into attack stories.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("broker", help="run the embedded Kafka-protocol broker (tansu)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--log-level", default="info")
    _log_format(p)
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("topics", help="create (idempotently) or list the topic catalogue, or "
                                      "migrate it to AGENTSTORY_PARTITIONS partitions")
    p.add_argument("action", choices=["create", "list", "migrate"])
    p.add_argument("--app-id", default=WORKER_APP_ID,
                   help="migrate: the worker's app id, whose state table moves along")
    p.add_argument("--backup", metavar="FILE",
                   help="migrate: where the agent states are saved first "
                        "(default agentstory-state-backup-<time>.jsonl.gz)")
    p.add_argument("--from-backup", type=Path, metavar="FILE",
                   help="migrate: write the states of this backup instead of reading them")
    p.add_argument("--recreate", action="store_true",
                   help="migrate: delete and create again topics the broker cannot grow "
                        "(their retained messages are lost)")
    _common(p)
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("worker", help="run the Faust worker: raw topics in, stories out")
    _common(p)
    p.add_argument("--learning-seconds", type=float, default=3600.0,
                   help="event time each agent learns before it is judged (default 3600)")
    p.add_argument("--min-events", type=int, default=20,
                   help="execs an agent must have shown before it is judged (default 20)")
    p.add_argument("--app-id", default=WORKER_APP_ID,
                   help="Faust app id: consumer group and changelog prefix (default %(default)s)")
    p.add_argument("--store", default="memory://",
                   help="table store: memory:// (rebuilt from the changelog at start) or "
                        "rocksdb:// (on disk, with rocksdict; set --data-dir)")
    p.add_argument("--evidence", choices=["keep", "hash", "drop"], default="keep",
                   help="tool arguments and results in story evidence: keep, hash or drop "
                        "(the same policy as the L7 collector's --content)")
    p.add_argument("--fetch-max-wait-ms", type=int, default=100,
                   help="longest a fetch waits for data (Faust's own 1500 stalls each hop "
                        "on the embedded broker, which does not end a parked fetch early)")
    p.add_argument("--metrics-port", type=int,
                   default=int(_env("AGENTSTORY_METRICS_PORT", "0") or 0),
                   help="serve /metrics (Prometheus), /healthz (ready: joined the group, "
                        "tables restored) and /livez on this port; 0: off "
                        "(env AGENTSTORY_METRICS_PORT)")
    p.add_argument("--metrics-addr", default="127.0.0.1",
                   help="address for --metrics-port (0.0.0.0 in a pod)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("stories", help="read stories, or give a verdict on one")
    p.add_argument("action", choices=["tail", "resolve"])
    p.add_argument("uid", nargs="?", help="resolve: the story uid (as-…)")
    verdict = p.add_mutually_exclusive_group()
    verdict.add_argument("--benign", dest="verdict", action="store_const", const="benign",
                         help="resolve: close it and let the baseline learn what it flagged")
    verdict.add_argument("--malicious", dest="verdict", action="store_const",
                         const="malicious", help="resolve: confirm it; its values stay unlearned")
    p.add_argument("--note", default="", help="resolve: why")
    p.add_argument("--by", default="", help="resolve: who (default: the login name)")
    _common(p)
    p.add_argument("--follow", action="store_true", help="keep waiting for new stories")
    p.add_argument("--json", action="store_true", help="print the OCSF JSON, one per line")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="without --follow: stop after this many idle seconds")
    p.set_defaults(func=cmd_stories)

    p = sub.add_parser("profiles", help="an agent's learned baseline, as auditors read it")
    p.add_argument("action", choices=["show", "bom", "export"])
    p.add_argument("agent", help="namespace/Kind/name, e.g. support/Deployment/support-bot")
    p.add_argument("--json", action="store_true", help="print the whole summary as JSON")
    _common(p)
    importlib.import_module("topologies.profiles_cli").configure(p)  # bom, export
    p.set_defaults(func=cmd_profiles)

    p = sub.add_parser("replay", help="regenerate stories from the raw topics (tuning)")
    _common(p)
    p.add_argument("--learning-seconds", type=float, default=3600.0)
    p.add_argument("--min-events", type=int, default=20)
    p.add_argument("--allow", action="append", default=[], metavar="EXE",
                   help="try an executable in allowed_new_executables (repeatable)")
    p.add_argument("--publish-to", metavar="TOPIC",
                   help="also publish the stories to this (compacted) topic")
    p.add_argument("--params", metavar="FILE",
                   help="YAML: learning_seconds, min_events, evidence, baseline, lists")
    p.add_argument("--since", help="ISO time or epoch ms: first raw message (timestamp)")
    p.add_argument("--until", help="ISO time or epoch ms: end of the range (exclusive)")
    p.add_argument("--json", action="store_true", help="print OCSF JSON, one per line")
    p.add_argument("--idle-timeout", type=float, default=5.0,
                   help="stop after this many seconds without a new message")
    p.set_defaults(func=cmd_replay)

    collect = sub.add_parser("collect", help="run a collector")
    csub = collect.add_subparsers(dest="collector", required=True)
    for name, help_text in COLLECTORS.items():
        p = csub.add_parser(name, help=help_text)
        _common(p)
        _node_args(p)
        try:
            module = importlib.import_module(f"collectors.{name}.cli")
        except ImportError as exc:
            p.set_defaults(func=lambda a, exc=exc, name=name: _unavailable(name, exc))
            continue
        module.configure(p)
        p.set_defaults(func=cmd_collect, collector_run=module.run)

    from collectors.enforce.cli import add_subcommand as add_enforce

    add_enforce(sub, _common, _node_args)  # agentstory enforce run|off|on|status|check|policy

    p = sub.add_parser("demo", help="the main job, end to end on this machine (root)")
    _common(p)
    p.add_argument("--external-broker", action="store_true",
                   help="use --bootstrap-servers instead of starting the embedded broker")
    p.add_argument("--learning-seconds", type=float, default=3600.0,
                   help="the worker's learning span in event time (the scenario learns 1.6 h)")
    p.add_argument("--min-events", type=int, default=20)
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for the story once the scenario streamed in")
    p.add_argument("--enforce", metavar="POLICY", action="append", default=[],
                   help="apply this agentstory enforce policy while the scenario plays "
                        "(e.g. deploy/enforce/support-bot.yaml; its mode: audit|enforce)")
    p.set_defaults(func=cmd_demo)
    importlib.import_module("topologies.eval_cli").add_subcommands(sub)  # record/export/import
    return parser


def _unavailable(name: str, exc: ImportError) -> int:
    print(f"agentstory: the {name} collector cannot load: {exc}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    from streams.kafka_config import KafkaConfigError, connection_error, security_from_args
    from topologies.logs import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging(str(args.log_level), getattr(args, "log_format", "text"))
    try:
        args.kafka_security = security_from_args(args)
        return int(args.func(args) or 0)
    except KafkaConfigError as exc:
        print(f"agentstory: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        message = connection_error(exc, getattr(args, "bootstrap_servers", None),
                                   getattr(args, "kafka_security", None))
        if message is None:
            raise
        print(f"agentstory: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
