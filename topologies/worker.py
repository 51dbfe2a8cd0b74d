"""The Faust worker: raw frames in, stories out.

Two thin agents around the pure :class:`~streams.detect.StoryEngine`:

- ``route`` reads the raw topics (keyed by pod), sends contract breakers to the
  dead-letter topic, and re-frames the good events per agent onto an internal topic keyed
  by agent (a framed ``group_by``: one message per agent per frame, not per event).
- ``detect`` reads that topic with the per-agent state table (changelog-backed, written
  by assignment), runs the engine, and publishes story versions and profile summaries.

No Faust windowed tables: they expire on wall-clock, and stories must be the same in a
replay. The engine keeps its own event-time state.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import faust
import orjson

from streams.content import DetectionContent, load_content
from streams.detect import AgentState, EngineSettings, StoryEngine, agent_of_event
from streams.events import Envelope, Rejected, dead_letter, decode_frame, encode_frame
from streams.topics import (
    BY_AGENT,
    DEADLETTER,
    PARTITIONS,
    PROFILES,
    RAW_TOPICS,
    STORIES,
    WORKER_APP_ID,
    TopicSpec,
    changelog,
)

__all__ = ["STATE_TABLE", "WorkerStats", "build_app", "worker_topics"]

log = logging.getLogger(__name__)

STATE_TABLE = "agent_state"


def worker_topics(app_id: str = WORKER_APP_ID) -> list[TopicSpec]:
    """Topics the worker needs beyond the catalogue, to create before Faust starts."""
    return [changelog(app_id, STATE_TABLE)]


@dataclass
class WorkerStats:
    frames: int = 0
    events: int = 0
    dead_letters: int = 0
    unattributed: int = 0
    stories: int = 0


def group_by_agent(events: Iterable[Envelope]) -> dict[str, list[Envelope]]:
    groups: dict[str, list[Envelope]] = defaultdict(list)
    for event in events:
        agent = agent_of_event(event)
        if agent is not None:
            groups[agent].append(event)
    return groups


def _summary_key(engine: StoryEngine, state: AgentState) -> tuple[str, int]:
    """What a profile summary shows changing: the phase and the learned set's size."""
    return engine.phase(state), len(state.profile.executables)


def build_app(
    bootstrap_servers: str, *, settings: EngineSettings | None = None,
    content: DetectionContent | None = None, app_id: str = WORKER_APP_ID,
    session_timeout_s: float = 10.0,
) -> faust.App:
    app = faust.App(
        app_id,
        broker=[f"kafka://{s.strip()}" for s in bootstrap_servers.split(",")],
        store="memory://",
        topic_partitions=PARTITIONS,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        table_cleanup_interval=3600.0,
        # Faust's 60 s default makes a group join wait 30 s on tansu; 10 s is Kafka's own
        # default and still far above the time one frame takes to process.
        broker_session_timeout=session_timeout_s,
    )
    engine = StoryEngine(content or load_content(), settings)
    stats = WorkerStats()

    def raw_topic(spec: TopicSpec) -> faust.TopicT:
        return app.topic(spec.name, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw",
                         partitions=spec.partitions)

    raw = app.topic(*(s.name for s in RAW_TOPICS), key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
    by_agent = raw_topic(BY_AGENT)
    stories = raw_topic(STORIES)
    profiles = raw_topic(PROFILES)
    deadletter = raw_topic(DEADLETTER)
    # Values are plain JSON (the changelog's default codec); written back by assignment.
    state = app.Table(STATE_TABLE, default=None, partitions=PARTITIONS)

    async def reject(items: Iterable[Rejected], stage: str, message: Any) -> None:
        for item in items:
            stats.dead_letters += 1
            await deadletter.send(key=message.key, value=dead_letter(
                item, stage=stage, topic=message.topic, partition=message.partition,
                offset=message.offset, key=message.key))

    @app.agent(raw)
    async def route(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            try:
                frame = decode_frame(event.value)
                stats.frames += 1
                stats.events += len(frame.events)
                await reject(frame.rejected, "decode", message)
                stats.unattributed += sum(1 for e in frame.events if e.pod is None)
                groups = group_by_agent(e for e in frame.events if engine.wants(e))
                for agent, events in groups.items():
                    await by_agent.send(key=agent.encode(), value=encode_frame(events))
            except Exception as exc:  # a worker never dies on input
                log.exception("route failed on %s[%d]@%d", message.topic, message.partition,
                              message.offset)
                await reject([Rejected(f"route failed: {exc!r}", "frame", event.value)],
                             "route", message)

    @app.agent(by_agent)
    async def detect(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            agent = event.key.decode()
            try:
                current = state.get(agent)
                agent_state = (AgentState.from_dict(current) if current
                               else engine.new_state(agent))
                before = _summary_key(engine, agent_state)
                frame = decode_frame(event.value)
                await reject(frame.rejected, "detect", message)
                for envelope in frame.events:
                    for story in engine.process(agent_state, envelope):
                        stats.stories += 1
                        await stories.send(key=story.uid.encode(),
                                           value=orjson.dumps(story.to_ocsf()))
                state[agent] = agent_state.to_dict()
                after = _summary_key(engine, agent_state)
                if after != before:
                    await profiles.send(key=agent.encode(),
                                        value=orjson.dumps(profile_summary(agent_state, after[0])))
            except Exception as exc:
                log.exception("detect failed for agent %s", agent)
                await reject([Rejected(f"detect failed: {exc!r}", "frame", event.value)],
                             "detect", message)

    @app.timer(interval=60.0)
    async def report() -> None:
        log.info("worker: %s", asdict(stats))

    return app


def profile_summary(state: AgentState, phase: str) -> dict[str, Any]:
    profile = state.profile
    return {"agent": profile.agent, "phase": phase, "first_ts": profile.first_ts,
            "last_ts": profile.last_ts, "execs": profile.execs,
            "executables": sorted(profile.executables), "flagged": sorted(profile.flagged)}
