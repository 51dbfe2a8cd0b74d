"""``agentstory export`` / ``import`` on the embedded broker: round trip, time range."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import orjson

from topologies.export import export_topics, import_jsonl, parse_time, read_lines
from topologies.record import write_jsonl

T0 = 1_767_225_600_000  # ms


def _lines(topic: str, n: int) -> list[dict]:
    return [{"topic": topic, "key": f"pod-{i % 3}", "timestamp": T0 + i * 1000,
             "frame": [{"v": 1, "kind": "process.exec", "ts": (T0 + i * 1000) * 1_000_000,
                        "node": "n", "source": "kernel", "pod": {"uid": f"pod-{i % 3}"},
                        "data": {"i": i}}]} for i in range(n)]


def _strip(lines: list[dict]) -> list[tuple]:
    return sorted((m["key"], m["timestamp"], orjson.dumps(m["frame"])) for m in lines)


def test_round_trip_keeps_frames_keys_and_timestamps(kafka_bootstrap: str, tmp_path: Path
                                                     ) -> None:
    topic = f"eval-export-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "in.jsonl.gz"
    original = _lines("agentstory.raw.kernel.v1", 12)
    write_jsonl(src, original)
    imported = asyncio.run(import_jsonl(kafka_bootstrap, [src],
                                        topic_map={"agentstory.raw.kernel.v1": topic}))
    assert imported == 12
    out = tmp_path / "out.jsonl"
    exported = asyncio.run(export_topics(kafka_bootstrap, out, topics=[topic],
                                         idle_timeout_s=2.0))
    back = list(read_lines([out]))
    assert exported == 12
    assert {m["topic"] for m in back} == {topic}
    assert _strip(back) == _strip(original)
    # per key, the order of frames is kept (one key lives in one partition)
    for key in {m["key"] for m in original}:
        assert [m["timestamp"] for m in back if m["key"] == key] == \
            [m["timestamp"] for m in original if m["key"] == key]


def test_time_range_selects_by_timestamp(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = f"eval-range-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "in.jsonl"
    write_jsonl(src, _lines(topic, 10))
    asyncio.run(import_jsonl(kafka_bootstrap, [src]))
    out = tmp_path / "range.jsonl"
    n = asyncio.run(export_topics(kafka_bootstrap, out, topics=[topic],
                                  start_ms=T0 + 3000, end_ms=T0 + 7000, idle_timeout_s=2.0))
    assert n == 4
    assert sorted(m["frame"][0]["data"]["i"] for m in read_lines([out])) == [3, 4, 5, 6]


def test_parse_time() -> None:
    assert parse_time("2026-01-01T00:00:00Z") == T0
    assert parse_time(str(T0)) == T0
    assert parse_time(None) is None


def test_a_recording_moves_through_a_cluster_unchanged(kafka_bootstrap: str, tmp_path: Path
                                                       ) -> None:
    """import a committed recording under fresh topic names, export it back: the same
    frames, keys and timestamps."""
    from tests.eval.evaluate import RECORDINGS

    src = min(RECORDINGS.glob("dev/*/events.jsonl.gz"), key=lambda p: p.stat().st_size)
    original = list(read_lines([src]))
    suffix = uuid.uuid4().hex[:8]
    rename = {t: f"{t}-{suffix}" for t in {m["topic"] for m in original}}
    asyncio.run(import_jsonl(kafka_bootstrap, [src], topic_map=rename))
    out = tmp_path / "back.jsonl.gz"
    asyncio.run(export_topics(kafka_bootstrap, out, topics=sorted(rename.values()),
                              idle_timeout_s=2.0))
    back = list(read_lines([out]))
    assert _strip(back) == _strip(original)


def test_cli_import_then_export_a_time_range(kafka_bootstrap: str, tmp_path: Path) -> None:
    from topologies.cli import main

    topic = f"eval-cli-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "in.jsonl"
    write_jsonl(src, _lines("agentstory.raw.kernel.v1", 6))
    assert main(["import", str(src), "--bootstrap-servers", kafka_bootstrap, "--quiet",
                 "--rename", f"agentstory.raw.kernel.v1={topic}"]) == 0
    out = tmp_path / "out.jsonl.gz"
    assert main(["export", "--bootstrap-servers", kafka_bootstrap, "--quiet", "--out", str(out),
                 "--topic", topic, "--since", "2026-01-01T00:00:02Z",
                 "--idle-timeout", "2"]) == 0
    assert sorted(m["frame"][0]["data"]["i"] for m in read_lines([out])) == [2, 3, 4, 5]
