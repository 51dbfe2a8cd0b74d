"""The collector loop with the in-memory sink: publish-then-checkpoint, resume, damage
isolation, and the CLI wiring (``configure``/``run``) on a directory."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from collectors.cloudtrail import cli
from collectors.cloudtrail.attribute import CloudAttributor
from collectors.cloudtrail.collector import CloudTrailCollector, MemorySink
from collectors.cloudtrail.pipeline import CloudTrailPipeline
from collectors.cloudtrail.sources import Checkpoint, DirSource
from collectors.pods import PodIndex

from . import records as r
from .conftest import RAG_UID, RESEARCH_UID

IRSA_KEY = "ASIAEXAMPLEIRSAKEY01"
PI_KEY = "ASIAPODIDENTITYKEY01"


def write(path: Path, recs: list[dict[str, Any]], *, how: str = "gz") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "jsonl":
        raw = b"\n".join(orjson.dumps(x) for x in recs) + b"\n"
    else:
        raw = orjson.dumps({"Records": recs})
        if how == "gz":
            raw = gzip.compress(raw)
    path.write_bytes(raw)
    os.utime(path, (1_700_000_000, 1_700_000_000))
    return path


def trail_dir(root: Path) -> Path:
    """Four files, the calls delivered *before* the assume events that explain them,
    a truncated gzip, and a file with one record of an unknown eventVersion."""
    write(root / "01-calls.json.gz", [
        r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(IRSA_KEY), "corp", "a.csv"),
        r.bedrock_invoke("2026-11-21T05:21:30Z", r.assumed_role(PI_KEY, role="pi-role")),
        r.node_role_call("2026-11-21T05:21:40Z"),
        r.iam_create_access_key("2026-11-21T05:21:50Z", r.iam_user()),
    ])
    write(root / "02-assumes.jsonl", [
        r.irsa_assume("2026-11-21T05:20:00Z", "research", "research-agent", IRSA_KEY),
        r.pod_identity_assume("2026-11-21T05:20:10Z", RAG_UID, "rag-indexer-5c6d7-abcde",
                              "rag", "rag", PI_KEY),
    ], how="jsonl")
    broken = gzip.compress(orjson.dumps({"Records": [
        r.s3_get_object("2026-11-21T05:22:00Z", r.assumed_role(IRSA_KEY), "corp", "lost")]}))
    (root / "03-truncated.json.gz").write_bytes(broken[:-20])
    os.utime(root / "03-truncated.json.gz", (1_700_000_000, 1_700_000_000))
    write(root / "04-more.json", [
        r.s3_get_object("2026-11-21T05:23:00Z", r.assumed_role(IRSA_KEY), "corp", "b.csv"),
        r.with_(r.s3_get_object("2026-11-21T05:23:01Z", r.assumed_role(IRSA_KEY), "corp",
                                "c.csv"), eventVersion="9.0"),
    ], how="json")
    return root


def collector(root: Path, pods: PodIndex, sink: MemorySink, cp: Path,
              **kw: Any) -> CloudTrailCollector:
    pipe = CloudTrailPipeline(CloudAttributor(pods), node="cloudtrail")
    return CloudTrailCollector(DirSource(root), pipe, sink, Checkpoint(cp),
                               **{"retry_backoff_s": (0.001, 0.001), **kw})


async def test_directory_end_to_end(tmp_path: Path, pod_index: PodIndex) -> None:
    root = trail_dir(tmp_path / "trail")
    sink = MemorySink()
    col = collector(root, pod_index, sink, tmp_path / "cp.json")
    await col.run(follow=False)
    by = {(e.data["action"], e.data["params"].get("key")): e for e in sink.envelopes}
    assert by[("GetObject", "a.csv")].key == RESEARCH_UID  # held, then attributed
    assert by[("GetObject", "a.csv")].data["attribution"]["held"] is True
    assert by[("GetObject", "b.csv")].key == RESEARCH_UID
    assert by[("InvokeModel", None)].key == RAG_UID
    assert by[("DescribeInstances", None)].data["attribution"]["via"] == "node-role"
    assert by[("CreateAccessKey", None)].key == f"arn:aws:iam::{r.ACCOUNT}:user/alice"
    assert len(sink.envelopes) == 7
    letters = [(k.decode(), orjson.loads(m)) for k, m in sink.dead_letters]
    assert [(k.rpartition("/")[2], m["field"]) for k, m in letters] == [
        ("03-truncated.json.gz", "file"), ("04-more.json", "eventVersion")]
    assert "truncated gzip" in letters[0][1]["reason"]
    assert col.pipeline.counts["rejected_read"] == 1
    assert col.pipeline.counts["rejected_record"] == 1


async def test_restart_resumes_without_reread_or_skip(tmp_path: Path,
                                                      pod_index: PodIndex) -> None:
    root = trail_dir(tmp_path / "trail")
    cp = tmp_path / "cp.json"
    sink = MemorySink()
    # batch per file: each file is published, then checkpointed
    first = collector(root, pod_index, sink, cp, batch_records=1)
    await first.poll()
    published = [e.data["event_id"] for e in sink.envelopes]
    assert len(published) == 7
    # a second process: nothing new, nothing re-read
    sink2 = MemorySink()
    second = collector(root, pod_index, sink2, cp, batch_records=1)
    assert second.restore()
    await second.poll()
    assert sink2.envelopes == [] and sink2.dead_letters == []
    # a new file with a call signed by a key issued before the restart: still attributed
    write(root / "05-later.json.gz", [
        r.s3_get_object("2026-11-21T05:30:00Z", r.assumed_role(IRSA_KEY), "corp", "d.csv")])
    await second.poll()
    (env,) = sink2.envelopes
    assert env.key == RESEARCH_UID and env.data["attribution"]["via"] == "irsa"
    assert env.data["event_id"] not in published


async def test_held_calls_survive_a_restart(tmp_path: Path, pod_index: PodIndex) -> None:
    root = tmp_path / "trail"
    write(root / "01.json.gz", [
        r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(IRSA_KEY), "corp", "a")])
    cp = tmp_path / "cp.json"
    sink = MemorySink()
    await collector(root, pod_index, sink, cp).poll()
    assert sink.envelopes == []  # held: waits for its assume event, in the checkpoint
    assert orjson.loads(cp.read_bytes())["attributor"]["held"][0][1] == IRSA_KEY
    write(root / "02.json.gz", [
        r.irsa_assume("2026-11-21T05:20:00Z", "research", "research-agent", IRSA_KEY)])
    sink2 = MemorySink()
    again = collector(root, pod_index, sink2, cp)
    again.restore()
    await again.poll()
    assert sorted(e.data["action"] for e in sink2.envelopes) == [
        "AssumeRoleWithWebIdentity", "GetObject"]
    assert all(e.key == RESEARCH_UID for e in sink2.envelopes)


async def test_checkpoint_waits_for_a_successful_flush(tmp_path: Path,
                                                       pod_index: PodIndex) -> None:
    root = trail_dir(tmp_path / "trail")
    cp = tmp_path / "cp.json"
    seen: list[bool] = []

    class Watching(MemorySink):
        async def flush(self) -> None:
            seen.append(cp.exists())
            await super().flush()

    sink = Watching(fail_next=2)  # the broker is away for two attempts
    col = collector(root, pod_index, sink, cp)
    await col.poll()
    assert col.counts["flush_retries"] == 2
    assert seen == [False, False, False]  # no checkpoint until a flush went through
    assert len(orjson.loads(cp.read_bytes())["files"]["done"]) == 4
    assert len(sink.envelopes) == 7


async def test_checkpoint_from_another_source_is_refused(tmp_path: Path,
                                                         pod_index: PodIndex) -> None:
    cp = tmp_path / "cp.json"
    Checkpoint(cp).save({"v": 1, "source": "s3://elsewhere/", "files": {}})
    (tmp_path / "trail").mkdir()
    col = collector(tmp_path / "trail", pod_index, MemorySink(), cp)
    with pytest.raises(ValueError, match="belongs to 's3://elsewhere/'"):
        col.restore()


def cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:1")
    parser.add_argument("--node", default="cloudtrail-test")
    parser.add_argument("--pods-file", default=None)
    parser.add_argument("--log-level", default="info")
    cli.configure(parser)
    return parser.parse_args(list(argv))


def test_cli_options() -> None:
    args = cli_args("--dir", "/x", "--grace-seconds", "60", "--node-role", "a",
                    "--node-role", "b", "--follow")
    assert args.dir == Path("/x") and args.s3 is None
    assert args.grace_seconds == 60.0 and args.node_role == ["a", "b"] and args.follow
    assert cli_args("--s3", "s3://b/p", "--since", "2026-11-01").since.isoformat() \
        == "2026-11-01"
    assert cli_args("--dir", "/x").follow is False
    with pytest.raises(SystemExit):
        cli_args("--dir", "/x", "--s3", "s3://b")


async def test_cli_run_on_a_directory(tmp_path: Path, pods_file: Path) -> None:
    root = trail_dir(tmp_path / "trail")
    args = cli_args("--dir", str(root), "--pods-file", str(pods_file),
                    "--checkpoint", str(tmp_path / "cp.json"))
    sink = MemorySink()
    assert await cli._run(args, sink) == 0
    assert len(sink.envelopes) == 7 and len(sink.dead_letters) == 2
    assert {e.node for e in sink.envelopes} == {"cloudtrail-test"}
    keys = {e.data["params"].get("key"): e.key for e in sink.envelopes}
    assert keys["a.csv"] == RESEARCH_UID
    # run again: the checkpoint says everything is done
    sink2 = MemorySink()
    assert await cli._run(args, sink2) == 0
    assert sink2.envelopes == [] and sink2.dead_letters == []


async def test_follow_picks_up_new_files_and_keeps_held_calls(
        tmp_path: Path, pod_index: PodIndex) -> None:
    root = tmp_path / "trail"
    root.mkdir()
    cp = tmp_path / "cp.json"
    sink = MemorySink()
    col = collector(root, pod_index, sink, cp)
    task = asyncio.create_task(col.run(follow=True, poll_s=0.01))
    write(root / "01.json.gz", [
        r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(PI_KEY), "b", "held"),
        r.iam_create_access_key("2026-11-21T05:21:10Z", r.iam_user())])
    for _ in range(1000):
        if sink.envelopes:
            break
        await asyncio.sleep(0.01)
    col.stop()
    await asyncio.wait_for(task, 30)
    # the IAM user's call went out; the held one stays held (saved, not drained)
    assert [e.data["action"] for e in sink.envelopes] == ["CreateAccessKey"]
    assert len(orjson.loads(cp.read_bytes())["attributor"]["held"]) == 1


async def test_cli_once_reads_files_written_a_moment_ago(tmp_path: Path,
                                                         pods_file: Path) -> None:
    root = tmp_path / "trail"
    root.mkdir()
    (root / "now.log").write_bytes(orjson.dumps({"Records": [
        r.iam_create_access_key("2026-11-21T05:21:50Z", r.iam_user())]}))
    args = cli_args("--dir", str(root), "--once", "--pods-file", str(pods_file))
    sink = MemorySink()
    assert await cli._run(args, sink) == 0
    assert [e.data["action"] for e in sink.envelopes] == ["CreateAccessKey"]


async def test_follow_survives_a_listing_that_fails(tmp_path: Path,
                                                    pod_index: PodIndex) -> None:
    """S3 or SQS away for a moment: the collector retries, it does not end."""
    root = tmp_path / "trail"
    root.mkdir()
    sink = MemorySink()
    col = collector(root, pod_index, sink, tmp_path / "cp.json",
                    retry_backoff_s=(0.001, 0.01))
    real = col.source.list_new
    failures = [OSError("connection reset")] * 2

    def flaky() -> list[Any]:
        if failures:
            raise failures.pop()
        return real()

    col.source.list_new = flaky  # type: ignore[method-assign]
    write(root / "01.json.gz", [r.iam_create_access_key("2026-11-21T05:21:10Z", r.iam_user())])
    task = asyncio.create_task(col.run(follow=True, poll_s=0.01))
    for _ in range(1000):
        if sink.envelopes:
            break
        await asyncio.sleep(0.01)
    col.stop()
    await asyncio.wait_for(task, 30)
    assert col.counts["list_errors"] == 2
    assert [e.data["action"] for e in sink.envelopes] == ["CreateAccessKey"]
