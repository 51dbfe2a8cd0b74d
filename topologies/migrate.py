"""``agentstory topics migrate``: move a deployment to another partition count
(``AGENTSTORY_PARTITIONS``) and keep every agent's state.

Run with every worker stopped after its lag reached 0 (README, "Partitions"). It

1. reads the worker's state table (the changelog, latest value per agent) and writes it
   to a backup file first (``--from-backup`` replays a backup if a run was cut short);
2. grows every catalogue topic to the new count where the broker can (Kafka's
   CreatePartitions keeps data and offsets); a broker that cannot (the embedded tansu)
   needs ``--recreate``: those topics are deleted and created again, their retained
   messages are gone (export them first), and the consumer group's offsets on them are
   set to 0;
3. deletes the changelog and creates it with the new count (a key must live in the
   partition of its agent's by-agent messages: Faust writes and restores it there), then
   writes every state to its agent's new partition. A state's per-origin high-water marks
   are kept for topics that grew in place (offsets continue) and dropped for recreated
   ones (their offsets restart at 0).

Fewer partitions than now is refused: Kafka cannot shrink a topic.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import IncompatibleBrokerVersion, KafkaError

from streams.kafka_config import PLAINTEXT, KafkaSecurity
from streams.limits import size_limits
from streams.topics import BY_AGENT, CATALOGUE, DISPOSITIONS, RAW_TOPICS, TopicSpec, changelog
from topologies.partitions import agent_partition

__all__ = ["MigrationError", "MigrationReport", "migrate_partitions"]

log = logging.getLogger(__name__)
# The topics the worker's consumer group reads (their offsets matter after a recreate).
GROUP_INPUTS = {s.name for s in (*RAW_TOPICS, BY_AGENT, DISPOSITIONS)}


class MigrationError(RuntimeError):
    pass


@dataclass
class MigrationReport:
    target: int
    grown: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    states: int = 0
    backup: Path | None = None
    offsets_reset: bool | None = None  # None: nothing recreated that the group reads


async def _counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    existing = set(await admin.list_topics())
    present = [n for n in names if n in existing]
    out = {n: 0 for n in names}
    for topic in await admin.describe_topics(present) if present else []:
        out[topic["topic"]] = len(topic.get("partitions") or [])
    return out


async def _read_latest(bootstrap: str, topic: str, security: KafkaSecurity,
                       idle_s: float = 3.0) -> dict[bytes, bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                **size_limits().consumer_kwargs(), **security.aiokafka_kwargs())
    latest: dict[bytes, bytes] = {}
    try:
        await consumer.start()
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            if not batch:
                return latest
            for messages in batch.values():
                for m in messages:
                    if m.key is None:
                        continue
                    if m.value is None:
                        latest.pop(m.key, None)  # a tombstone: the key was deleted
                    else:
                        latest[m.key] = m.value
    finally:
        await consumer.stop()


def write_backup(path: Path, states: dict[bytes, bytes]) -> None:
    with gzip.open(path, "wb") as out:
        for key, value in states.items():
            out.write(orjson.dumps({"key": key.decode(), "value": value.decode()}) + b"\n")


def read_backup(path: Path) -> dict[bytes, bytes]:
    with gzip.open(path, "rb") as src:
        return {d["key"].encode(): d["value"].encode()
                for d in map(orjson.loads, filter(bytes.strip, src))}


def _drop_marks(value: bytes, recreated: set[str]) -> bytes:
    """The state without its high-water marks on recreated topics (their offsets restart)."""
    doc = orjson.loads(value)
    inner = isinstance(doc, str)  # Faust's JSON codec wraps the bytes in a JSON string
    state = orjson.loads(doc) if inner else doc
    hwm = state.get("hwm") or {}
    state["hwm"] = {k: v for k, v in hwm.items()
                    if k.rsplit(":", 1)[0].split("#", 1)[0] not in recreated}
    encoded = orjson.dumps(state)
    return orjson.dumps(encoded.decode()) if inner else encoded


async def _recreate(admin: AIOKafkaAdminClient, spec: TopicSpec, timeout_s: float = 60.0
                    ) -> None:
    await admin.delete_topics([spec.name])
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:  # deletion is asynchronous on Kafka: the name frees up a little later
        response = await admin.create_topics(
            [NewTopic(spec.name, spec.partitions, 1, topic_configs=spec.configs())])
        codes = [code for _, code, *_ in getattr(response, "topic_errors", [])]
        if all(code == 0 for code in codes):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise MigrationError(f"could not create {spec.name} again: error codes {codes}")
        await asyncio.sleep(1.0)


async def _reset_group_offsets(bootstrap: str, group: str, topics: dict[str, int],
                               security: KafkaSecurity) -> bool:
    """Offsets 0 for ``group`` on recreated input topics: a committed offset from before
    would point past the new, shorter partitions. A broker may refuse a commit from
    outside the group (tansu does): then False, and the worker's consumer resets to the
    earliest offset when it finds its committed one past the end (auto_offset_reset),
    which holds as long as the collectors stay stopped until the workers run."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, **security.aiokafka_kwargs())
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
        consumer.assign(tps)
        await consumer.commit({tp: 0 for tp in tps})
        return True
    except KafkaError as exc:
        log.warning("could not reset %s's offsets on the recreated topics (%s): the worker "
                    "starts them from the earliest offset", group, exc)
        return False
    finally:
        await consumer.stop()


async def migrate_partitions(
    bootstrap: str, target: int, *, app_id: str, backup: Path, recreate: bool = False,
    from_backup: Path | None = None, security: KafkaSecurity = PLAINTEXT,
) -> MigrationReport:
    report = MigrationReport(target)
    table = changelog(app_id, "agent_state").with_partitions(target)
    specs = [s.with_partitions(target) for s in CATALOGUE]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="agentstory-migrate",
                                **security.aiokafka_kwargs())
    await admin.start()
    try:
        counts = await _counts(admin, [s.name for s in (*specs, table)])
        shrink = {n: c for n, c in counts.items() if c > target}
        if shrink:
            raise MigrationError(
                f"{', '.join(f'{n} has {c}' for n, c in shrink.items())} partitions, more "
                f"than {target}: Kafka cannot shrink a topic")
        # 1. The states, to a file before anything changes.
        if from_backup is not None:
            states = read_backup(from_backup)
        else:
            states = await _read_latest(bootstrap, table.name, security) \
                if counts[table.name] else {}
            write_backup(backup, states)
            report.backup = backup
        # 2. Every catalogue topic to the new count.
        for spec in specs:
            have = counts[spec.name]
            if have == target:
                report.unchanged.append(spec.name)
                continue
            if have == 0:
                await admin.create_topics(
                    [NewTopic(spec.name, target, 1, topic_configs=spec.configs())])
                report.recreated.append(spec.name)
                continue
            try:
                await admin.create_partitions({spec.name: NewPartitions(total_count=target)})
                report.grown.append(spec.name)
            except IncompatibleBrokerVersion as exc:
                if not recreate:
                    raise MigrationError(
                        f"this broker cannot add partitions to {spec.name} ({exc}); with "
                        "--recreate the topics are deleted and created again, losing the "
                        "messages they retain (export them first)") from exc
                await _recreate(admin, spec)
                report.recreated.append(spec.name)
        recreated_inputs = {n: target for n in report.recreated if n in GROUP_INPUTS}
        # 3. The changelog, with every state in its agent's new partition.
        if counts[table.name]:
            await _recreate(admin, table)
        elif table.name not in await admin.list_topics():
            await admin.create_topics(
                [NewTopic(table.name, target, 1, topic_configs=table.configs())])
    finally:
        await admin.close()
    if recreated_inputs:
        report.offsets_reset = await _reset_group_offsets(bootstrap, app_id,
                                                          recreated_inputs, security)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                **size_limits().producer_kwargs(), **security.aiokafka_kwargs())
    await producer.start()
    try:
        gone = set(recreated_inputs)
        for key, value in states.items():
            agent: Any = orjson.loads(key)  # Faust's JSON key codec: the agent as a string
            # One record per request: tansu's high watermark counts record batches, and
            # Faust's restore stops at it (a batched second record would not be restored).
            await producer.send_and_wait(
                table.name, _drop_marks(value, gone) if gone else value, key=key,
                partition=agent_partition(str(agent), target))
            report.states += 1
        await producer.flush()
    except KafkaError as exc:
        raise MigrationError(f"writing the states failed ({exc}); the backup "
                             f"{backup} holds them: run again with --from-backup") from exc
    finally:
        await producer.stop()
    return report
