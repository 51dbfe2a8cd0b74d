"""Throughput of the CloudTrail collector's CPU path: parse + normalize + attribute.

Run: ``.venv/bin/python -m tests.bench.bench_cloudtrail`` (about a minute; ``--records``
to change the size; ``--no-latency`` skips the second part). Prints a Markdown section
for BENCHMARKS.md.

The second part measures the latency each source adds on this machine, end to end
through the real broker (tansu) and a local AWS API endpoint (moto's server): an event
sent to the SQS queue (as EventBridge would) or a log file put in the S3 bucket (as
CloudTrail would), until its envelope is read back from the raw cloud topic. What AWS
adds before that (CloudTrail → EventBridge, CloudTrail's S3 delivery) cannot be
measured here; the section says what AWS documents for it.

The workload is a generated but realistic day slice: 30 agents (20 on IRSA service
accounts with 1-3 replicas, 10 on EKS Pod Identity) whose credentials rotate hourly,
making S3 data events, Bedrock InvokeModel, DynamoDB, KMS, Secrets Manager and SQS
calls; plus node instance-role calls, an IAM user, and temporary keys nobody explains
(held for the grace period, then released unattributed). Records are cut into
500-record files in time order, with one file in ten swapped with its neighbour, as
CloudTrail's per-region deliveries interleave.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from collectors.cloudtrail.attribute import CloudAttributor
from collectors.cloudtrail.normalize import normalize
from collectors.cloudtrail.pipeline import CloudTrailPipeline
from collectors.pods import PodIndex, PodInfo
from streams.events import encode_frame
from tests.cloudtrail import records as r

START = datetime(2026, 11, 21, tzinfo=UTC)


def _t(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _exp(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).strftime("%b %d, %Y, %I:%M:%S %p").replace(
        " 0", " ")


def build_pods(rng: random.Random) -> tuple[PodIndex, list[dict[str, Any]]]:
    index = PodIndex()
    agents: list[dict[str, Any]] = []
    for i in range(30):
        ns, name = f"team-{i % 6}", f"agent-{i}"
        uids = []
        for j in range(rng.randint(1, 3) if i < 20 else 1):
            uid = f"{i:08x}-0000-4000-8000-{j:012x}"
            uids.append(uid)
            index.apply("ADDED", PodInfo(
                uid=uid, namespace=ns, name=f"{name}-5d8f7-{j:05d}", node=f"node-{j}",
                service_account=name, agent=f"{ns}/Deployment/{name}",
                containers={f"{i:02x}{j:02x}" * 16: "app"}))
        agents.append({"ns": ns, "sa": name, "uids": uids, "pi": i >= 20,
                       "weight": 1.0 / (i + 1), "key": "", "rotated": -1})
    return index, agents


def _pod_call(rng: random.Random, at: str, ident: dict[str, Any], n: int) -> dict[str, Any]:
    pick = rng.random()
    if pick < 0.5:
        return r.s3_get_object(at, ident, f"bucket-{n % 7}", f"data/{n % 5000}.parquet",
                               bytes_out=rng.randint(200, 5_000_000), seed=str(n))
    if pick < 0.65:
        return r.bedrock_invoke(at, ident, input_tokens=rng.randint(50, 8000))
    if pick < 0.8:
        return r.api_call(at, ident, "dynamodb.amazonaws.com", "GetItem",
                          {"tableName": f"sessions-{n % 3}", "key": {"pk": {"S": "x"}}},
                          seed=str(n))
    if pick < 0.88:
        return r.api_call(at, ident, "kms.amazonaws.com", "Decrypt",
                          {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}, seed=str(n))
    if pick < 0.94:
        return r.api_call(at, ident, "secretsmanager.amazonaws.com", "GetSecretValue",
                          {"secretId": f"prod/db-{n % 4}"}, seed=str(n))
    return r.api_call(at, ident, "sqs.amazonaws.com", "SendMessage",
                      {"queueUrl": f"https://sqs.us-west-2.amazonaws.com/{r.ACCOUNT}/jobs"},
                      read_only=False, seed=str(n))


def generate(n_records: int, file_records: int, seed: int = 7,
             ) -> tuple[PodIndex, list[list[dict[str, Any]]]]:
    rng = random.Random(seed)
    index, agents = build_pods(rng)
    weights = [a["weight"] for a in agents]
    span = 6 * 3600.0
    recs: list[dict[str, Any]] = []
    for n in range(n_records):
        sec = span * n / n_records
        at = _t(sec)
        pick = rng.random()
        if pick < 0.85:
            agent = rng.choices(agents, weights)[0]
            hour = int(sec // 3600)
            if agent["rotated"] != hour:  # hourly credential refresh: a new assume event
                agent["rotated"] = hour
                agent["key"] = f"ASIA{rng.getrandbits(64):016X}"
                if agent["pi"]:
                    recs.append(r.pod_identity_assume(
                        at, agent["uids"][0], f"{agent['sa']}-5d8f7-00000", agent["ns"],
                        agent["sa"], agent["key"], expiration=_exp(sec + 6 * 3600)))
                else:
                    recs.append(r.irsa_assume(at, agent["ns"], agent["sa"], agent["key"],
                                              expiration=_exp(sec + 3600)))
            recs.append(_pod_call(rng, at, r.assumed_role(agent["key"]), n))
        elif pick < 0.93:
            recs.append(r.node_role_call(at, instance_id=f"i-0{rng.randint(0, 5):016x}"))
        elif pick < 0.97:
            recs.append(r.iam_create_access_key(at, r.iam_user()) if rng.random() < 0.05
                        else r.api_call(at, r.iam_user(), "s3.amazonaws.com", "ListBuckets",
                                        {}, seed=str(n)))
        else:
            stranger = r.assumed_role(f"ASIASTRANGER{rng.randint(0, 50):08d}", role="sso-dev")
            recs.append(_pod_call(rng, at, stranger, n))
    files = [recs[i:i + file_records] for i in range(0, len(recs), file_records)]
    for i in range(0, len(files) - 1, 10):
        files[i], files[i + 1] = files[i + 1], files[i]
    return index, files


def _timed(fn: Callable[[], int]) -> tuple[float, int]:
    gc.collect()
    start = time.perf_counter()
    n = fn()
    return time.perf_counter() - start, n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_cloudtrail")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--file-records", type=int, default=500)
    parser.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--latency-events", type=int, default=40)
    parser.add_argument("--s3-poll-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    index, files = generate(args.records, args.file_records)
    records = [rec for f in files for rec in f]
    json_blobs = [orjson.dumps({"Records": f}) for f in files]
    gz_blobs = [gzip.compress(b, 6) for b in json_blobs]
    setup_s = time.perf_counter() - t0
    # The bench keeps 200k records alive as input, which a collector never does; keep
    # them out of the cyclic GC's scans so they do not slow the measured code.
    gc.collect()
    gc.freeze()
    json_mb = sum(map(len, json_blobs)) / 1e6
    gz_mb = sum(map(len, gz_blobs)) / 1e6

    def normalize_only() -> int:
        for rec in records:
            normalize(rec)
        return len(records)

    attributor_counts: dict[str, int] = {}

    def normalize_attribute() -> int:
        att = CloudAttributor(index, grace_s=900)
        out = 0
        for rec in records:
            out += len(att.process(*normalize(rec)))
        out += len(att.drain())
        attributor_counts.update(att.counts)
        return out

    def pipeline(blobs: list[bytes], *, encode: bool = False) -> Callable[[], int]:
        def run() -> int:
            pipe = CloudTrailPipeline(CloudAttributor(index, grace_s=900), node="bench")
            out = 0
            for i, blob in enumerate(blobs):
                envelopes = pipe.process_file(f"f{i}", blob).envelopes
                if encode:  # the frames the publisher would send (one per file here)
                    encode_frame(envelopes)
                out += len(envelopes)
            return out + len(pipe.drain())
        return run

    rows = [
        ("normalize (dicts in memory)", *_timed(normalize_only), json_mb),
        ("normalize + attribute (dicts)", *_timed(normalize_attribute), json_mb),
        ("parse .json + normalize + attribute", *_timed(pipeline(json_blobs)), json_mb),
        ("gunzip .json.gz + parse + normalize + attribute", *_timed(pipeline(gz_blobs)),
         gz_mb),
        ("... + encode frames (the publisher's serialization)",
         *_timed(pipeline(gz_blobs, encode=True)), gz_mb),
    ]
    n = len(records)
    pod_calls = sum(v for k, v in attributor_counts.items()
                    if k in ("attributed_irsa", "attributed_pod_identity"))
    print("### CloudTrail collector: parse + normalize + attribute\n")
    print(f"`.venv/bin/python -m tests.bench.bench_cloudtrail --records {args.records}` "
          f"({n} records in {len(files)} files of {args.file_records}; "
          f"{json_mb:.0f} MB JSON, {gz_mb:.1f} MB gzip; one core; setup {setup_s:.0f} s)\n")
    print("| stage | records out | seconds | records/s | input MB/s (JSON or gzip) |")
    print("|---|---:|---:|---:|---:|")
    for name, secs, out, mb in rows:
        print(f"| {name} | {out} | {secs:.2f} | {out / secs:,.0f} | {mb / secs:.1f} |")
    print(f"\nAttribution: {pod_calls / n:.1%} of records to a pod via IRSA/Pod Identity, "
          f"{attributor_counts.get('attributed_node', 0) / n:.1%} to nodes, "
          f"{attributor_counts.get('released_after_assume', 0)} held and released once "
          f"their assume event came, "
          f"{attributor_counts.get('unattributed_assume_not_seen', 0)} released "
          f"unattributed after the grace period, "
          f"{attributor_counts.get('keys_expired', 0)} keys expired.\n")
    full = rows[3]
    norm_s, attr_s, parse_s = rows[0][1], rows[1][1] - rows[0][1], rows[2][1] - rows[1][1]
    print(f"One core turns {full[2] / full[1]:,.0f} CloudTrail records/s from .json.gz into "
          "attributed envelopes; of the .json run, JSON parsing and envelope building "
          f"take {parse_s / rows[2][1]:.0%}, normalization {norm_s / rows[2][1]:.0%} and "
          f"the key join {attr_s / rows[2][1]:.0%}.")
    if args.latency:
        gc.unfreeze()
        del records, json_blobs, gz_blobs, files
        gc.collect()
        try:
            print(latency_section(args.latency_events, args.s3_poll_seconds))
        except Exception as exc:  # keep the throughput part; say what failed
            print(f"\nLatency part failed: {exc!r}")
    return 0


# -- latency per source ------------------------------------------------------------------

def _quantiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]
    return q(0.5), q(0.95), ordered[-1]


async def _measure(events: int, s3_poll_s: float) -> dict[str, list[float]]:
    import asyncio
    import logging
    import os
    import tempfile
    import uuid
    from pathlib import Path

    import boto3
    from aiokafka import AIOKafkaConsumer
    from moto.server import ThreadedMotoServer

    from collectors.cloudtrail.collector import CloudTrailCollector, KafkaSink
    from collectors.cloudtrail.dedup import EventIdDedup
    from collectors.cloudtrail.sources import S3Source, SqsSource
    from streams.admin import ensure_topics
    from streams.events import decode_frame
    from streams.topics import CATALOGUE, RAW_CLOUD
    from topologies.broker import EmbeddedBroker, free_port

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "bench")
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="ct-latency-"))
    broker = EmbeddedBroker(port=free_port(), log_path=tmp / "tansu.log").start()
    out: dict[str, list[float]] = {"sqs": [], "s3": []}
    try:
        bootstrap = broker.bootstrap_servers
        await ensure_topics(bootstrap, list(CATALOGUE))
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        queue = sqs.create_queue(QueueName="ct-latency",
                                 Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
        s3.create_bucket(Bucket="ct-latency")
        consumer = AIOKafkaConsumer(RAW_CLOUD.name, bootstrap_servers=bootstrap,
                                    group_id=None, auto_offset_reset="latest")
        await consumer.start()
        await consumer.seek_to_end()
        sent: dict[str, float] = {}
        seen: dict[str, float] = {}

        async def consume() -> None:
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                now = time.time()
                for messages in batch.values():
                    for m in messages:
                        for env in decode_frame(m.value or b"").events:
                            seen.setdefault(env.data["event_id"], now)

        reader = asyncio.create_task(consume())
        identity = r.iam_user()

        async def run(kind: str, source: object, poll_s: float) -> None:
            pipe = CloudTrailPipeline(CloudAttributor(None), node=f"lat-{kind}",
                                      dedup=EventIdDedup())
            sink = KafkaSink(bootstrap, client_id=f"ct-latency-{kind}")
            col = CloudTrailCollector(source, pipe, sink)  # type: ignore[arg-type]
            task = asyncio.create_task(col.run(follow=True, poll_s=poll_s))
            rng = random.Random(3)
            ids: list[str] = []
            for i in range(events):
                rec = r.api_call(_t(i), identity, "secretsmanager.amazonaws.com",
                                 "GetSecretValue", {"secretId": f"s{i}"},
                                 seed=f"{kind}{i}{uuid.uuid4()}")
                ids.append(rec["eventID"])
                sent[rec["eventID"]] = time.time()
                if kind == "sqs":
                    await asyncio.to_thread(sqs.send_message, QueueUrl=queue,
                                            MessageBody=orjson.dumps(r.eventbridge(rec)).decode())
                else:
                    key = (f"AWSLogs/{r.ACCOUNT}/CloudTrail/us-east-1/2026/11/21/"
                           f"{r.ACCOUNT}_CloudTrail_us-east-1_20261121T{i // 60:02d}"
                           f"{i % 60:02d}Z_{i:016x}.json.gz")
                    await asyncio.to_thread(s3.put_object, Bucket="ct-latency", Key=key,
                                            Body=gzip.compress(orjson.dumps({"Records": [rec]})))
                await asyncio.sleep(rng.uniform(0.05, 0.4))
            deadline = time.time() + 60
            while time.time() < deadline and not all(i in seen for i in ids):
                await asyncio.sleep(0.1)
            col.stop()
            await asyncio.wait_for(task, 60)
            await sink.close()
            out[kind] = [seen[i] - sent[i] for i in ids if i in seen]

        await run("sqs", SqsSource(sqs, queue, wait_s=20), 0.0)
        await run("s3", S3Source(s3, "ct-latency"), s3_poll_s)
        reader.cancel()
        await consumer.stop()
    finally:
        broker.stop()
        moto.stop()
    return out


def latency_section(events: int, s3_poll_s: float) -> str:
    import asyncio

    results = asyncio.run(_measure(events, s3_poll_s))
    lines = [
        "\n#### Latency each source adds (this machine, through tansu and moto's server)\n",
        f"`.venv/bin/python -m tests.bench.bench_cloudtrail --latency-events {events} "
        f"--s3-poll-seconds {s3_poll_s:g}`: {events} events per source sent 50-400 ms "
        "apart; from SQS SendMessage / S3 PutObject until the envelope is read from "
        "the raw cloud topic.\n",
        "| source | events back | p50 s | p95 s | max s | what AWS adds before (documented, "
        "not measured here) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    notes = {
        "sqs": "CloudTrail → EventBridge → SQS: no figure published by AWS (minutes "
               "less than S3 by design: no file batching)",
        "s3": f"CloudTrail's file delivery: about every 5 min on average, not guaranteed; "
              f"plus the poll interval ({s3_poll_s:g} s here, default 30 s)",
    }
    for kind in ("sqs", "s3"):
        values = results[kind]
        if values:
            p50, p95, top = _quantiles(values)
            lines.append(f"| {kind} | {len(values)}/{events} | {p50:.2f} | {p95:.2f} | "
                         f"{top:.2f} | {notes[kind]} |")
        else:
            lines.append(f"| {kind} | 0/{events} | - | - | - | {notes[kind]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
