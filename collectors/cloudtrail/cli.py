"""``agentstory collect cloudtrail``: CloudTrail from S3, SQS or a directory into Kafka.

The top-level CLI adds ``--bootstrap-servers``, ``--node``, ``--pods-file`` and
``--log-level``; this module adds the source and attribution options and runs the
collector. ``python -m collectors.cloudtrail.cli`` runs it stand-alone with the same
options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from collectors.pods import PodIndex, PodSource, make_pod_source

from .attribute import CloudAttributor
from .collector import CloudTrailCollector, KafkaSink, Sink
from .dedup import EventIdDedup
from .pipeline import CloudTrailPipeline
from .sources import (
    Checkpoint,
    DirSource,
    LogSource,
    MultiSource,
    S3Source,
    SqsSource,
    parse_s3_uri,
)

__all__ = ["configure", "main", "run"]

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--dir", type=Path, metavar="PATH",
                     help="a directory of CloudTrail files (.json, .jsonl, .ndjson, .log, "
                          ".txt, each also .gz; documents, JSON lines or concatenated "
                          "documents), read recursively; other files are reported")
    src.add_argument("--s3", metavar="s3://BUCKET/PREFIX",
                     help="the trail's bucket and key prefix (AWSLogs/… below it)")
    parser.add_argument("--sqs", metavar="QUEUE_URL", default=None,
                        help="near real time: the SQS queue an EventBridge rule "
                             "(state ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS) sends "
                             "CloudTrail management events to; alone or with --s3/--dir "
                             "(events seen twice are dropped by eventID)")
    parser.add_argument("--endpoint-url", default=None,
                        help="S3-compatible endpoint (MinIO, moto, LocalStack)")
    parser.add_argument("--sqs-endpoint-url", default=None,
                        help="SQS endpoint (LocalStack, moto); default: AWS")
    parser.add_argument("--sqs-wait-seconds", type=int, default=20,
                        help="SQS long-poll wait, 1-20 (default 20)")
    parser.add_argument("--dedup-window-seconds", type=float, default=6 * 3600.0,
                        help="with --sqs: event time an eventID is remembered to drop "
                             "the copy the other source or a redelivery brings "
                             "(default 21600)")
    parser.add_argument("--dedup-max", type=int, default=200_000,
                        help="with --sqs: event ids remembered at most (default 200000)")
    parser.add_argument("--region", default=None, help="AWS region of the S3 client")
    parser.add_argument("--since", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                        help="S3: list from this day on when a prefix has no checkpoint")
    parser.add_argument("--lookback-days", type=int, default=1,
                        help="S3: days behind the newest file still watched for late "
                             "deliveries (default 1)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="checkpoint file (default: none; without it, a restart "
                             "starts over)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--follow", dest="follow", action="store_true",
                      help="keep polling for new files")
    mode.add_argument("--once", dest="follow", action="store_false",
                      help="read what is there, release held calls, exit (default)")
    parser.set_defaults(follow=False)
    parser.add_argument("--poll-seconds", type=float, default=30.0)
    parser.add_argument("--grace-seconds", type=float, default=900.0,
                        help="event time a call with an unknown temporary key waits for "
                             "its assume event (default 900)")
    parser.add_argument("--max-keys", type=int, default=100_000,
                        help="access keys remembered (LRU; default 100000)")
    parser.add_argument("--max-held", type=int, default=10_000,
                        help="calls held waiting for their assume event (default 10000)")
    parser.add_argument("--node-role", action="append", default=[], metavar="NAME_OR_ARN",
                        help="a node instance role (repeatable); sessions named i-… are "
                             "node calls anyway")
    parser.add_argument("--batch-records", type=int, default=5000,
                        help="records per publish+checkpoint batch (default 5000)")


def _pod_source(args: argparse.Namespace) -> PodSource:
    # CloudTrail runs beside the account, not on a node: watch the pods of every node.
    return make_pod_source(getattr(args, "pods_file", None), None)


def _start_pods(args: argparse.Namespace) -> tuple[PodIndex, PodSource | None]:
    index = PodIndex()
    source = _pod_source(args)
    try:
        source.load(index)
    except Exception as exc:  # no cluster reachable: attribute to service accounts only
        log.warning("pod source unavailable (%s); attributing to service accounts only", exc)
        return index, None
    threading.Thread(target=_watch, args=(source, index), daemon=True,
                     name="cloudtrail-pods").start()
    return index, source


def _watch(source: PodSource, index: PodIndex) -> None:
    try:
        source.run(index)
    except Exception as exc:
        log.warning("pod watch stopped: %s", exc)


def _file_source(args: argparse.Namespace) -> LogSource | None:
    if args.dir is not None:
        # one-shot runs read files written a moment ago (after they settle)
        return DirSource(args.dir, wait_fresh=not args.follow)
    if args.s3 is None:
        return None
    import boto3

    bucket, prefix = parse_s3_uri(args.s3)
    client: Any = boto3.client("s3", endpoint_url=args.endpoint_url, region_name=args.region)
    return S3Source(client, bucket, prefix, since=args.since, lookback_days=args.lookback_days)


def _sqs_source(args: argparse.Namespace) -> SqsSource | None:
    if not args.sqs:
        return None
    import boto3

    if not 0 <= args.sqs_wait_seconds <= 20:
        raise SystemExit("--sqs-wait-seconds must be between 0 and 20")
    client: Any = boto3.client("sqs", endpoint_url=args.sqs_endpoint_url,
                               region_name=_queue_region(args.sqs) or args.region)
    return SqsSource(client, args.sqs, wait_s=args.sqs_wait_seconds)


def _queue_region(url: str) -> str | None:
    """``https://sqs.<region>.amazonaws.com/<acct>/<name>`` → region."""
    host = url.split("/")[2] if url.count("/") >= 2 else ""
    parts = host.split(".")
    return parts[1] if len(parts) > 3 and parts[0] == "sqs" else None


def _source(args: argparse.Namespace) -> LogSource:
    files, sqs = _file_source(args), _sqs_source(args)
    if files is not None and sqs is not None:
        return MultiSource(files, sqs, file_poll_s=args.poll_seconds)
    source = files or sqs
    if source is None:
        raise SystemExit("collect cloudtrail needs a source: --dir, --s3 and/or --sqs")
    return source


async def _run(args: argparse.Namespace, sink: Sink | None = None) -> int:
    index, pod_source = _start_pods(args)
    attributor = CloudAttributor(index, grace_s=args.grace_seconds, max_keys=args.max_keys,
                                 max_held=args.max_held, node_roles=args.node_role)
    source = _source(args)
    dedup = (EventIdDedup(window_s=args.dedup_window_seconds, max_ids=args.dedup_max)
             if args.sqs else None)
    pipeline = CloudTrailPipeline(attributor, node=args.node, dedup=dedup)
    sink = sink or KafkaSink(args.bootstrap_servers,
                                   security=getattr(args, "kafka_security", None))
    checkpoint = Checkpoint(args.checkpoint) if args.checkpoint else None
    collector = CloudTrailCollector(
        source, pipeline, sink, checkpoint, batch_records=args.batch_records,
        checkpoint_every_s=10.0 if args.sqs else 0.0)
    if collector.restore():
        log.info("resumed from %s (%d keys, %d held)", args.checkpoint,
                 attributor.known_keys, attributor.held)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, collector.stop)
    try:
        # with SQS the long poll is the wait (the file source keeps its own interval)
        await collector.run(follow=args.follow, poll_s=0.0 if args.sqs else args.poll_seconds)
    finally:
        await sink.close()
        if pod_source is not None:
            pod_source.stop()
    log.info("cloudtrail done: %s; attribution %s; %s", pipeline.counts, attributor.counts,
             collector.counts)
    skipped = getattr(collector.source, "skipped", None)
    if skipped:
        log.warning("cloudtrail: files not read, by suffix: %s", skipped)
    return 1 if collector.counts["read_errors"] else 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point with the options the top-level CLI would add."""
    parser = argparse.ArgumentParser(prog="python -m collectors.cloudtrail.cli")
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--node", default="cloudtrail")
    parser.add_argument("--pods-file", default=None)
    parser.add_argument("--log-level", default="info")
    configure(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
