from __future__ import annotations

import gzip
import json

import orjson
import pytest

from collectors.cloudtrail.attribute import CloudAttributor
from collectors.cloudtrail.pipeline import CloudTrailPipeline, read_file, read_records
from collectors.pods import PodIndex

from . import records as r
from .conftest import RESEARCH_UID

KEY = "ASIAEXAMPLEIRSAKEY01"


def sample() -> list[dict[str, object]]:
    return [
        r.irsa_assume("2026-11-21T05:20:00Z", "research", "research-agent", KEY),
        r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(KEY), "corp", "a.csv"),
        r.iam_create_access_key("2026-11-21T05:22:00Z", r.iam_user()),
    ]


def as_records(recs: list[dict[str, object]]) -> bytes:
    return orjson.dumps({"Records": recs})


def as_lines(recs: list[dict[str, object]]) -> bytes:
    return b"\n".join(orjson.dumps(x) for x in recs) + b"\n"


@pytest.mark.parametrize("encode", [
    as_records,
    lambda recs: gzip.compress(as_records(recs)),
    as_lines,
    lambda recs: gzip.compress(as_lines(recs)),
    lambda recs: orjson.dumps(recs),
    lambda recs: orjson.dumps({"Events": [
        {"EventId": x["eventID"], "CloudTrailEvent": orjson.dumps(x).decode()} for x in recs]}),
])
def test_read_records_shapes(encode: object) -> None:
    recs = sample()
    got, rejected = read_records("f", encode(recs))  # type: ignore[operator]
    assert rejected == []
    assert got == recs


def test_single_record_object() -> None:
    rec = sample()[0]
    assert read_records("f", orjson.dumps(rec)) == ([rec], [])


def test_truncated_gzip_is_rejected_and_complete_lines_salvaged() -> None:
    recs = sample()
    raw = gzip.compress(as_lines(recs))
    cut = raw[: len(raw) - 30]
    got, rejected = read_records("logs/x.jsonl.gz", cut)
    assert len(rejected) == 1
    assert rejected[0].field == "file"
    assert "truncated gzip" in rejected[0].reason and "logs/x.jsonl.gz" in rejected[0].reason
    assert rejected[0].original == cut
    assert got == recs[:2]  # the lines that came out whole still flow


def test_truncated_records_file_yields_nothing_but_the_reason() -> None:
    raw = gzip.compress(as_records(sample()))
    got, rejected = read_records("x.json.gz", raw[: len(raw) // 2])
    assert got == []
    assert [x.field for x in rejected] == ["file"]


def test_bad_line_is_rejected_others_flow() -> None:
    recs = sample()
    raw = as_lines(recs[:1]) + b'{"eventVersion": "1.08", "trunc\n' + as_lines(recs[1:])
    got, rejected = read_records("x.jsonl", raw)
    assert got == recs
    assert len(rejected) == 1
    assert rejected[0].field == "line" and rejected[0].index == 1
    assert "line 2 is not JSON" in rejected[0].reason


def test_not_json_at_all() -> None:
    got, rejected = read_records("x.json", b"<html>nope</html>")
    assert got == []
    assert rejected[0].field == "file"


def test_pipeline_builds_envelopes_and_dead_letters(pod_index: PodIndex) -> None:
    recs = sample()
    bad_version = r.with_(recs[1], eventVersion="2.0", eventID="bad-version")
    missing = r.with_(recs[1], eventID="missing-source")
    del missing["eventSource"]
    pipe = CloudTrailPipeline(CloudAttributor(pod_index), node="cloudtrail-a")
    result = pipe.process_file("s3://b/x.json.gz",
                               gzip.compress(as_records([*recs, bad_version, missing])))
    assert result.records == 5
    envs = result.envelopes
    assert [e.data["action"] for e in envs] == [
        "AssumeRoleWithWebIdentity", "GetObject", "CreateAccessKey"]
    assert all(e.kind == "cloud.api" and e.source == "cloud" and e.node == "cloudtrail-a"
               for e in envs)
    assert envs[1].key == RESEARCH_UID
    assert envs[2].key == f"arn:aws:iam::{r.ACCOUNT}:user/alice"
    assert envs[1].ts == 1795238460 * 10**9
    assert len(result.dead_letters) == 2
    letters = [orjson.loads(msg) for _, msg in result.dead_letters]
    assert {key for key, _ in result.dead_letters} == {b"s3://b/x.json.gz"}
    assert letters[0]["stage"] == "cloudtrail.normalize"
    assert letters[0]["field"] == "eventVersion" and letters[0]["index"] == 3
    assert "unknown major version" in letters[0]["reason"]
    assert orjson.loads(letters[0]["original"])["eventID"] == "bad-version"
    assert letters[1]["field"] == "eventSource" and "required" in letters[1]["reason"]
    assert pipe.counts == {"files": 1, "records": 5, "envelopes": 3, "rejected_read": 0,
                           "rejected_record": 2, "rejected_internal": 0,
                           "records_lost": 0, "duplicates": 0}


def many(n: int) -> list[dict[str, object]]:
    return [r.s3_get_object(f"2026-11-21T05:{i // 60:02d}:{i % 60:02d}Z", r.assumed_role(KEY),
                            "corp", f"obj-{i}") for i in range(n)]


@pytest.mark.parametrize("how", ["zcat", "cat", "cat-newlines", "gzip-members"])
def test_concatenated_records_documents(how: str) -> None:
    """``zcat *.json.gz > all.json`` (CloudTrail files end without a newline), ``cat``
    of plain files, and one gzip file holding several members."""
    recs = many(7)
    docs = [as_records(recs[:3]), as_records(recs[3:5]), as_records(recs[5:])]
    raw = {
        "zcat": b"".join(gzip.decompress(gzip.compress(d)) for d in docs),
        "cat": b"".join(docs),
        "cat-newlines": b"\n".join(docs) + b"\n",
        "gzip-members": b"".join(gzip.compress(d) for d in docs),
    }[how]
    got, rejected = read_records("all.json", raw)
    assert rejected == []
    assert got == recs


def pretty(recs: list[dict[str, object]], **kw: object) -> str:
    return json.dumps({"Records": recs}, indent=2, **kw)  # type: ignore[arg-type]


def test_pretty_printed_file_with_one_syntax_error_recovers_the_rest() -> None:
    recs = many(40)
    text = pretty(recs)
    # a hand edit gone wrong in record 17: a value's closing quote removed
    needle = '"key": "obj-17"'
    at = text.index(needle)
    broken = (text[:at] + '"key": "obj-17' + text[at + len(needle):]).encode()
    result = read_file("ct/edited.json", broken)
    assert result.records == recs[:17] + recs[18:]
    assert result.lost == 1
    (letter,) = result.rejected
    assert letter.field == "file"
    start = broken.rindex(b'{\n      "eventVersion"', 0, broken.index(b'"obj-17'))
    assert f"ct/edited.json: JSON damaged at byte {start} " in letter.reason
    assert "about 1 record(s) lost, 39 recovered" in letter.reason


def test_sorted_keys_pretty_print_resyncs_on_indentation() -> None:
    """``jq -S`` output: records do not start with eventVersion."""
    recs = many(10)
    text = pretty(recs, sort_keys=True)
    at = text.index('"obj-4"')
    broken = (text[:at] + '"obj-4' + text[at + 7:]).encode()
    result = read_file("sorted.json", broken)
    assert result.records == recs[:4] + recs[5:]
    assert len(result.rejected) == 1 and result.lost == 1


def test_two_damaged_records_and_a_damaged_second_document() -> None:
    recs = many(12)
    first = pretty(recs[:6]).replace('"obj-1"', '"obj-1', 1).replace('"obj-4"', '"obj-4" x', 1)
    second = as_records(recs[6:]).decode().replace('"obj-9"', 'obj-9"', 1)
    result = read_file("mixed.json", (first + second).encode())
    assert result.records == [recs[i] for i in (0, 2, 3, 5, 6, 7, 8, 10, 11)]
    assert result.lost == 3
    (letter,) = result.rejected
    assert "3 damaged span(s)" in letter.reason


def test_truncated_gzip_of_a_records_document_recovers_whole_records() -> None:
    recs = many(30)
    raw = gzip.compress(as_records(recs))
    result = read_file("x.json.gz", raw[: len(raw) * 2 // 3])
    assert 0 < len(result.records) < 30
    assert result.records == recs[: len(result.records)]
    (letter,) = result.rejected
    assert "truncated gzip" in letter.reason and "JSON damaged at byte" in letter.reason
