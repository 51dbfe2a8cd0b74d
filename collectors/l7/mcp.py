"""MCP (Model Context Protocol) JSON-RPC 2.0 messages carried over HTTP.

The streamable HTTP transport POSTs one JSON-RPC message or a batch array and gets
``application/json`` or a ``text/event-stream`` whose events each hold one message. This
module classifies messages and pulls out what a detector cares about: which tool with
which arguments, which resource, and what came back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from collectors.l7.results import as_dict, as_list
from collectors.l7.sse import iter_sse

__all__ = [
    "RpcMessage",
    "classify",
    "parse_body",
    "result_text",
    "summarize_call",
    "summarize_result",
    "tool_definitions",
    "tool_descriptions",
]


@dataclass(frozen=True, slots=True)
class RpcMessage:
    """One JSON-RPC message: a request (method+id), notification (method) or response."""

    kind: str  # request | notification | response
    id: Any
    method: str
    params: Any
    result: Any
    error: Any


def classify(obj: Any) -> RpcMessage | None:
    """A decoded JSON value → :class:`RpcMessage`, or None when it is not JSON-RPC 2.0."""
    if not isinstance(obj, dict) or obj.get("jsonrpc") != "2.0":
        return None
    method = obj.get("method")
    if isinstance(method, str):
        kind = "request" if "id" in obj else "notification"
        return RpcMessage(kind, obj.get("id"), method, obj.get("params"), None, None)
    if "result" in obj or "error" in obj:
        return RpcMessage("response", obj.get("id"), "", None, obj.get("result"), obj.get("error"))
    return None


def parse_body(content_type: str, body: bytes) -> list[RpcMessage]:
    """All JSON-RPC messages in a body (JSON object, batch array, or SSE of either)."""
    values: list[Any] = []
    if content_type == "text/event-stream":
        for _, data in iter_sse(body.decode("utf-8", "replace")):
            try:
                values.append(orjson.loads(data))
            except orjson.JSONDecodeError:
                continue
    else:
        stripped = body.lstrip()[:1]
        if stripped not in (b"{", b"["):
            return []
        try:
            values.append(orjson.loads(body))
        except orjson.JSONDecodeError:
            return []
    out: list[RpcMessage] = []
    for value in values:
        for obj in value if isinstance(value, list) else [value]:
            msg = classify(obj)
            if msg is not None:
                out.append(msg)
    return out


def summarize_call(msg: RpcMessage) -> dict[str, Any]:
    """Fields of an ``mcp.call``: method, id, tool, arguments, uri (as present)."""
    params = msg.params if isinstance(msg.params, dict) else {}
    data: dict[str, Any] = {"method": msg.method, "id": msg.id}
    if msg.kind == "notification":
        data["notification"] = True
    if msg.method in ("tools/call", "prompts/get"):
        data["tool" if msg.method == "tools/call" else "prompt"] = str(params.get("name", ""))
        data["arguments"] = params.get("arguments") or {}
    if "uri" in params:
        data["uri"] = str(params["uri"])
    if msg.method == "initialize":
        info = as_dict(params.get("clientInfo"))
        data["client"] = {"name": info.get("name", ""), "version": info.get("version", "")}
        data["protocol_version"] = params.get("protocolVersion", "")
    return data


def result_text(result: Any) -> str:
    """Text a tool or resource returned (the part that flows into a model)."""
    if not isinstance(result, dict):
        return "" if result is None else _json(result)
    parts: list[str] = []
    for item in as_list(result.get("content")):
        if isinstance(item, dict):
            if isinstance(item.get("text"), str):
                parts.append(item["text"])
            elif isinstance(item.get("resource"), dict) and isinstance(
                item["resource"].get("text"), str
            ):
                parts.append(item["resource"]["text"])
    for item in as_list(result.get("contents")):  # resources/read
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            parts.append(item["text"])
    for item in as_list(result.get("messages")):  # prompts/get
        if isinstance(item, dict) and isinstance(item.get("content"), dict):
            text = item["content"].get("text")
            if isinstance(text, str):
                parts.append(text)
    if not parts and result.get("structuredContent") is not None:
        parts.append(_json(result["structuredContent"]))
    return "\n".join(parts)


def summarize_result(msg: RpcMessage, method: str) -> dict[str, Any]:
    """Fields of an ``mcp.result`` apart from content and injection (added by the caller).

    ``tools/list`` results carry the offered tool names and their descriptions, because
    a poisoned description is text the model will read.
    """
    result = msg.result if isinstance(msg.result, dict) else {}
    data: dict[str, Any] = {
        "id": msg.id,
        "method": method,
        "is_error": msg.error is not None or result.get("isError") is True,
    }
    if msg.error is not None:
        data["error"] = msg.error
    if method == "tools/list":
        tools = [t for t in as_list(result.get("tools")) if isinstance(t, dict)]
        data["tools"] = [str(t.get("name", "")) for t in tools]
    if method == "initialize":
        info = as_dict(result.get("serverInfo"))
        data["server"] = {"name": info.get("name", ""), "version": info.get("version", "")}
    return data


def tool_definitions(msg: RpcMessage) -> list[dict[str, Any]]:
    """The tool objects of a tools/list result (name, description, schemas)."""
    result = msg.result if isinstance(msg.result, dict) else {}
    return [t for t in as_list(result.get("tools")) if isinstance(t, dict)]


def tool_descriptions(msg: RpcMessage) -> str:
    """Concatenated tool descriptions of a tools/list result (scored for injection)."""
    result = msg.result if isinstance(msg.result, dict) else {}
    return "\n".join(
        str(t.get("description", ""))
        for t in as_list(result.get("tools"))
        if isinstance(t, dict) and t.get("description")
    )


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)
