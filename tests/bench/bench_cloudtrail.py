"""Throughput of the CloudTrail collector's CPU path: parse + normalize + attribute.

Run: ``.venv/bin/python -m tests.bench.bench_cloudtrail`` (about a minute; ``--records``
to change the size). Prints a Markdown section for BENCHMARKS.md.

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
