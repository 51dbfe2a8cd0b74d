"""What a model answered, provider-neutral (shared by the provider parsers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["LlmResult", "ToolCall", "args", "as_dict", "as_int", "as_list"]


@dataclass(slots=True)
class ToolCall:
    tool: str
    arguments: Any
    call_id: str = ""
    mcp_server: str = ""  # provider-side MCP: the server the provider called
    server_tool: bool = False  # executed by the provider, not by the agent


@dataclass(slots=True)
class LlmResult:
    model: str = ""
    text: str = ""
    finish_reason: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    tool_calls: list[ToolCall] = field(default_factory=list)
    error: Any = None
    # (channel, text) of results a provider-executed tool fed to the model in this turn.
    server_results: list[tuple[str, str]] = field(default_factory=list)


def args(value: Any) -> Any:
    """Tool arguments: parsed JSON when the string is valid JSON, else the string."""
    if isinstance(value, str):
        try:
            return orjson.loads(value) if value.strip() else {}
        except orjson.JSONDecodeError:
            return value
    return value if value is not None else {}


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` when it is a list, else empty (provider fields arrive in any type)."""
    return value if isinstance(value, list) else []


def as_int(value: Any) -> int:
    """An index field as int (0 when missing or not a number: never raise on input)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return 0
