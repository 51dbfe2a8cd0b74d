"""``agentstory replay``: regenerate stories from the raw topics, for tuning.

Reads the raw topics (a time range of them) without joining any consumer group (so the
live worker is untouched), runs the same story engine as the worker with the settings and
detection content given (``--params FILE`` holds them as data), and prints the stories or
publishes them to another topic. The messages are read whole, then fed in one order that
depends only on them (timestamp, topic, partition, offset), so two replays of the same
input give the same bytes. Try a new learning period or an allow-list against last
week's traffic before rolling it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaProducer

from streams.admin import ensure_topics
from streams.content import DetectionContent, load_content
from streams.engine import SECOND_NS, EngineSettings, StoryEngine, event_ref
from streams.events import decode_frame
from streams.kafka_config import PLAINTEXT, KafkaSecurity
from streams.limits import size_limits
from streams.replay import Replayer
from streams.stories import Story
from streams.topics import PARTITIONS, RAW_TOPICS, TopicSpec
from topologies.export import read_messages

__all__ = ["load_params", "replay_topics"]

_SETTINGS = {"learning_seconds": ("learning_ns", SECOND_NS), "min_events": ("min_events", 1),
             "evidence": ("evidence_policy", None), "baseline": ("baseline", None)}


def load_params(path: Path, base: EngineSettings,
                lists: Mapping[str, list[str]] | None = None,
                ) -> tuple[EngineSettings, DetectionContent]:
    """Settings and content from a YAML file: ``learning_seconds``, ``min_events``,
    ``evidence``, ``baseline``, and ``lists`` (tuning hooks that replace the catalogue's
    lists). An unknown key is an error, not a silent default."""
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping")
    unknown = set(doc) - {*_SETTINGS, "lists"}
    if unknown:
        raise ValueError(f"{path}: unknown parameters {sorted(unknown)} "
                         f"(known: {sorted([*_SETTINGS, 'lists'])})")
    changes: dict[str, Any] = {}
    for key, (field, scale) in _SETTINGS.items():
        if key in doc:
            changes[field] = int(doc[key] * scale) if scale else doc[key]
    settings = EngineSettings(**{**{f: getattr(base, f) for f in base.__dataclass_fields__},
                                 **changes})
    return settings, load_content(overrides={**(lists or {}), **(doc.get("lists") or {})})


async def replay_topics(
    bootstrap_servers: str, settings: EngineSettings, content: DetectionContent, *,
    idle_timeout_s: float = 5.0, publish_to: str | None = None, start_ms: int | None = None,
    end_ms: int | None = None, progress: bool = False, security: KafkaSecurity = PLAINTEXT,
) -> tuple[list[Story], Replayer]:
    """Latest version of every story the raw topics (in [start, end)) produce, and the
    replay's counters; every version is published to ``publish_to`` when given."""
    from tqdm import tqdm

    messages = []
    with tqdm(desc="read", unit="msg", disable=not progress) as bar:
        async for msg in read_messages(bootstrap_servers, [t.name for t in RAW_TOPICS],
                                       start_ms=start_ms, end_ms=end_ms,
                                       idle_timeout_s=idle_timeout_s, security=security):
            messages.append((msg.timestamp, msg.topic, msg.partition, msg.offset, msg.value))
            bar.update(1)
    messages.sort(key=lambda m: m[:4])
    replayer = Replayer(StoryEngine(content, settings))
    stories: list[Story] = []
    for _ts, topic, partition, offset, value in tqdm(messages, desc="replay", unit="msg",
                                                     disable=not progress):
        events = decode_frame(value).events
        refs = [event_ref(topic, partition, offset, i) for i in range(len(events))]
        stories.extend(replayer.feed(events, refs))
    stories.extend(replayer.finish())
    if publish_to:
        await ensure_topics(bootstrap_servers, security=security, specs=[TopicSpec(
            publish_to, PARTITIONS, "story uid", "compact", -1, "replayed stories")])
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all",
                                    **size_limits().producer_kwargs(),
                                    **security.aiokafka_kwargs())
        await producer.start()
        try:
            for story in stories:
                await producer.send(publish_to, orjson.dumps(story.to_ocsf()),
                                    key=story.uid.encode())
            await producer.flush()
        finally:
            await producer.stop()
    return Replayer.latest(stories), replayer
