"""Plaintext chunks of one connection in, redacted L7 events out.

The capture half (uprobes on libssl) hands every chunk it sees to :meth:`L7Parser.feed`
with a connection key and a direction. This module is the seam: it owns per-connection
state and turns reassembled HTTP messages into ``http.*``, ``llm.*`` and ``mcp.*``
events. It imports no bcc and no Kafka so it is tested and benchmarked on bytes alone.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from collectors.l7.policy import ContentPolicy

__all__ = ["KINDS", "ContentPolicy", "L7Event", "L7Parser"]

KINDS = frozenset(
    {
        "http.request",
        "http.response",
        "llm.request",
        "llm.response",
        "llm.tool_call",
        "mcp.call",
        "mcp.result",
    }
)


@dataclass(frozen=True, slots=True)
class L7Event:
    """One parsed L7 event; ``data`` is already redacted and JSON-serializable."""

    kind: str
    ts: int
    data: dict[str, Any]


class L7Parser:
    """Per-connection HTTP/1.1 reassembly and protocol parsing (interface stub)."""

    def __init__(self, policy: ContentPolicy | None = None) -> None:
        self.policy = policy or ContentPolicy()
        self.stats: dict[str, int] = {"bytes": 0, "messages": 0, "parse_errors": 0,
                                      "truncated": 0}

    def feed(self, conn: Hashable, direction: str, data: bytes, ts_ns: int) -> list[L7Event]:
        """Take one chunk; return the events it completed. Never raises on input."""
        self.stats["bytes"] += len(data)
        return []

    def close(self, conn: Hashable) -> list[L7Event]:
        """The connection ended: flush messages whose end is the close itself."""
        return []
