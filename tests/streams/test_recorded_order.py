"""The demo's recording (real collectors, real agents) read in the orders a worker that
catches up reads its topics: the final stories are the same.

The route's watermark logic is the worker's own (:class:`streams.watermarks.Watermarks`,
each topic one partition produced in full before it is read); each by-agent message
carries one raw frame, as ``route`` sends it. Without the route's pacing (which pauses a
partition read too far ahead) the agents' waiting buffers overflow on the widest skews,
so the skews here stay within the orders a flood gives.

Known limit: a partition the route has not read from yet is not waited for, so reading
the whole kernel topic before the first L7 message still loses the L7 → kernel links.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.content import load_content
from streams.engine import Message, StoryEngine, event_ref
from streams.events import decode_frame
from streams.watermarks import Watermarks
from topologies.export import read_lines
from topologies.worker import group_by_agent

RECORDING = Path(__file__).parents[1] / "recordings" / "dev" / "demo-support-injection"


def final_stories(lines: list[dict[str, Any]]) -> list[tuple[str, str, tuple[str, ...]]]:
    engine = StoryEngine(load_content())
    marks = Watermarks(engine.settings.lateness_ns, engine.settings.source_idle_ns)
    left = {line["topic"]: 0 for line in lines}
    for line in lines:
        left[line["topic"]] += 1
    states: dict[str, Any] = {}
    latest: dict[str, Any] = {}
    for offset, line in enumerate(lines):
        frame = decode_frame(orjson.dumps(line["frame"]))
        refs = [event_ref(line["topic"], 0, offset, i) for i in range(len(frame.events))]
        left[line["topic"]] -= 1  # all produced before: the rest of the topic is backlog
        for event in frame.events:
            marks.see(event, (line["topic"], 0), backlog=left[line["topic"]] > 0)
        for agent, (events, ids) in group_by_agent(frame.events, refs).items():
            state = states.setdefault(agent, engine.new_state(agent))
            message = Message(events, (line["topic"], 0, offset), marks.current(), ids)
            latest.update((s.uid, s) for s in engine.apply(state, message))
    end = Message([], None, {source: 2**62 for source in marks.newest})
    for state in states.values():
        latest.update((s.uid, s) for s in engine.apply(state, end))
    return sorted((s.uid, s.title, tuple(step.kind for step in s.steps))
                  for s in latest.values())


def chunked(topics: list[list[dict[str, Any]]], size: int) -> list[dict[str, Any]]:
    """Topics read alternately, ``size`` messages of each at a time (fetches)."""
    parts = [[t[i:i + size] for i in range(0, len(t), size)] for t in topics]
    return [line for group in itertools.zip_longest(*parts, fillvalue=[])
            for part in group for line in part]


@pytest.fixture(scope="module")
def lines() -> list[dict[str, Any]]:
    return list(read_lines([RECORDING / "events.jsonl.gz"]))


def test_the_demo_recording_gives_the_same_story_in_every_read_order(
        lines: list[dict[str, Any]]) -> None:
    by_source = {s: [line for line in lines if f".{s}." in line["topic"]]
                 for s in ("kernel", "l7", "cloud")}
    kernel, l7, cloud = by_source["kernel"], by_source["l7"], by_source["cloud"]
    expected = final_stories(lines)
    [(_uid, _title, kinds)] = expected
    assert {"process.exec", "net.connect", "llm.tool_call", "cloud.api"} <= set(kinds)
    for order in (chunked([l7, kernel, cloud], 20), chunked([kernel, l7, cloud], 50),
                  chunked([l7, kernel, cloud], 100), chunked([cloud, l7, kernel], 100),
                  l7 + kernel + cloud):
        assert sorted(map(id, order)) == sorted(map(id, lines))
        assert final_stories(order) == expected
