"""Idempotent topic creation from the catalogue, run at every start-up.

A topic that exists with another partition count is an error we name, not one we paper
over: co-partitioning (the join by pod) and Faust's changelogs depend on the count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from streams.kafka_config import PLAINTEXT, KafkaSecurity, tls_probe
from streams.topics import CATALOGUE, TopicSpec

__all__ = ["TopicMismatch", "ensure_topics"]


class TopicMismatch(RuntimeError):
    pass


async def _admin(bootstrap_servers: str, timeout_s: float,
                 security: KafkaSecurity = PLAINTEXT) -> AIOKafkaAdminClient:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers,
                                    client_id="agentstory-admin",
                                    **security.aiokafka_kwargs())
        try:
            await admin.start()
            return admin
        except KafkaConnectionError:
            await admin.close()
            if asyncio.get_running_loop().time() > deadline or _tls_refused(
                    bootstrap_servers, security):
                raise  # waiting does not fix a wrong CA or a missing client certificate
            await asyncio.sleep(0.5)


def _tls_refused(bootstrap_servers: str, security: KafkaSecurity) -> bool:
    if not security.uses_ssl:
        return False
    reason = tls_probe(bootstrap_servers, security)
    return reason is not None and reason.startswith("TLS")


async def ensure_topics(
    bootstrap_servers: str, specs: Iterable[TopicSpec] = CATALOGUE, *, timeout_s: float = 30.0,
    security: KafkaSecurity = PLAINTEXT,
) -> list[str]:
    """Create the topics that are missing; returns the names created."""
    wanted = {s.name: s for s in specs}
    admin = await _admin(bootstrap_servers, timeout_s, security)
    try:
        existing = set(await admin.list_topics())
        missing = [s for name, s in wanted.items() if name not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(s.name, s.partitions, 1, topic_configs=s.configs()) for s in missing]
            )
            for name, code, *_ in getattr(response, "topic_errors", []):
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise KafkaError(f"creating {name}: error code {code}")
        present = [n for n in wanted if n in existing]
        if present:
            for topic in await admin.describe_topics(present):
                spec = wanted[topic["topic"]]
                count = len(topic.get("partitions") or [])
                if count != spec.partitions:
                    raise TopicMismatch(
                        f"topic {spec.name} has {count} partitions, the catalogue says "
                        f"{spec.partitions} (AGENTSTORY_PARTITIONS); set "
                        f"AGENTSTORY_PARTITIONS={count} to use this cluster as it is, or "
                        "migrate it: `agentstory topics migrate` (README, \"Partitions\")"
                    )
        return [s.name for s in missing]
    finally:
        await admin.close()
