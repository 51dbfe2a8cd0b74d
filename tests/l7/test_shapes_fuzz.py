"""Odd shapes in real places: every provider route gets JSON bodies built from its own
field names but in arbitrary nesting and types. The parser may not understand them; it
may never raise (a raise is counted as internal_errors and loses the event)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.l7.parser import L7Parser
from tests.l7 import wire

from .providers import eventstream_frame

FIELDS = [
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "tools",
    "function",
    "name",
    "description",
    "input",
    "output",
    "call_id",
    "tool_calls",
    "tool_use_id",
    "contents",
    "parts",
    "functionCall",
    "functionResponse",
    "response",
    "request",
    "system",
    "systemInstruction",
    "toolConfig",
    "toolSpec",
    "toolUse",
    "toolResult",
    "json",
    "document",
    "source",
    "data",
    "server_label",
    "mcp_servers",
    "url",
    "results",
    "candidates",
    "choices",
    "delta",
    "message",
    "stream",
    "instructions",
    "arguments",
    "functionDeclarations",
    "id",
    "server_name",
    "is_error",
    "outputs",
    "logs",
    "action",
    "start",
    "contentBlockIndex",
    "stopReason",
    "usage",
    "anthropic_version",
    "bytes",
]
TYPES = [
    "text",
    "tool_use",
    "tool_result",
    "mcp_tool_use",
    "mcp_tool_result",
    "document",
    "search_result",
    "web_fetch_tool_result",
    "server_tool_use",
    "function_call",
    "function_call_output",
    "mcp_call",
    "mcp_list_tools",
    "message",
    "file_search_call",
    "web_search_call",
    "code_interpreter_call",
    "mcp",
    "function",
    "content_block_start",
]
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from(TYPES),
    st.text(max_size=8),
    st.sampled_from(["user", "assistant", "tool", "system"]),
)
trees = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.sampled_from(FIELDS), kids, max_size=5)
    ),
    max_leaves=30,
)
ROUTES = [
    ("/v1/chat/completions", "api.openai.com"),
    ("/v1/responses", "api.openai.com"),
    ("/v1/messages", "api.anthropic.com"),
    ("/v1/messages/count_tokens", "api.anthropic.com"),
    ("/v1beta/models/gemini-2.0-flash:streamGenerateContent", "generativelanguage.googleapis.com"),
    ("/v1internal:generateContent", "cloudcode-pa.googleapis.com"),
    ("/model/m%3A0/converse", "bedrock-runtime.us-east-1.amazonaws.com"),
    ("/model/m%3A0/converse-stream", "bedrock-runtime.us-east-1.amazonaws.com"),
    ("/model/m%3A0/invoke", "bedrock-runtime.us-east-1.amazonaws.com"),
    ("/model/m%3A0/invoke-with-response-stream", "bedrock-runtime.us-east-1.amazonaws.com"),
]


def _response(path: str, body: Any, how: int) -> bytes:
    raw = orjson.dumps(body)
    if how == 1:
        return wire.response(
            wire.sse([(None, body), ("x", body)]), content_type="text/event-stream"
        )
    if how == 2 and "/model/" in path:
        frame = eventstream_frame({":event-type": "chunk", ":message-type": "event"}, raw)
        return wire.response(frame, content_type="application/vnd.amazon.eventstream")
    return wire.response(raw)


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(ROUTES),
    st.dictionaries(st.sampled_from(FIELDS), trees, max_size=6),
    trees,
    st.integers(0, 2),
)
def test_no_shape_makes_the_parser_raise(
    route: tuple[str, str], body: dict[str, Any], answer: Any, how: int
) -> None:
    path, host = route
    body.setdefault("model", "m")
    p = L7Parser()
    events = p.feed("c", "egress", wire.request("POST", path, body, host=host), 1)
    events += p.feed("c", "ingress", _response(path, answer, how), 2)
    assert p.stats["internal_errors"] == 0
    assert events and all(isinstance(orjson.loads(orjson.dumps(e.data)), dict) for e in events)


MCP_FIELDS = [
    "content",
    "contents",
    "messages",
    "text",
    "resource",
    "tools",
    "name",
    "description",
    "structuredContent",
    "isError",
    "serverInfo",
    "arguments",
    "uri",
    "clientInfo",
    "type",
]
mcp_trees = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.sampled_from(MCP_FIELDS), kids, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["tools/call", "tools/list", "initialize", "resources/read", "prompts/get"]),
    mcp_trees,
    mcp_trees,
)
def test_no_mcp_shape_makes_the_parser_raise(method: str, params: Any, result: Any) -> None:
    p = L7Parser()
    call = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    p.feed("c", "egress", wire.request("POST", "/mcp", call, host="mcp.local"), 1)
    answer = {"jsonrpc": "2.0", "id": 1, "result": result}
    events = p.feed("c", "ingress", wire.response(answer), 2)
    assert p.stats["internal_errors"] == 0
    assert [e.kind for e in events][-1] == "mcp.result"
