"""The topic catalogue: every topic agentstory reads or writes, with its shape.

All raw topics share one partition count so that one Faust agent can consume them
co-partitioned by pod uid (the join). The count is a deployment setting,
``AGENTSTORY_PARTITIONS`` (default 12: the most workers one consumer group can use), read
once at import by every command; changing it on a running deployment is a migration
(README, "Partitions"). Topics are created from this catalogue before any
client touches them: an auto-created topic gets the broker's default partition count,
which Faust then rejects against its table changelogs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

__all__ = [
    "BY_AGENT",
    "CATALOGUE",
    "DEADLETTER",
    "DISPOSITIONS",
    "PARTITIONS",
    "PARTITIONS_ENV",
    "PROFILES",
    "RAW_CLOUD",
    "RAW_KERNEL",
    "RAW_L7",
    "RAW_TOPICS",
    "STORIES",
    "WORKER_APP_ID",
    "TopicSpec",
    "by_name",
    "changelog",
    "partitions_setting",
    "raw_topic_for",
]

PARTITIONS_ENV = "AGENTSTORY_PARTITIONS"
DEFAULT_PARTITIONS = 12
MAX_PARTITIONS = 1024


def partitions_setting(env: Mapping[str, str] | None = None) -> int:
    """The deployment's partition count for every catalogue topic; a bad value is a clear
    error at start, not a topic created with a surprising count."""
    raw = (os.environ if env is None else env).get(PARTITIONS_ENV, "").strip()
    if not raw:
        return DEFAULT_PARTITIONS
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{PARTITIONS_ENV}={raw!r}: expected a whole number of partitions"
                         ) from None
    if not 1 <= value <= MAX_PARTITIONS:
        raise ValueError(f"{PARTITIONS_ENV}={value}: expected 1 to {MAX_PARTITIONS}")
    return value


PARTITIONS = partitions_setting()
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    cleanup_policy: str  # "delete" or "compact"
    retention_ms: int  # -1: forever (compacted topics keep the latest per key)
    carries: str

    def with_partitions(self, partitions: int) -> TopicSpec:
        return replace(self, partitions=partitions)

    def configs(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}


RAW_KERNEL = TopicSpec(
    "agentstory.raw.kernel.v1", PARTITIONS, "pod uid (else node/<name>)", "delete", 7 * DAY_MS,
    "frames of kernel events: process.*, file.*, net.*, syscall.profile, collector.stats",
)
RAW_L7 = TopicSpec(
    "agentstory.raw.l7.v1", PARTITIONS, "pod uid (else node/<name>)", "delete", 7 * DAY_MS,
    "frames of L7 events: http.*, llm.*, mcp.* (credentials removed on the node)",
)
RAW_CLOUD = TopicSpec(
    "agentstory.raw.cloud.v1", PARTITIONS, "pod uid (else principal ARN)", "delete", 7 * DAY_MS,
    "frames of cloud.api events normalized from CloudTrail",
)
STORIES = TopicSpec(
    "agentstory.stories.v1", PARTITIONS, "story uid", "compact", -1,
    "attack stories as OCSF 1.5 Detection Findings (class_uid 2004), latest version per key",
)
PROFILES = TopicSpec(
    "agentstory.profiles.v1", PARTITIONS, "agent", "compact", -1,
    "per-agent baseline summaries (phase, what is known), auditable",
)
DEADLETTER = TopicSpec(
    "agentstory.deadletter.v1", PARTITIONS, "original key", "delete", 30 * DAY_MS,
    "input that broke the contract: reason, stage, origin and the original bytes",
)

DISPOSITIONS = TopicSpec(
    "agentstory.dispositions.v1", PARTITIONS, "agent", "delete", 30 * DAY_MS,
    "analysts' verdicts on stories (benign: close and learn; malicious: keep unlearned)",
)

BY_AGENT = TopicSpec(
    "agentstory.internal.by-agent.v1", PARTITIONS, "agent", "delete", DAY_MS,
    "internal: raw events re-framed per agent, for the per-agent baselines",
)

RAW_TOPICS = (RAW_KERNEL, RAW_L7, RAW_CLOUD)
CATALOGUE = (*RAW_TOPICS, STORIES, PROFILES, DEADLETTER, DISPOSITIONS, BY_AGENT)

WORKER_APP_ID = "agentstory-stories"  # Faust app id: consumer group, changelog prefix


def changelog(app_id: str, table: str) -> TopicSpec:
    """The changelog Faust keeps for ``table``; created up front like every topic."""
    return TopicSpec(f"{app_id}-{table}-changelog", PARTITIONS, "table key", "compact", -1,
                     f"changelog of the {table} table of {app_id}")

_BY_SOURCE = {"kernel": RAW_KERNEL, "l7": RAW_L7, "cloud": RAW_CLOUD}


def raw_topic_for(source: str) -> TopicSpec:
    return _BY_SOURCE[source]


def by_name(name: str) -> TopicSpec:
    for spec in CATALOGUE:
        if spec.name == name:
            return spec
    raise KeyError(name)
