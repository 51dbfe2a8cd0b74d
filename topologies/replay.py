"""``agentstory replay``: regenerate stories from the raw topics, for tuning.

Reads the raw topics from the beginning without joining any consumer group (so the live
worker is untouched), runs the same story engine as the worker with the settings and
detection content given, and prints the stories or publishes them to another topic. Try
a new learning period or an allow-list against last week's traffic before rolling it out.
"""

from __future__ import annotations

import contextlib
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.admin import ensure_topics
from streams.content import DetectionContent
from streams.engine import EngineSettings, StoryEngine, event_ref
from streams.events import decode_frame
from streams.kafka_config import PLAINTEXT, KafkaSecurity
from streams.replay import Replayer
from streams.stories import Story
from streams.topics import PARTITIONS, RAW_TOPICS, TopicSpec

__all__ = ["replay_topics"]


async def replay_topics(
    bootstrap_servers: str, settings: EngineSettings, content: DetectionContent, *,
    idle_timeout_s: float = 5.0, publish_to: str | None = None,
    security: KafkaSecurity = PLAINTEXT,
) -> tuple[list[Story], Replayer]:
    """Latest version of every story the raw topics produce, and the replay's counters.

    The end of the input is when no message arrived for ``idle_timeout_s`` (tansu's end
    offsets count record batches, not records, so they cannot bound the read).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None,
                                **security.aiokafka_kwargs())
    await consumer.start()
    replayer = Replayer(StoryEngine(content, settings))
    stories: list[Story] = []
    try:
        partitions = [TopicPartition(spec.name, p) for spec in RAW_TOPICS
                      for p in sorted(consumer.partitions_for_topic(spec.name) or [])]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        last = time.monotonic()
        while time.monotonic() - last < idle_timeout_s:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                last = time.monotonic()
                for message in messages:
                    events = decode_frame(message.value).events
                    refs = [event_ref(message.topic, message.partition, message.offset, i)
                            for i in range(len(events))]
                    stories.extend(replayer.feed(events, refs))
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    stories.extend(replayer.finish())
    latest = Replayer.latest(stories)
    if publish_to:
        await ensure_topics(bootstrap_servers, security=security, specs=[TopicSpec(
            publish_to, PARTITIONS, "story uid", "compact", -1, "replayed stories")])
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all",
                                    **security.aiokafka_kwargs())
        await producer.start()
        try:
            for story in stories:
                await producer.send(publish_to, orjson.dumps(story.to_ocsf()),
                                    key=story.uid.encode())
            await producer.flush()
        finally:
            await producer.stop()
    return latest, replayer
