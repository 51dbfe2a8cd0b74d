"""Sources against real IO: a directory on disk, and S3 through a moto server on
loopback (the S3 wire protocol, boto3 unchanged)."""

from __future__ import annotations

import doctest
import gzip
import os
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from collectors.cloudtrail import sources as sources_module
from collectors.cloudtrail.sources import Checkpoint, DirSource, S3Source, parse_s3_uri

from . import records as r

KEY = "ASIAEXAMPLEIRSAKEY01"


def _old(path: Path) -> None:
    os.utime(path, (1_700_000_000, 1_700_000_000))


def test_dir_lists_log_files_in_path_order_and_skips_others(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "b").mkdir()
    names = ("b/2.json.gz", "a.json", "c.jsonl", "d.log", "e.ndjson", "f.json.txt",
             "g.log.gz", "notes.md", "img.png", "old.md", ".hidden.json",
             f"b/{r.ACCOUNT}_CloudTrail-Digest_us-west-2_t_us-west-2_20261121T0520Z.json.gz")
    for name in names:
        (tmp_path / name).write_bytes(b"{}")
        _old(tmp_path / name)
    (tmp_path / "fresh.json").write_bytes(b"{}")  # still being written: next poll
    src = DirSource(tmp_path)
    with caplog.at_level("WARNING", logger="collectors.cloudtrail.sources"):
        assert [f.name for f in src.list_new()] == [
            "a.json", "b/2.json.gz", "c.jsonl", "d.log", "e.ndjson", "f.json.txt", "g.log.gz"]
        src.list_new()  # the next poll does not say it again
    warned = [rec.getMessage() for rec in caplog.records]
    # once per suffix and reason: .md twice on disk, one word; .png; the digest
    assert len(warned) == 3, warned
    assert any("not reading notes.md" in w or "not reading old.md" in w for w in warned)
    assert any("img.png" in w for w in warned)
    assert any("digest" in w for w in warned)
    assert src.skipped == {".md": 2, ".png": 1, ".json.gz": 1}


def test_one_shot_waits_for_fresh_files_instead_of_skipping_them(tmp_path: Path) -> None:
    (tmp_path / "just-written.json").write_bytes(b"{}")
    assert DirSource(tmp_path, settle_s=0.2).list_new() == []  # follow: next poll
    once = DirSource(tmp_path, settle_s=0.2, wait_fresh=True)
    assert [f.name for f in once.list_new()] == ["just-written.json"]


def test_dir_done_state_round_trips(tmp_path: Path) -> None:
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_bytes(b"{}")
        _old(tmp_path / name)
    src = DirSource(tmp_path)
    first = src.list_new()
    src.mark_done(first[:1])
    again = DirSource(tmp_path)
    again.restore(orjson.loads(orjson.dumps(src.state())))
    assert [f.name for f in again.list_new()] == ["b.json"]
    assert again.read(first[1]) == b"{}"


def test_checkpoint_is_atomic_and_versioned(tmp_path: Path) -> None:
    cp = Checkpoint(tmp_path / "sub" / "cp.json")
    assert cp.load() is None
    cp.save({"v": 1, "x": [1, 2]})
    assert cp.load() == {"v": 1, "x": [1, 2]}
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["cp.json"]  # no tmp left
    (tmp_path / "sub" / "cp.json").write_text('{"v": 7}')
    with pytest.raises(ValueError, match="not an agentstory cloudtrail checkpoint"):
        cp.load()


def test_doctests() -> None:
    assert doctest.testmod(sources_module).failed == 0


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://bucket") == ("bucket", "")
    assert parse_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b/")
    with pytest.raises(ValueError):
        parse_s3_uri("https://bucket")


# -- S3 --------------------------------------------------------------------------------------

@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    yield client
    client.close()


def trail_key(prefix: str, account: str, region: str, day: str, hhmm: str, n: int,
              org: str = "") -> str:
    y, m, d = day.split("-")
    org_part = f"{org}/" if org else ""
    return (f"{prefix}AWSLogs/{org_part}{account}/CloudTrail/{region}/{y}/{m}/{d}/"
            f"{account}_CloudTrail_{region}_{y}{m}{d}T{hhmm}Z_{n:016x}.json.gz")


def put_log(s3: Any, bucket: str, key: str, recs: list[dict[str, Any]]) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(orjson.dumps({"Records": recs})))


def make_bucket(s3: Any, name: str) -> str:
    s3.create_bucket(Bucket=name)
    return name


def one_record(t: str) -> list[dict[str, Any]]:
    return [r.s3_get_object(t, r.assumed_role(KEY), "corp", t)]


def test_s3_discovers_account_and_org_prefixes(s3: Any) -> None:
    bucket = make_bucket(s3, "trail-discover")
    keys = [
        trail_key("logs/", r.ACCOUNT, "us-west-2", "2026-11-21", "0520", 1),
        trail_key("logs/", r.ACCOUNT, "us-east-1", "2026-11-21", "0520", 2),
        trail_key("logs/", "444455556666", "eu-west-1", "2026-11-21", "0525", 3,
                  org="o-exampleorg1"),
    ]
    for key in keys:
        put_log(s3, bucket, key, one_record("2026-11-21T05:20:00Z"))
    # digests and insights are not logs
    s3.put_object(Bucket=bucket, Key=f"logs/AWSLogs/{r.ACCOUNT}/CloudTrail-Digest/us-west-2/"
                  "2026/11/21/x_CloudTrail-Digest_us-west-2_t_20261121T0520Z.json.gz", Body=b"")
    src = S3Source(s3, bucket, "logs")
    assert src.discover() == sorted([
        f"logs/AWSLogs/{r.ACCOUNT}/CloudTrail/us-east-1/",
        f"logs/AWSLogs/{r.ACCOUNT}/CloudTrail/us-west-2/",
        "logs/AWSLogs/o-exampleorg1/444455556666/CloudTrail/eu-west-1/",
    ])
    listed = src.list_new()
    # across regions in delivery-time order
    assert [f.name for f in listed] == [keys[1], keys[0], keys[2]]
    assert listed[0].uri == f"s3://{bucket}/{keys[1]}"
    assert orjson.loads(gzip.decompress(src.read(listed[2])))["Records"][0]["eventName"] \
        == "GetObject"


def test_s3_resume_neither_rereads_nor_skips(s3: Any, tmp_path: Path) -> None:
    bucket = make_bucket(s3, "trail-resume")
    day1 = [trail_key("", r.ACCOUNT, "us-west-2", "2026-11-20", f"23{m:02d}", m)
            for m in (40, 45, 50, 55)]
    for key in day1:
        put_log(s3, bucket, key, one_record("2026-11-20T23:40:00Z"))
    cp = Checkpoint(tmp_path / "cp.json")

    first = S3Source(s3, bucket)
    listed = first.list_new()
    assert [f.name for f in listed] == day1
    first.mark_done(listed[:2])  # "crash" after two files were published
    cp.save({"v": 1, "files": first.state()})

    # new deliveries arrive, one of them late (an older key than the newest done)
    day2 = [trail_key("", r.ACCOUNT, "us-west-2", "2026-11-21", f"00{m:02d}", m)
            for m in (0, 5)]
    late = trail_key("", r.ACCOUNT, "us-west-2", "2026-11-20", "2342", 99)
    for key in [*day2, late]:
        put_log(s3, bucket, key, one_record("2026-11-21T00:00:00Z"))

    second = S3Source(s3, bucket)
    second.restore(cp.load()["files"])  # type: ignore[index]
    listed = second.list_new()
    assert [f.name for f in listed] == sorted([*day1[2:], *day2, late], key=_order)
    second.mark_done(listed)
    assert second.list_new() == []
    cp.save({"v": 1, "files": second.state()})

    third = S3Source(s3, bucket)
    third.restore(cp.load()["files"])  # type: ignore[index]
    assert third.list_new() == []
    newer = trail_key("", r.ACCOUNT, "us-west-2", "2026-11-21", "0010", 7)
    put_log(s3, bucket, newer, one_record("2026-11-21T00:10:00Z"))
    assert [f.name for f in third.list_new()] == [newer]


def _order(key: str) -> str:
    return key.rpartition("_")[0].rpartition("_")[2] + key


def test_s3_floor_trails_by_lookback_and_start_after_is_used(s3: Any) -> None:
    bucket = make_bucket(s3, "trail-floor")
    keys = [trail_key("", r.ACCOUNT, "us-west-2", day, "1200", i)
            for i, day in enumerate(["2026-11-17", "2026-11-18", "2026-11-19", "2026-11-21"])]
    for key in keys:
        put_log(s3, bucket, key, one_record("2026-11-17T12:00:00Z"))
    src = S3Source(s3, bucket, lookback_days=1)
    src.mark_done(src.list_new())
    (group,) = src.state()["groups"].values()
    # everything before 2026/11/20 (newest day - 1) is folded into the floor
    assert group == {"floor": keys[2], "done": [keys[3]]}


def test_s3_since_bounds_the_first_listing(s3: Any) -> None:
    bucket = make_bucket(s3, "trail-since")
    keys = [trail_key("", r.ACCOUNT, "us-west-2", day, "1200", i)
            for i, day in enumerate(["2026-10-01", "2026-11-21"])]
    for key in keys:
        put_log(s3, bucket, key, one_record("2026-11-21T12:00:00Z"))
    src = S3Source(s3, bucket, since=date(2026, 11, 1))
    assert [f.name for f in src.list_new()] == [keys[1]]


async def test_cli_s3_run_and_resume(s3: Any, moto_endpoint: str, tmp_path: Path,
                                     pods_file: Path) -> None:
    from collectors.cloudtrail import cli
    from collectors.cloudtrail.collector import MemorySink

    from .conftest import RESEARCH_UID
    from .test_collector import cli_args

    bucket = make_bucket(s3, "trail-cli")
    put_log(s3, bucket, trail_key("trail/", r.ACCOUNT, "us-west-2", "2026-11-21", "0520", 1),
            [r.irsa_assume("2026-11-21T05:20:00Z", "research", "research-agent", KEY)])
    put_log(s3, bucket, trail_key("trail/", r.ACCOUNT, "us-west-2", "2026-11-21", "0525", 2),
            one_record("2026-11-21T05:21:00Z"))
    args = cli_args("--s3", f"s3://{bucket}/trail", "--endpoint-url", moto_endpoint,
                    "--region", "us-east-1", "--pods-file", str(pods_file),
                    "--checkpoint", str(tmp_path / "cp.json"))
    sink = MemorySink()
    assert await cli._run(args, sink) == 0
    assert [e.data["action"] for e in sink.envelopes] == [
        "AssumeRoleWithWebIdentity", "GetObject"]
    # a restart: nothing re-read; a new delivery is read once, and its call is still
    # attributed through the key the checkpoint remembered
    put_log(s3, bucket, trail_key("trail/", r.ACCOUNT, "us-west-2", "2026-11-21", "0530", 3),
            one_record("2026-11-21T05:29:00Z"))
    sink2 = MemorySink()
    assert await cli._run(args, sink2) == 0
    (env,) = sink2.envelopes
    assert env.data["record"]["eventTime"] == "2026-11-21T05:29:00Z"
    assert env.key == RESEARCH_UID
    sink3 = MemorySink()
    assert await cli._run(args, sink3) == 0
    assert sink3.envelopes == []
