"""The Faust worker: raw frames in, stories out.

Two thin agents around the pure :class:`~streams.engine.StoryEngine`:

- ``route`` reads the raw topics (keyed by pod), sends contract breakers to the
  dead-letter topic, and re-frames the good events per agent onto an internal topic keyed
  by agent (one message per agent per frame), stamped with its origin, each event's raw id
  and the per-source watermarks; collector heartbeats go to every partition as ticks, so
  idle partitions still learn and close stories on event time.
- ``detect`` reads that topic with the per-agent state table (changelog-backed, written
  back by assignment once per message), runs the engine, and publishes story versions and
  profile summaries.

No Faust windowed tables: they expire on wall-clock, and stories must be the same in a
replay. The engine keeps its own event-time state.
"""

from __future__ import annotations

import logging
import time
import types
from collections import OrderedDict, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import faust
import orjson
from faust.types import TP

from models.exports.facts import profile_record
from streams.byagent import decode_message, encode_message
from streams.content import DetectionContent, load_content
from streams.engine import (
    AgentState,
    EngineSettings,
    Message,
    StoryEngine,
    agent_of_event,
    event_ref,
)
from streams.events import Envelope, InvalidEvent, Rejected, decode_frame
from streams.kafka_config import PLAINTEXT, KafkaSecurity
from streams.limits import Oversized, SizeLimits, bounded_dead_letter, fit_json, size_limits
from streams.reframe import reframe
from streams.topics import (
    BY_AGENT,
    DEADLETTER,
    DISPOSITIONS,
    PARTITIONS,
    PROFILES,
    RAW_TOPICS,
    STORIES,
    WORKER_APP_ID,
    TopicSpec,
    changelog,
)
from streams.watermarks import Watermarks
from topologies.health import watch_app
from topologies.metrics import WorkerMetrics
from topologies.partitions import agent_partition

__all__ = ["STATE_TABLE", "WorkerStats", "build_app", "worker_topics"]

log = logging.getLogger(__name__)

STATE_TABLE = "agent_state"
TICK_KEY = b"__tick__"
LIVE_AGENTS = 10_000  # decoded agent states kept in memory (the table holds them all)
# An agent's state is one changelog message: kept under the producer's request size by
# taking waiting events early (a flood that reads one topic far ahead of another).
STATE_MAX_BYTES = 900_000
_SECOND = 1_000_000_000
READ_AHEAD_NS = 10 * _SECOND  # event time a source may be read past the slowest one
RECENT_S = 2.0  # a partition read from this recently (wall clock) may have more coming


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
    ticks: int = 0
    redelivered: int = 0


def group_by_agent(events: list[Envelope], refs: list[str]) -> dict[str, tuple[list[Envelope],
                                                                          list[str]]]:
    groups: dict[str, tuple[list[Envelope], list[str]]] = defaultdict(lambda: ([], []))
    for event, ref in zip(events, refs, strict=True):
        agent = agent_of_event(event)
        if agent is not None:
            groups[agent][0].append(event)
            groups[agent][1].append(ref)
    return groups


def _raw_of(event: Envelope) -> bytes:
    """The event's bytes for its dead letter (one nested too deep to write: its repr)."""
    try:
        return event.to_json()
    except TypeError:
        return repr(event.to_dict()).encode()


def limit_fetch_wait(max_wait_ms: int) -> None:
    """Make Faust's consumer park a fetch at most ``max_wait_ms`` (Faust hard-codes 1500).

    Why: tansu does not answer a parked fetch when data arrives, it waits out the whole
    max wait (measured here: 700 ms mean from produce to receive with 1500, under 35 ms
    with 100), and the worker has two hops (raw → route → by-agent → detect). Against
    Apache Kafka a long poll returns as soon as data arrives; a short wait only adds
    empty fetches while idle.
    """
    from faust.transport.drivers import aiokafka as driver

    real = driver.aiokafka
    if getattr(real, "agentstory_max_wait_ms", None) == max_wait_ms:
        return

    class _Consumer(real.AIOKafkaConsumer):  # type: ignore[misc,name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", 1500),
                                              max_wait_ms)
            super().__init__(*args, **kwargs)

    shim = types.SimpleNamespace(**{k: getattr(real, k) for k in dir(real)
                                    if not k.startswith("__")})
    shim.AIOKafkaConsumer = _Consumer
    shim.agentstory_max_wait_ms = max_wait_ms
    driver.aiokafka = shim


async def fetching(app: faust.App, tps: set[TP], *, pause: bool) -> None:
    """Pause or resume fetching ``tps`` in the Kafka client itself.

    Why not Faust's ``pause_partitions``: it drops the records of a paused partition
    that were already fetched in the batch being delivered, and the client's position has
    moved past them (they are lost). The client's own pause keeps its position, so
    unreturned records are fetched again on resume. The client lives in Faust's consumer
    thread: the call runs there.
    """
    from aiokafka import TopicPartition

    thread = app.consumer._thread  # Faust's consumer thread (no public handle)
    parts = [TopicPartition(tp.topic, tp.partition) for tp in tps]

    async def apply() -> None:
        client = thread._ensure_consumer()
        for part in parts:
            if part in client.assignment():
                (client.pause if pause else client.resume)(part)

    await thread.call_thread(apply)


def build_app(
    bootstrap_servers: str, *, settings: EngineSettings | None = None,
    content: DetectionContent | None = None, app_id: str = WORKER_APP_ID,
    session_timeout_s: float = 10.0, fetch_max_wait_ms: int = 100, store: str = "memory://",
    security: KafkaSecurity | None = None, metrics: WorkerMetrics | None = None,
    limits: SizeLimits | None = None,
) -> faust.App:
    """The worker app; its metrics (``/metrics``, readiness) are ``app.agentstory_metrics``."""
    limit_fetch_wait(fetch_max_wait_ms)
    limits = limits or size_limits()  # AGENTSTORY_MAX_MESSAGE_BYTES
    budget = limits.value_bytes
    app = faust.App(
        app_id,
        broker=[f"kafka://{s.strip()}" for s in bootstrap_servers.split(",")],
        # memory:// rebuilds the tables from their changelogs at start; rocksdb:// (with
        # rocksdict) keeps them on disk when the state outgrows memory.
        store=store,
        topic_partitions=PARTITIONS,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        table_cleanup_interval=3600.0,
        # Faust's 60 s default makes a group join wait 30 s on tansu; 10 s is Kafka's own
        # default and still far above the time one frame takes to process.
        broker_session_timeout=session_timeout_s,
        # aiokafka holds one batch per partition: with Faust's 16 KB batches, every
        # changelog write (an agent's state is tens of KB) waited for the previous one's
        # round trip to the broker (measured: ~300 messages/s). One batch can now carry
        # many messages, up to the request size.
        producer_max_batch_size=1_000_000,
        producer_linger=0.002,
        broker_credentials=(security or PLAINTEXT).faust_credentials(),  # TLS / SASL
        **limits.faust_settings(),  # request and fetch sizes from the one size setting
    )
    engine = StoryEngine(content or load_content(), settings)
    obs = metrics or WorkerMetrics()
    app.agentstory_metrics = obs
    stats = WorkerStats()
    marks = Watermarks(engine.settings.lateness_ns, engine.settings.source_idle_ns,
                       recent_s=RECENT_S)
    paused: set[TP] = set()
    last_tick: dict[str, int] = {}
    stamped: dict[str, int] = {}  # the watermarks last sent downstream
    last_read = [0.0]  # when route last read a raw message (monotonic)

    def raw_topic(spec: TopicSpec) -> faust.TopicT:
        return app.topic(spec.name, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw",
                         partitions=spec.partitions)

    raw = app.topic(*(s.name for s in RAW_TOPICS), key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
    by_agent = raw_topic(BY_AGENT)
    # Both keyed by agent with the same partitions: a verdict meets the agent's state.
    detect_input = app.topic(BY_AGENT.name, DISPOSITIONS.name, key_type=bytes,
                             value_type=bytes, key_serializer="raw", value_serializer="raw")
    stories = raw_topic(STORIES)
    profiles = raw_topic(PROFILES)
    deadletter = raw_topic(DEADLETTER)
    # Values are JSON bytes encoded here with orjson (Faust's default codec, the stdlib's
    # json, costs milliseconds on a profile); written back by assignment once per message.
    state = app.Table(STATE_TABLE, default=None, partitions=PARTITIONS, value_type=bytes)
    watch_app(app, obs, table=state)
    # The decoded states of the agents this worker holds, so a message costs one encode
    # (the changelog write) instead of a decode and an encode. Dropped whole on every
    # rebalance: the table (restored from the changelog) is the truth.
    live: OrderedDict[str, AgentState] = OrderedDict()

    @app.on_partitions_revoked.connect
    async def _forget(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        live.clear()

    def load(agent: str) -> AgentState:
        agent_state = live.get(agent)
        if agent_state is None:
            current = state.get(agent)
            agent_state = (AgentState.from_dict(orjson.loads(current)) if current
                           else engine.new_state(agent))
        live[agent] = agent_state
        live.move_to_end(agent)
        while len(live) > LIVE_AGENTS:
            live.popitem(last=False)
        return agent_state

    # The state's own bound, from the message size setting (900 KB with the default).
    state_max = min(budget, max(STATE_MAX_BYTES, budget * 9 // 10))

    def save(agent: str, agent_state: AgentState) -> list[Any]:
        """Write the agent's state back; stories of waiting events taken early to fit."""
        found: list[Any] = []
        encoded = orjson.dumps(agent_state.to_dict())
        while len(encoded) > state_max and agent_state.waiting:
            found += engine.release_early(agent_state, max(1, len(agent_state.waiting) // 2))
            encoded = orjson.dumps(agent_state.to_dict())
        if len(encoded) > budget:  # the changelog would refuse it: the message is refused
            raise Oversized(f"oversized: agent state of {len(encoded)} bytes over the "
                            f"{budget}-byte message limit")
        state[agent] = encoded
        obs.agent_state(agent_state, len(encoded))
        return found

    async def pace(now: float) -> None:
        """Pause the raw partitions of a source read too far ahead of the slowest source
        still being read, resume them once it is half as far: a flood or a restart then
        reads the sources side by side in event time, and the agents' waiting events stay
        few."""
        ahead = {TP(*part) for part in marks.ahead(READ_AHEAD_NS, now)}
        resume = paused - {TP(*part) for part in marks.ahead(READ_AHEAD_NS // 2, now)}
        if ahead - paused:
            await fetching(app, ahead - paused, pause=True)
        if resume:
            await fetching(app, resume, pause=False)
        paused.difference_update(resume)
        paused.update(ahead)

    async def reject(items: list[Rejected], stage: str, message: Any) -> None:
        for item in items:
            stats.dead_letters += 1
            obs.dead_letter(stage, item.reason, item.field)
            # Cut and hashed when large: the letter must not fail on the input's size.
            await deadletter.send(key=(message.key or b"")[:1024] or None,
                                  value=bounded_dead_letter(
                item, budget, stage=stage, topic=message.topic, partition=message.partition,
                offset=message.offset, key=message.key))

    async def tick(source: str, ts: int) -> None:
        """A heartbeat: every partition advances (at most once per second of event time)."""
        if ts - last_tick.get(source, 0) < _SECOND:
            return
        last_tick[source] = ts
        await broadcast(stamp(time.monotonic()))

    def stamp(now: float) -> dict[str, int]:
        """The watermarks to stamp on a message now (remembered: a quiet tick is sent
        only when they moved since)."""
        stamped.clear()
        stamped.update(marks.current(now))
        return dict(stamped)

    async def broadcast(watermarks: dict[str, int]) -> None:
        value = encode_message(Message([], watermarks=watermarks))
        for partition in range(BY_AGENT.partitions):
            await by_agent.send(key=TICK_KEY, value=value, partition=partition)

    @app.agent(raw)
    async def route(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            t0 = time.perf_counter()
            try:
                frame = decode_frame(event.value)
                stats.frames += 1
                stats.events += len(frame.events)
                obs.frame(message.topic, frame.events)
                await reject(frame.rejected, "decode", message)
                refs = [event_ref(message.topic, message.partition, message.offset, i)
                        for i in range(len(frame.events))]
                tp = TP(message.topic, message.partition)
                backlog = message.offset + 1 < (app.consumer.highwater(tp) or 0)
                now = last_read[0] = time.monotonic()
                for e in frame.events:
                    marks.see(e, tp, backlog=backlog, now=now)
                await pace(now)
                stats.unattributed += sum(1 for e in frame.events if agent_of_event(e) is None
                                          and e.kind != "collector.stats")
                origin = (message.topic, message.partition, message.offset)
                watermarks = stamp(now)  # one frame, one reading of the watermarks
                for agent, (events, ids) in group_by_agent(frame.events, refs).items():
                    parts = reframe(events, ids, origin, watermarks, budget)
                    for value in parts.values:  # split when over the size limit
                        await by_agent.send(key=agent.encode(), value=value)
                    await reject([Rejected(why, "event", _raw_of(e), int(ref.rsplit(":", 1)[1]))
                                  for e, ref, why in parts.alone], "route", message)
                for e in frame.events:
                    if e.kind == "collector.stats":
                        await tick(e.source, e.ts)
            except Exception as exc:  # a worker never dies on input
                log.exception("route failed on %s[%d]@%d", message.topic, message.partition,
                              message.offset)
                await reject([Rejected(f"route failed: {exc!r}", "frame", event.value)],
                             "route", message)
            finally:
                obs.latency.labels("route").observe(time.perf_counter() - t0)

    async def publish(found: list[Any], agent_state: AgentState, before: str,
                      mode_changed: bool = False) -> None:
        for story in found:
            stats.stories += 1
            doc = story.to_ocsf()
            obs.story(str(doc.get("severity", "unknown")))
            value, _cut = fit_json(doc, budget)  # a huge argv is cut, the story goes out
            await stories.send(key=story.uid.encode(), value=value)
        if agent_state.profile.phase != before or found or mode_changed:
            record = profile_record(agent_state.profile, agent_state.inventory)
            if agent_state.enforcement:  # per node: which mode applies, since when
                record["enforcement"] = agent_state.enforcement
            await profiles.send(key=agent_state.agent.encode(),
                                value=fit_json(record, budget)[0])

    @app.agent(detect_input)
    async def detect(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            t0 = time.perf_counter()
            try:
                if message.topic == DISPOSITIONS.name:
                    await dispose(event.key.decode(), event.value)
                    continue
                decoded = decode_message(event.value)
                if event.key == TICK_KEY:
                    stats.ticks += 1
                    # Only this partition's agents: each state goes back to its own
                    # changelog partition (topologies.partitions), once per tick round.
                    for agent in [k for k in state if k != TICK_KEY.decode() and
                                  agent_partition(k, BY_AGENT.partitions) == message.partition]:
                        agent_state = load(agent)
                        before = agent_state.profile.phase
                        found = engine.apply(agent_state, decoded)
                        found += save(agent, agent_state)
                        if found or agent_state.profile.phase != before:
                            await publish(found, agent_state, before)
                    continue
                agent = event.key.decode()
                agent_state = load(agent)
                before = agent_state.profile.phase
                found = engine.apply(agent_state, decoded)
                found += save(agent, agent_state)
                await publish(found, agent_state, before,
                              any(e.kind == "enforce.mode" for e in decoded.events))
            except InvalidEvent as exc:
                await reject([Rejected(str(exc), exc.field, event.value)], "detect", message)
            except Oversized as exc:  # its state would not fit the changelog: not applied
                log.warning("detect: %s (agent %s): dead-lettered", exc, event.key)
                live.pop((event.key or b"").decode(errors="replace"), None)
                await reject([Rejected(str(exc), "message", event.value)], "detect", message)
            except Exception as exc:
                log.exception("detect failed on %s", event.key)
                # A half-applied state is not kept: the next message starts from the table.
                live.pop((event.key or b"").decode(errors="replace"), None)
                await reject([Rejected(f"detect failed: {exc!r}", "frame", event.value)],
                             "detect", message)
            finally:
                obs.latency.labels("detect").observe(time.perf_counter() - t0)

    async def dispose(agent: str, raw: bytes) -> None:
        doc = orjson.loads(raw)
        if agent not in live and state.get(agent) is None:
            log.warning("disposition for %s: agent unknown to this worker", agent)
            return
        agent_state = load(agent)
        found = engine.dispose(agent_state, str(doc["story"]), str(doc["verdict"]),
                               int(doc["ts"]), by=str(doc.get("by", "")),
                               note=str(doc.get("note", "")))
        found += save(agent, agent_state)
        await publish(found, agent_state, agent_state.profile.phase)

    @app.timer(interval=RECENT_S / 2)
    async def quiet() -> None:
        """When the raw topics go quiet: resume what waited for a partition that has
        since gone quiet, and tell every partition that the sources' lateness has passed
        (the agents' last events are then taken, without waiting for a heartbeat)."""
        now = time.monotonic()
        if paused:
            await pace(now)
        if now - last_read[0] >= RECENT_S and marks.parts and marks.current(now) != stamped:
            stats.ticks += 1
            await broadcast(stamp(now))

    @app.timer(interval=60.0)
    async def report() -> None:
        log.info("worker: %s", asdict(stats))

    return app
