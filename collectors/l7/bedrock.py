"""Amazon Bedrock runtime: which operation, which model, and what streamed back.

The model id is in the path (``/model/{modelId}/converse``, ``/converse-stream``,
``/invoke``, ``/invoke-with-response-stream``, ``/count-tokens``; percent-encoded, an ARN
for inference profiles). Streams are ``application/vnd.amazon.eventstream``: binary
frames with CRCs, decoded by botocore's own parser (:class:`EventStreamBuffer`). A
Converse stream carries one JSON event per frame named by ``:event-type``; an
InvokeModel stream carries ``chunk`` frames whose ``bytes`` is the provider's own stream
event, base64-encoded (Anthropic's ``message_start`` … on Claude models).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import unquote

import orjson
from botocore.eventstream import EventStreamBuffer, ParserError

from collectors.l7.results import LlmResult, ToolCall, args, as_dict, as_int, as_list

__all__ = [
    "EVENTSTREAM",
    "OPERATIONS",
    "body_shape",
    "converse_result",
    "converse_stream_result",
    "count_tokens_body",
    "decode_eventstream",
    "invoke_stream_events",
    "match_path",
    "nova_stream_result",
]

EVENTSTREAM = "application/vnd.amazon.eventstream"
OPERATIONS = {
    "converse": "converse",
    "converse-stream": "converse-stream",
    "invoke": "invoke-model",
    "invoke-with-response-stream": "invoke-model-with-response-stream",
    "count-tokens": "count_tokens",
}
_PATH = re.compile(
    r"/model/([^/]+)/(converse|converse-stream|invoke|invoke-with-response-stream|count-tokens)$"
)


def match_path(route: str) -> tuple[str, str] | None:
    """(model id, operation) of a Bedrock runtime path, else None."""
    m = _PATH.search(route)
    if m is None:
        return None
    return unquote(m.group(1)), OPERATIONS[m.group(2)]


def body_shape(op: str, obj: dict[str, Any]) -> str:
    """Which request parser reads this body: Converse's own, or the provider's inside
    InvokeModel (Anthropic messages, Nova messages-v1, a plain prompt)."""
    if op.startswith("converse"):
        return "converse"
    if op == "count_tokens":  # {"input": {"converse": {...}} | {"invokeModel": {"body": "…"}}}
        return "converse"
    if "anthropic_version" in obj or (
        isinstance(obj.get("messages"), list)
        and any(
            isinstance(m, dict)
            and isinstance(m.get("content"), str | list)
            and any(isinstance(b, dict) and "type" in b for b in as_list(m.get("content")))
            for m in obj["messages"]
        )
    ):
        return "messages"
    if isinstance(obj.get("messages"), list):
        if any(isinstance(m, dict) and isinstance(m.get("content"), str) for m in obj["messages"]):
            return "chat.completions"  # OpenAI-shaped bodies (gpt-oss, Mistral chat)
        return "converse"  # Nova messages-v1: same content blocks as Converse
    return "ollama.generate" if "prompt" in obj else "converse"


def count_tokens_body(obj: dict[str, Any]) -> dict[str, Any]:
    """The Converse-shaped body inside a CountTokens request."""
    inner = as_dict(obj.get("input"))
    if isinstance(inner.get("converse"), dict):
        return dict(inner["converse"])
    invoke = as_dict(inner.get("invokeModel"))
    body = invoke.get("body")
    if isinstance(body, str):
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            return {}
        return decoded if isinstance(decoded, dict) else {}
    return {}


def decode_eventstream(body: bytes) -> tuple[list[tuple[dict[str, Any], bytes]], bool]:
    """All whole frames of an event stream as (headers, payload); the flag says the
    bytes ended inside a frame or failed a checksum (a cut or damaged capture)."""
    buf = EventStreamBuffer()
    buf.add_data(body)
    out: list[tuple[dict[str, Any], bytes]] = []
    consumed = 0
    try:
        for message in buf:
            out.append((dict(message.headers), bytes(message.payload)))
            consumed += message.prelude.total_length
    except ParserError:
        return out, True
    return out, consumed != len(body)


def _event_json(payload: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def converse_result(obj: dict[str, Any]) -> LlmResult:
    """A Converse (or Nova InvokeModel) JSON response."""
    res = LlmResult(finish_reason=str(obj.get("stopReason") or ""), usage=as_dict(obj.get("usage")))
    message = as_dict(as_dict(obj.get("output")).get("message"))
    texts: list[str] = []
    for block in as_list(message.get("content")):
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            tu = block["toolUse"]
            res.tool_calls.append(
                ToolCall(
                    str(tu.get("name", "")), args(tu.get("input")), str(tu.get("toolUseId", ""))
                )
            )
    res.text = "".join(texts)
    return res


def converse_stream_result(frames: list[tuple[dict[str, Any], bytes]]) -> LlmResult:
    """ConverseStream: messageStart, contentBlockStart (toolUse name/id),
    contentBlockDelta (text or toolUse input fragments), messageStop, metadata; an
    ``exception`` frame is the error."""
    res = LlmResult()
    texts: list[str] = []
    tools: dict[int, dict[str, str]] = {}
    for headers, payload in frames:
        ev = _event_json(payload)
        if headers.get(":message-type") == "exception":
            res.error = {"type": headers.get(":exception-type", ""), **ev}
            continue
        kind = headers.get(":event-type", "")
        index = as_int(ev.get("contentBlockIndex"))
        if kind == "contentBlockStart":
            tu = as_dict(as_dict(ev.get("start")).get("toolUse"))
            if tu:
                tools[index] = {
                    "name": str(tu.get("name", "")),
                    "id": str(tu.get("toolUseId", "")),
                    "input": "",
                }
        elif kind == "contentBlockDelta":
            delta = as_dict(ev.get("delta"))
            if isinstance(delta.get("text"), str):
                texts.append(delta["text"])
            elif isinstance(delta.get("toolUse"), dict):
                slot = tools.setdefault(index, {"name": "", "id": "", "input": ""})
                slot["input"] += str(delta["toolUse"].get("input") or "")
        elif kind == "messageStop":
            res.finish_reason = str(ev.get("stopReason") or "")
        elif kind == "metadata":
            res.usage = as_dict(ev.get("usage"))
    res.text = "".join(texts)
    res.tool_calls = [
        ToolCall(t["name"], args(t["input"]), t["id"]) for _, t in sorted(tools.items())
    ]
    return res


def invoke_stream_events(
    frames: list[tuple[dict[str, Any], bytes]],
) -> tuple[list[tuple[str, str]], Any]:
    """InvokeModelWithResponseStream: the provider's stream events as (type, JSON text),
    ready for that provider's SSE parser, and the error of an ``exception`` frame."""
    events: list[tuple[str, str]] = []
    error: Any = None
    for headers, payload in frames:
        ev = _event_json(payload)
        if headers.get(":message-type") == "exception":
            error = {"type": headers.get(":exception-type", ""), **ev}
            continue
        raw = ev.get("bytes")
        if not isinstance(raw, str):
            continue
        try:
            inner = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            continue
        obj = _event_json(inner)
        if obj:
            kind = str(obj.get("type") or next(iter(obj), ""))
            events.append((kind, inner.decode("utf-8", "replace")))
    return events, error


def nova_stream_result(events: list[tuple[str, str]]) -> LlmResult:
    """Nova's InvokeModel stream: Converse-shaped events keyed by their type."""
    frames = []
    for _, text in events:
        obj = _event_json(text.encode())
        for kind, value in obj.items():
            if isinstance(value, dict):
                frames.append(({":event-type": kind}, orjson.dumps(value)))
    return converse_stream_result(frames)
