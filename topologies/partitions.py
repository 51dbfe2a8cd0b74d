"""Which partition holds an agent, as the producers place it.

The worker's by-agent messages are sent with the agent as key and no partition, so
aiokafka's default partitioner (Kafka's murmur2, as the Java client) places them, and
Faust writes each agent's state to the changelog partition of the message that changed
it. Code that walks the table (the heartbeat tick) must therefore touch only the agents
of the partition it is working for: an agent written from another partition lands in the
wrong changelog partition, is restored by whichever worker owns that one, and two
workers then hold diverging copies of one agent.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2

__all__ = ["agent_partition"]


@lru_cache(maxsize=1 << 16)  # murmur2 is pure Python; the tick asks for every agent
def agent_partition(agent: str | bytes, partitions: int) -> int:
    """The partition aiokafka's ``DefaultPartitioner`` picks for this key."""
    key = agent.encode() if isinstance(agent, str) else agent
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)
