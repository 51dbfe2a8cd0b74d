"""What went into a model, piece by piece, each piece tagged with its channel.

Injection scoring is only meaningful over text an attacker can write. An agent's own
system prompt and tool descriptions are long and imperative ("You MUST always…") and
would be flagged on every request; a tool result, an MCP result or a fetched document
is where indirect injection travels. So every message gets a ``channel``:

- ``system``: system prompt / instructions / developer messages (the agent's own text)
- ``user``: a user turn
- ``assistant``: the model's earlier turns (and the tool calls it made)
- ``tool_result``: what a client-side tool returned
- ``mcp_result``: what an MCP tool returned (provider-side MCP: Anthropic
  ``mcp_tool_result``, OpenAI Responses ``mcp_call`` output)
- ``retrieved``: documents, search results and fetched pages given to the model

Tool definitions are not messages; their names, descriptions and a hash are reported
apart. Pure functions over parsed JSON; the provider shapes follow their API references.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from collectors.l7.results import as_dict, as_list

__all__ = [
    "CHANNELS",
    "UNTRUSTED",
    "Request",
    "digest",
    "parse_request",
    "text_of",
    "tools_digest",
]

CHANNELS = frozenset(
    {"system", "tool_definitions", "user", "assistant", "tool_result", "mcp_result", "retrieved"}
)
# Channels whose text an attacker can write (scored for injection).
UNTRUSTED = frozenset({"tool_result", "mcp_result", "retrieved"})
_SYSTEM_ROLES = frozenset({"system", "developer"})
_TOOL_ROLES = frozenset({"tool", "function", "ipython"})
# Anthropic content blocks that hand retrieved text to the model.
_RETRIEVED_BLOCKS = frozenset(
    {"document", "search_result", "web_search_tool_result", "web_fetch_tool_result"}
)
# Anthropic provider-executed tool results (channel tool_result: a sandbox's output).
_SERVER_RESULT_BLOCKS = frozenset(
    {
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
    }
)


Request = dict[str, Any]


def digest(value: Any) -> str:
    """16 hex chars of the sha256 of a text or of a JSON value's canonical form.

    Callers hash text whose credentials were already scrubbed (a hash must never
    fingerprint a secret)."""
    if not isinstance(value, str):
        value = orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:16]


def text_of(content: Any) -> str:
    """Flatten provider content (string or list of typed parts/blocks) to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return str(content)
    parts: list[str] = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict):
            parts.append(_part_text(part))
    return "\n".join(p for p in parts if p)


def _part_text(part: dict[str, Any]) -> str:
    for key in ("text", "input_text", "output_text", "content", "output", "stdout", "data"):
        value = part.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list | dict):
            return text_of(value)
    source = part.get("source")
    if isinstance(source, dict):  # Anthropic document: text source or content blocks
        if source.get("type") == "text" and isinstance(source.get("data"), str):
            return str(source["data"])
        if isinstance(source.get("content"), list | str):
            return text_of(source["content"])
    if isinstance(part.get("json"), dict | list):  # Bedrock toolResult json content
        return _json(part["json"])
    if isinstance(part.get("title"), str):  # web search results: title (content encrypted)
        return str(part["title"])
    return ""


def _json(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


class _Builder:
    """Collects messages, tools and tool definitions of one request."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.tools: list[str] = []
        self.descriptions: dict[str, str] = {}
        self.definitions: list[Any] = []
        self.mcp_servers: list[dict[str, str]] = []

    def add(self, role: str, channel: str, content: Any, **extra: Any) -> None:
        text = content if isinstance(content, str) else text_of(content)
        msg: dict[str, Any] = {"role": role, "channel": channel, "content": text}
        msg.update({k: v for k, v in extra.items() if v})
        self.messages.append(msg)

    def tool(self, name: Any, description: Any, definition: Any) -> None:
        if isinstance(name, str) and name:
            self.tools.append(name)
            if isinstance(description, str) and description:
                self.descriptions[name] = description
            self.definitions.append(definition)

    def mcp_server(self, name: Any, url: Any) -> None:
        self.mcp_servers.append({"name": str(name or ""), "url": str(url or "")})

    def result(self) -> Request:
        system = "\n".join(m["content"] for m in self.messages if m["channel"] == "system")
        out: Request = {
            "messages": self.messages,
            "tools": self.tools,
            "tool_descriptions": self.descriptions,
            "system_text": system,
            "tool_definitions": self.definitions,
        }
        if self.mcp_servers:
            out["mcp_servers"] = self.mcp_servers
        return out


def tools_digest(definitions: list[Any]) -> str:
    """Order-free digest of tool definitions (names, descriptions, schemas)."""
    return digest(sorted(digest(d) for d in definitions))


def parse_request(api: str, obj: dict[str, Any]) -> Request:
    """Messages (role, channel, text), offered tools, tool definitions and the system
    prompt's text of a request body (hash them after scrubbing).

    ``api`` names the wire shape: chat.completions | ollama.chat | ollama.generate |
    responses | messages | generate_content | converse.
    """
    b = _Builder()
    if api == "ollama.generate":
        if obj.get("system"):
            b.add("system", "system", obj["system"])
        b.add("user", "user", obj.get("prompt"))
    elif api in ("chat.completions", "ollama.chat"):
        _chat(b, obj)
    elif api == "responses":
        _responses(b, obj)
    elif api == "messages":
        _anthropic(b, obj)
    elif api == "converse":
        _converse(b, obj)
    else:
        _gemini(b, obj)
    return b.result()


# -- OpenAI chat completions (and Ollama chat) -------------------------------------------


def _chat(b: _Builder, obj: dict[str, Any]) -> None:
    for m in as_list(obj.get("messages")):
        if not isinstance(m, dict):
            continue
        role = str(m.get("role", ""))
        if role in _TOOL_ROLES:
            b.add("tool", "tool_result", m.get("content"), tool_call_id=m.get("tool_call_id"))
            continue
        calls = [
            as_dict(tc.get("function")).get("name", "")
            for tc in as_list(m.get("tool_calls"))
            if isinstance(tc, dict)
        ]
        if isinstance(m.get("function_call"), dict):
            calls.append(str(m["function_call"].get("name", "")))
        channel = "system" if role in _SYSTEM_ROLES else role if role == "user" else "assistant"
        b.add(role, channel, m.get("content"), tool_calls=calls)
    for t in as_list(obj.get("tools")):
        if isinstance(t, dict):
            inner = t.get("function")
            fn: dict[str, Any] = inner if isinstance(inner, dict) else t
            b.tool(fn.get("name") or t.get("type"), fn.get("description"), t)
    for fn in as_list(obj.get("functions")):
        if isinstance(fn, dict):
            b.tool(fn.get("name"), fn.get("description"), fn)


# -- OpenAI Responses ----------------------------------------------------------------------


def _responses(b: _Builder, obj: dict[str, Any]) -> None:
    if obj.get("instructions"):
        b.add("system", "system", obj["instructions"])
    items = obj.get("input")
    if isinstance(items, str):
        b.add("user", "user", items)
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind = str(item.get("type") or "message")
        if kind == "message" or "role" in item:
            role = str(item.get("role", "user"))
            channel = (
                "system" if role in _SYSTEM_ROLES else "user" if role == "user" else "assistant"
            )
            b.add(role, channel, item.get("content"))
        elif kind == "mcp_call":
            b.add("assistant", "assistant", "", tool_calls=[str(item.get("name", ""))])
            if item.get("output") is not None or item.get("error") is not None:
                b.add(
                    "tool",
                    "mcp_result",
                    _json(item.get("output") or item.get("error")),
                    tool_call_id=item.get("id"),
                    mcp_server=item.get("server_label"),
                )
        elif kind == "mcp_list_tools":
            label = item.get("server_label")
            for t in as_list(item.get("tools")):
                if isinstance(t, dict):
                    b.tool(f"mcp:{label}:{t.get('name', '')}", t.get("description"), t)
        elif kind == "file_search_call":
            for r in as_list(item.get("results")):
                if isinstance(r, dict):
                    b.add("tool", "retrieved", r.get("text"), tool_call_id=item.get("id"))
        elif kind.endswith("_call_output"):
            b.add("tool", "tool_result", item.get("output"), tool_call_id=item.get("call_id"))
        elif kind.endswith("_call"):
            b.add("assistant", "assistant", "", tool_calls=[str(item.get("name") or kind)])
    for t in as_list(obj.get("tools")):
        if not isinstance(t, dict):
            continue
        if t.get("type") == "mcp":  # credentials of the server are not its definition
            definition = {k: v for k, v in t.items() if k not in ("headers", "authorization")}
            b.tool(f"mcp:{t.get('server_label', '')}", t.get("server_description"), definition)
            b.mcp_server(t.get("server_label"), t.get("server_url") or t.get("connector_id"))
        else:
            b.tool(t.get("name") or t.get("type"), t.get("description"), t)


# -- Anthropic messages --------------------------------------------------------------------


def _anthropic(b: _Builder, obj: dict[str, Any]) -> None:
    if obj.get("system"):
        b.add("system", "system", obj["system"])
    servers: dict[str, str] = {}  # mcp_tool_use id -> MCP server, for its result
    for m in as_list(obj.get("messages")):
        if not isinstance(m, dict):
            continue
        role = str(m.get("role", ""))
        own = "user" if role == "user" else "assistant"
        content = m.get("content")
        if not isinstance(content, list):
            b.add(role, own, content)
            continue
        plain: list[Any] = []
        calls: list[str] = []
        later: list[tuple[str, str, Any, dict[str, Any]]] = []
        for block in content:
            kind = block.get("type") if isinstance(block, dict) else "text"
            if not isinstance(block, dict):
                plain.append(block)
            elif kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
                calls.append(str(block.get("name", "")))
                if kind == "mcp_tool_use":
                    servers[str(block.get("id"))] = str(block.get("server_name") or "")
            elif kind == "tool_result":
                later.append(
                    (
                        "tool",
                        "tool_result",
                        block.get("content"),
                        {
                            "tool_call_id": block.get("tool_use_id"),
                            "is_error": block.get("is_error"),
                        },
                    )
                )
            elif kind == "mcp_tool_result":
                later.append(
                    (
                        "tool",
                        "mcp_result",
                        block.get("content"),
                        {
                            "tool_call_id": block.get("tool_use_id"),
                            "is_error": block.get("is_error"),
                            "mcp_server": servers.get(str(block.get("tool_use_id"))),
                        },
                    )
                )
            elif kind in _RETRIEVED_BLOCKS:
                later.append(
                    ("tool" if kind.endswith("_tool_result") else role, "retrieved", block, {})
                )
            elif kind in _SERVER_RESULT_BLOCKS:
                later.append(
                    (
                        "tool",
                        "tool_result",
                        block.get("content"),
                        {"tool_call_id": block.get("tool_use_id")},
                    )
                )
            elif kind in ("text", "image", "thinking", "redacted_thinking"):
                if kind == "text":
                    plain.append(block)
            else:
                plain.append(block)
        if plain or calls:
            b.add(role, own, plain, tool_calls=calls)
        for r, channel, value, extra in later:
            b.add(r, channel, _retrieved_text(value) if channel == "retrieved" else value, **extra)
    for t in as_list(obj.get("tools")):
        if isinstance(t, dict):
            b.tool(t.get("name") or t.get("type"), t.get("description"), t)
    for s in as_list(obj.get("mcp_servers")):
        if isinstance(s, dict):
            b.mcp_server(s.get("name"), s.get("url"))
            b.tool(
                f"mcp:{s.get('name', '')}",
                None,
                {k: v for k, v in s.items() if k != "authorization_token"},
            )


def _retrieved_text(block: Any) -> str:
    """Text of a document / search result / web search or fetch result block."""
    if not isinstance(block, dict):
        return text_of(block)
    kind = block.get("type")
    if kind in ("web_search_tool_result", "web_fetch_tool_result"):
        content = block.get("content")
        if isinstance(content, dict) and isinstance(content.get("content"), dict):
            return _retrieved_text(content["content"])  # web_fetch_result -> document
        return text_of(content)
    if kind == "search_result":
        return "\n".join(
            filter(None, (str(block.get("title") or ""), text_of(block.get("content"))))
        )
    if kind == "document":
        title = str(block.get("title") or "")
        return "\n".join(filter(None, (title, _part_text(block))))
    return text_of(block)


# -- Google Gemini (generateContent; Code Assist unwraps "request" first) ----------------


def _gemini(b: _Builder, obj: dict[str, Any]) -> None:
    system = obj.get("systemInstruction") or obj.get("system_instruction")
    if isinstance(system, dict):
        b.add("system", "system", system.get("parts"))
    elif isinstance(system, str):
        b.add("system", "system", system)
    for c in as_list(obj.get("contents")):
        if not isinstance(c, dict):
            continue
        role = str(c.get("role") or "user")
        parts = [p for p in as_list(c.get("parts")) if isinstance(p, dict)]
        texts = [p for p in parts if "text" in p and not p.get("thought")]
        calls = [
            str(as_dict(p.get("functionCall")).get("name", ""))
            for p in parts
            if "functionCall" in p
        ]
        if texts or calls:
            channel = "user" if role == "user" else "assistant"
            b.add(role, channel, texts, tool_calls=calls)
        for p in parts:
            resp = p.get("functionResponse") or p.get("function_response")
            if isinstance(resp, dict):
                b.add(
                    "tool", "tool_result", _json(resp.get("response")), tool_call_id=resp.get("id")
                )
    tools = obj.get("tools")
    if isinstance(tools, dict):  # some clients send one tool object instead of a list
        tools = [tools]
    for t in tools if isinstance(tools, list) else []:
        if not isinstance(t, dict):
            continue
        decls = t.get("functionDeclarations") or t.get("function_declarations")
        if isinstance(decls, list):
            for fn in decls:
                if isinstance(fn, dict):
                    b.tool(fn.get("name"), fn.get("description"), fn)
        elif isinstance(t.get("name"), str):  # a bare function declaration
            b.tool(t.get("name"), t.get("description"), t)
        else:
            for key in t:  # googleSearch, codeExecution, urlContext, …
                b.tool(key, None, {key: t[key]})


# -- Amazon Bedrock Converse (and Nova's messages-v1 body on InvokeModel) ----------------


def _converse(b: _Builder, obj: dict[str, Any]) -> None:
    system = obj.get("system")
    if isinstance(system, list):
        text = text_of([s for s in system if isinstance(s, dict) and "text" in s])
        if text:
            b.add("system", "system", text)
    for m in as_list(obj.get("messages")):
        if not isinstance(m, dict):
            continue
        role = str(m.get("role", ""))
        own = "user" if role == "user" else "assistant"
        content = m.get("content")
        if not isinstance(content, list):
            b.add(role, own, content)
            continue
        plain: list[Any] = []
        calls: list[str] = []
        later: list[tuple[str, str, str, dict[str, Any]]] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            if "text" in block:
                plain.append({"text": block["text"]})
            elif isinstance(block.get("toolUse"), dict):
                calls.append(str(block["toolUse"].get("name", "")))
            elif isinstance(block.get("toolResult"), dict):
                tr = block["toolResult"]
                later.append(
                    (
                        "tool",
                        "tool_result",
                        text_of(tr.get("content")),
                        {
                            "tool_call_id": tr.get("toolUseId"),
                            "is_error": tr.get("status") == "error",
                        },
                    )
                )
            elif isinstance(block.get("document"), dict):
                doc = block["document"]
                source = as_dict(doc.get("source"))
                text = (
                    str(source["text"])
                    if isinstance(source.get("text"), str)
                    else text_of(source.get("content"))
                )
                later.append(
                    (role, "retrieved", "\n".join(filter(None, (doc.get("name"), text))), {})
                )
        if plain or calls:
            b.add(role, own, plain, tool_calls=calls)
        for r, channel, text, extra in later:
            b.add(r, channel, text, **extra)
    config = obj.get("toolConfig")
    for t in as_list(as_dict(config).get("tools")):
        spec = t.get("toolSpec") if isinstance(t, dict) else None
        if isinstance(spec, dict):
            b.tool(spec.get("name"), spec.get("description"), spec)
