"""LLM provider wire formats: which call this is, what went in, what came back.

Pure functions over parsed JSON (and SSE text for streams). Detection uses the path
first (each API has a documented one) and the body shape second, so a self-hosted or
proxied OpenAI-compatible endpoint is still recognised. Raw text is returned here;
redaction and content policy are the caller's job, so injection scoring can read the
original text before any of it is hashed or dropped.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from collectors.l7 import bedrock, caps, inputs
from collectors.l7.results import LlmResult, ToolCall
from collectors.l7.results import args as _args
from collectors.l7.results import as_dict as _dict
from collectors.l7.results import as_int as _int
from collectors.l7.results import as_list as _list
from collectors.l7.sse import iter_sse

__all__ = [
    "LlmCall",
    "LlmResult",
    "ToolCall",
    "detect_call",
    "parse_request",
    "parse_response",
    "salvage_request",
]

# Host suffix -> vendor. Unknown hosts get the wire format's owner (openai/anthropic/google).
_VENDORS: tuple[tuple[str, str], ...] = (
    ("api.openai.com", "openai"),
    (".openai.azure.com", "azure-openai"),
    (".cognitiveservices.azure.com", "azure-openai"),
    ("api.anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "google"),
    ("aiplatform.googleapis.com", "vertex"),
    ("api.mistral.ai", "mistral"),
    ("api.groq.com", "groq"),
    ("api.together.xyz", "together"),
    ("openrouter.ai", "openrouter"),
    ("api.deepseek.com", "deepseek"),
    ("api.x.ai", "xai"),
    ("api.fireworks.ai", "fireworks"),
    ("api.cohere.com", "cohere"),
    ("api.perplexity.ai", "perplexity"),
    ("cloudcode-pa.googleapis.com", "gemini-code-assist"),
    ("amazonaws.com", "bedrock"),
)
_GEMINI_PATH = re.compile(r"/models/([^/:?]+):(generateContent|streamGenerateContent|countTokens)")
# Gemini Code Assist (what Gemini CLI and IDE plugins call): the body wraps a request.
_CODE_ASSIST_PATH = re.compile(r"/v1internal:(generateContent|streamGenerateContent|countTokens)$")


@dataclass(frozen=True, slots=True)
class LlmCall:
    """What a request was: used again to parse its response."""

    provider: str
    # chat.completions | responses | messages | generate_content | ollama.* | converse |
    # converse-stream | invoke-model | invoke-model-with-response-stream | count_tokens
    api: str
    wire: str  # the wire format family: openai | anthropic | google | ollama | bedrock
    model: str = ""
    stream: bool = False
    shape: str = ""  # the request body's shape when it differs from ``api``
    wrapped: bool = False  # body inside {"request": …} / {"response": …} (Code Assist)

    @property
    def count_tokens(self) -> bool:
        return self.api == "count_tokens"


def _vendor(host: str, wire: str) -> str:
    host = host.split(":", 1)[0].lower()
    for suffix, name in _VENDORS:
        if host == suffix.lstrip(".") or host.endswith(suffix):
            return name
    return wire


def detect_call(host: str, path: str, obj: Any, headers: dict[str, str]) -> LlmCall | None:
    """Recognise an LLM API request by path, then by body shape; None if it is not one."""
    if not isinstance(obj, dict):
        return None
    route = path.split("?", 1)[0].rstrip("/")
    raw_model = obj.get("model")
    model: str = raw_model if isinstance(raw_model, str) else ""
    stream = obj.get("stream") is True
    api = wire = shape = ""
    wrapped = False
    if (b := bedrock.match_path(route)) is not None:
        model_id, op = b
        return LlmCall(
            "bedrock", op, "bedrock", model_id, op.endswith("stream"), bedrock.body_shape(op, obj)
        )
    if route.endswith(("/api/chat", "/api/generate")) and model:
        # Ollama's native API: streams NDJSON unless "stream": false.
        api = "ollama.chat" if route.endswith("/api/chat") else "ollama.generate"
        return LlmCall("ollama", api, "ollama", model, obj.get("stream") is not False)
    if m := _CODE_ASSIST_PATH.search(route):
        api, wire, wrapped = "generate_content", "google", True
        stream = m.group(1) == "streamGenerateContent"
        inner = obj.get("request")
        if isinstance(inner, dict):
            model = model or str(inner.get("model") or "")
        if m.group(1) == "countTokens":
            api, shape = "count_tokens", "generate_content"
    elif route.endswith("/messages/count_tokens"):
        api, wire, shape = "count_tokens", "anthropic", "messages"
    elif route.endswith("/responses/input_tokens"):
        api, wire, shape = "count_tokens", "openai", "responses"
    elif route.endswith("/chat/completions"):
        api, wire = "chat.completions", "openai"
    elif route.endswith("/responses") and ("input" in obj or "model" in obj):
        api, wire = "responses", "openai"
    elif (
        route.endswith("/messages")
        and isinstance(obj.get("messages"), list)
        and ("anthropic-version" in headers or "max_tokens" in obj)
    ):
        api, wire = "messages", "anthropic"
    elif m := _GEMINI_PATH.search(route):
        api, wire, model = "generate_content", "google", model or m.group(1)
        stream = m.group(2) == "streamGenerateContent"
        if m.group(2) == "countTokens":
            api, shape = "count_tokens", "generate_content"
    elif isinstance(obj.get("messages"), list) and model:
        # Shape only: OpenAI-compatible unless it looks like Anthropic's.
        anthropic = "anthropic-version" in headers or isinstance(obj.get("system"), list)
        api, wire = ("messages", "anthropic") if anthropic else ("chat.completions", "openai")
    elif isinstance(obj.get("contents"), list):
        api, wire = "generate_content", "google"
    else:
        return None
    if not model and "/deployments/" in route:  # Azure OpenAI: deployment names the model
        model = route.split("/deployments/", 1)[1].split("/", 1)[0]
    if not model and "/models/" in route:  # Vertex AI publishers/*/models/<id>:…
        model = route.split("/models/", 1)[1].split(":", 1)[0].split("/", 1)[0]
    return LlmCall(
        provider=_vendor(host, wire),
        api=api,
        wire=wire,
        model=model,
        stream=stream,
        shape=shape,
        wrapped=wrapped,
    )


# -- requests ---------------------------------------------------------------------------

_TAIL_SCALARS = re.compile(r'"(model|stream)"\s*:\s*("(?:[^"\\]|\\.){0,200}"|true|false)')
_TAIL_TOOL_NAMES = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.){1,200})"')
_DECODER = json.JSONDecoder()


def salvage_request(body: bytes, tail: bytes = b"") -> dict[str, Any] | None:
    """What a JSON request body cut short (by a capture or body cap) still says.

    The kept head is closed by :func:`caps.complete_json`, so every message that began
    before the cut is kept, the last one cut in its text, never in its keys. ``tail``
    (the body's last bytes, when the cap kept them) gives back what clients put after
    the messages: ``model``, ``stream`` and the tools. The result carries
    ``"_partial": True``; None when this is not a JSON object.
    """
    text = body.decode("utf-8", "replace")
    if not text.lstrip().startswith("{"):
        return None
    try:
        obj = orjson.loads(caps.complete_json(text))
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    obj["_partial"] = True
    if tail:
        _from_tail(obj, tail.decode("utf-8", "replace"))
    keys = ("messages", "input", "contents", "request", "model")
    return obj if any(k in obj for k in keys) else None


def _from_tail(obj: dict[str, Any], tail: str) -> None:
    for key, value in _TAIL_SCALARS.findall(tail):
        if key not in obj:
            with contextlib.suppress(ValueError):
                obj[key] = json.loads(value)
    found = re.search(r'"tools"\s*:\s*\[', tail)
    if found and "tools" not in obj:
        try:
            obj["tools"], _ = _DECODER.raw_decode(tail, found.end() - 1)
        except ValueError:  # cut as well: the names are what matters
            names = _TAIL_TOOL_NAMES.findall(tail, found.end())
            obj["tools"] = [{"name": n.replace('\\"', '"')} for n in names]


def parse_request(call: LlmCall, obj: dict[str, Any]) -> dict[str, Any]:
    """Messages (role, channel, text), offered tools, tool descriptions and the hashes of
    system prompt and tool definitions, in a provider-neutral form (see :mod:`inputs`).

    Tool results get role ``tool`` whatever the provider calls them; their channel
    (``tool_result``, ``mcp_result``, ``retrieved``) says who could have written them.
    """
    return inputs.parse_request(call.shape or call.api, _unwrap_request(call, obj))


def _unwrap_request(call: LlmCall, obj: dict[str, Any]) -> dict[str, Any]:
    inner = obj.get("request")
    if call.wrapped and isinstance(inner, dict):  # Gemini Code Assist
        return inner
    if call.wire == "bedrock" and call.count_tokens:
        return bedrock.count_tokens_body(obj)
    return obj


def _is_block(block: Any, *types: str) -> bool:
    return isinstance(block, dict) and block.get("type") in types


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


# -- responses --------------------------------------------------------------------------


def parse_response(call: LlmCall, content_type: str, body: bytes) -> LlmResult | None:
    """Parse a JSON, SSE or AWS event-stream response body for ``call``; None when it
    holds nothing usable."""
    if call.wire == "bedrock":
        return _bedrock_response(call, content_type, body)
    text = body.decode("utf-8", "replace")
    if call.wire == "ollama":
        return _ollama_lines(text)
    if content_type == "text/event-stream" or (
        call.stream and text.lstrip().startswith(("data:", "event:"))
    ):
        events = list(iter_sse(text))
        if call.wire == "anthropic":
            return _anthropic_stream(events)
        if call.api == "responses":
            return _responses_stream(events)
        if call.wire == "google":
            return _gemini_stream(events)
        return _chat_stream(events)
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, list) and call.wire == "google":  # streamGenerateContent w/o alt=sse
        return _gemini_stream([("message", _json_text(o)) for o in obj])
    if not isinstance(obj, dict):
        return None
    if "error" in obj and not any(k in obj for k in ("choices", "content", "output", "response")):
        return LlmResult(model=str(obj.get("model", "")), error=obj["error"])
    if call.wire == "anthropic" or obj.get("type") == "message":
        return _anthropic_message(obj)
    if call.api == "responses" or obj.get("object") == "response":
        return _responses_object(obj)
    if call.wire == "google" or "candidates" in obj:
        return _gemini_chunks([obj])
    return _chat_object(obj)


def _bedrock_response(call: LlmCall, content_type: str, body: bytes) -> LlmResult | None:
    if content_type == bedrock.EVENTSTREAM or (call.stream and body[:1] == b"\x00"):
        frames, _cut = bedrock.decode_eventstream(body)
        if call.api == "converse-stream":
            return bedrock.converse_stream_result(frames)
        events, error = bedrock.invoke_stream_events(frames)
        if call.shape == "messages":
            res = _anthropic_stream(events)
        elif call.shape == "converse":
            res = bedrock.nova_stream_result(events)
        else:
            res = _generic_stream(events)
        res.error = res.error or error
        return res
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    if "message" in obj and len(obj) <= 3 and not any(k in obj for k in ("output", "content")):
        return LlmResult(error=obj)  # {"message": "…"} with an x-amzn-ErrorType header
    if call.api == "converse" or "output" in obj:
        return bedrock.converse_result(obj)
    if obj.get("type") == "message" or call.shape == "messages":
        return _anthropic_message(obj)
    if "choices" in obj:
        return _chat_object(obj)
    return _generic_text(obj)


def _generic_text(obj: dict[str, Any]) -> LlmResult:
    """Other InvokeModel bodies: Llama ``generation``, Titan ``results``, Mistral
    ``outputs``, Cohere ``generations``/``text``."""
    texts: list[str] = []
    for key in ("generation", "completion", "text", "outputText"):
        if isinstance(obj.get(key), str):
            texts.append(obj[key])
    for key in ("results", "outputs", "generations"):
        for item in _list(obj.get(key)):
            if isinstance(item, dict):
                texts.append(inputs.text_of(item))
    reason = obj.get("stop_reason") or obj.get("finish_reason") or obj.get("completionReason")
    return LlmResult(text="".join(texts), finish_reason=str(reason or ""))


def _generic_stream(events: list[tuple[str, str]]) -> LlmResult:
    res = LlmResult()
    texts: list[str] = []
    for _, data in events:
        chunk = _loads(data)
        if isinstance(chunk, dict):
            part = _generic_text(chunk)
            texts.append(part.text)
            res.finish_reason = part.finish_reason or res.finish_reason
    res.text = "".join(texts)
    return res


def _chat_object(obj: dict[str, Any]) -> LlmResult:
    res = LlmResult(model=str(obj.get("model", "")), usage=_dict(obj.get("usage")))
    texts: list[str] = []
    for choice in _list(obj.get("choices")):
        if not isinstance(choice, dict):
            continue
        msg = _dict(choice.get("message"))
        if msg.get("content"):
            texts.append(inputs.text_of(msg["content"]))
        res.finish_reason = res.finish_reason or str(choice.get("finish_reason") or "")
        for tc in _list(msg.get("tool_calls")):
            fn = _dict(tc.get("function"))
            res.tool_calls.append(
                ToolCall(str(fn.get("name", "")), _args(fn.get("arguments")), str(tc.get("id", "")))
            )
        if isinstance(msg.get("function_call"), dict):
            fc = msg["function_call"]
            res.tool_calls.append(ToolCall(str(fc.get("name", "")), _args(fc.get("arguments"))))
    res.text = "".join(texts)
    return res


def _chat_stream(events: list[tuple[str, str]]) -> LlmResult:
    """Accumulate chat-completions deltas; tool calls are keyed by (choice, index)."""
    res = LlmResult()
    texts: list[str] = []
    calls: dict[tuple[int, int], dict[str, str]] = {}
    for _, data in events:
        chunk = _loads(data)
        if not isinstance(chunk, dict):
            continue
        res.model = res.model or str(chunk.get("model") or "")
        if isinstance(chunk.get("usage"), dict):
            res.usage = chunk["usage"]
        if "error" in chunk:
            res.error = chunk["error"]
        for choice in _list(chunk.get("choices")):
            if not isinstance(choice, dict):
                continue
            delta = _dict(choice.get("delta"))
            if isinstance(delta.get("content"), str):
                texts.append(delta["content"])
            if choice.get("finish_reason"):
                res.finish_reason = str(choice["finish_reason"])
            ci = _int(choice.get("index"))
            for tc in _list(delta.get("tool_calls")):
                if not isinstance(tc, dict):
                    continue
                slot = calls.setdefault(
                    (ci, _int(tc.get("index"))), {"id": "", "name": "", "arguments": ""}
                )
                fn = _dict(tc.get("function"))
                slot["id"] = slot["id"] or str(tc.get("id") or "")
                slot["name"] += str(fn.get("name") or "")
                slot["arguments"] += str(fn.get("arguments") or "")
            fc = delta.get("function_call")
            if isinstance(fc, dict):
                slot = calls.setdefault((ci, -1), {"id": "", "name": "", "arguments": ""})
                slot["name"] += str(fc.get("name") or "")
                slot["arguments"] += str(fc.get("arguments") or "")
    res.text = "".join(texts)
    res.tool_calls = [
        ToolCall(s["name"], _args(s["arguments"]), s["id"]) for _, s in sorted(calls.items())
    ]
    return res


def _responses_object(obj: dict[str, Any]) -> LlmResult:
    res = LlmResult(model=str(obj.get("model", "")), usage=_dict(obj.get("usage")))
    texts: list[str] = []
    for item in _list(obj.get("output")):
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            texts.append(inputs.text_of(item.get("content")))
        else:
            _responses_item(res, item)
    res.text = "".join(texts)
    incomplete = obj.get("incomplete_details")
    if isinstance(incomplete, dict) and incomplete.get("reason"):
        res.finish_reason = str(incomplete["reason"])
    else:
        res.finish_reason = str(obj.get("status") or "")
    res.error = obj.get("error") or None
    return res


# Responses output items run by OpenAI itself: (tool name, fields that are its arguments).
_RESPONSES_SERVER_TOOLS = {
    "web_search_call": ("web_search", ("action",)),
    "file_search_call": ("file_search", ("queries",)),
    "code_interpreter_call": ("code_interpreter", ("code", "container_id")),
    "image_generation_call": ("image_generation", ("revised_prompt",)),
}


def _responses_item(res: LlmResult, item: dict[str, Any]) -> None:
    """One non-message output item: a function/custom/shell call of the agent's, or a
    tool OpenAI ran (web search, MCP …) with what it fed back to the model."""
    kind = str(item.get("type") or "")
    call_id = str(item.get("call_id") or item.get("id") or "")
    if kind == "function_call":
        res.tool_calls.append(
            ToolCall(str(item.get("name", "")), _args(item.get("arguments")), call_id)
        )
    elif kind == "custom_tool_call":
        res.tool_calls.append(ToolCall(str(item.get("name", "")), item.get("input") or "", call_id))
    elif kind in ("local_shell_call", "shell_call", "computer_call", "apply_patch_call"):
        arguments = item.get("action") or _dict(item.get("operation"))
        res.tool_calls.append(ToolCall(kind.removesuffix("_call"), arguments, call_id))
    elif kind in ("mcp_call", "mcp_approval_request"):
        res.tool_calls.append(
            ToolCall(
                str(item.get("name", "")),
                _args(item.get("arguments")),
                str(item.get("id") or ""),
                mcp_server=str(item.get("server_label") or ""),
                server_tool=True,
            )
        )
        out = item.get("output") if item.get("output") is not None else item.get("error")
        if out is not None:
            res.server_results.append(("mcp_result", _json_text(out)))
    elif kind in _RESPONSES_SERVER_TOOLS:
        name, fields = _RESPONSES_SERVER_TOOLS[kind]
        arguments = {f: item[f] for f in fields if item.get(f) is not None}
        res.tool_calls.append(
            ToolCall(name, arguments, str(item.get("id") or ""), server_tool=True)
        )
        for r in _list(item.get("results")):
            if isinstance(r, dict) and isinstance(r.get("text"), str):
                res.server_results.append(("retrieved", r["text"]))
        for o in _list(item.get("outputs")):
            if isinstance(o, dict) and isinstance(o.get("logs"), str):
                res.server_results.append(("tool_result", o["logs"]))


def _responses_stream(events: list[tuple[str, str]]) -> LlmResult:
    """Responses API stream: the final ``response.completed`` has everything; if the
    stream was cut before it, rebuild from output_item and argument deltas."""
    texts: list[str] = []
    items: dict[str, dict[str, str]] = {}
    order: list[str] = []
    other: list[dict[str, Any]] = []  # finished non-function items (MCP, web search …)
    model = ""
    for name, data in events:
        ev = _loads(data)
        if not isinstance(ev, dict):
            continue
        kind = str(ev.get("type") or name)
        if (
            kind in ("response.completed", "response.incomplete", "response.failed")
            and isinstance(ev.get("response"), dict)
            and ev["response"].get("output") is not None
        ):
            return _responses_object(ev["response"])
        if kind == "response.created" and isinstance(ev.get("response"), dict):
            model = str(ev["response"].get("model") or "")
        elif kind == "response.output_text.delta":
            texts.append(str(ev.get("delta") or ""))
        elif kind in ("response.output_item.added", "response.output_item.done"):
            item = _dict(ev.get("item"))
            if item.get("type") == "function_call":
                key = str(item.get("id") or ev.get("output_index"))
                slot = items.setdefault(key, {"name": "", "call_id": "", "arguments": ""})
                if key not in order:
                    order.append(key)
                slot["name"] = str(item.get("name") or slot["name"])
                slot["call_id"] = str(item.get("call_id") or slot["call_id"])
                if kind.endswith(".done") and item.get("arguments") is not None:
                    slot["arguments"] = str(item["arguments"])
            elif kind.endswith(".done") and item.get("type") not in (None, "message", "reasoning"):
                other.append(item)
        elif kind == "response.function_call_arguments.delta":
            key = str(ev.get("item_id") or ev.get("output_index"))
            slot = items.setdefault(key, {"name": "", "call_id": "", "arguments": ""})
            if key not in order:
                order.append(key)
            slot["arguments"] += str(ev.get("delta") or "")
        elif kind == "response.function_call_arguments.done":
            key = str(ev.get("item_id") or ev.get("output_index"))
            if key in items and ev.get("arguments") is not None:
                items[key]["arguments"] = str(ev["arguments"])
    res = LlmResult(model=model, text="".join(texts), finish_reason="incomplete_stream")
    res.tool_calls = [
        ToolCall(items[k]["name"], _args(items[k]["arguments"]), items[k]["call_id"]) for k in order
    ]
    for item in other:
        _responses_item(res, item)
    return res


def _anthropic_message(obj: dict[str, Any]) -> LlmResult:
    res = LlmResult(
        model=str(obj.get("model", "")),
        usage=_dict(obj.get("usage")),
        finish_reason=str(obj.get("stop_reason") or ""),
    )
    texts: list[str] = []
    for block in _list(obj.get("content")):
        if _is_block(block, "text"):
            texts.append(str(block.get("text", "")))
        elif isinstance(block, dict):
            _anthropic_block(res, block, block.get("input"))
    res.text = "".join(texts)
    return res


def _anthropic_block(res: LlmResult, block: dict[str, Any], arguments: Any) -> None:
    """A tool_use (the agent's tool), server_tool_use / mcp_tool_use (run by Anthropic),
    or the result of a provider-run tool, which the model read in this same turn."""
    kind = block.get("type")
    if kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
        res.tool_calls.append(
            ToolCall(
                str(block.get("name", "")),
                arguments if arguments is not None else {},
                str(block.get("id", "")),
                mcp_server=str(block.get("server_name") or ""),
                server_tool=kind != "tool_use",
            )
        )
        return
    if not isinstance(kind, str) or not kind.endswith("_result"):
        return
    probe = {"role": "assistant", "content": [block]}
    for m in inputs.parse_request("messages", {"messages": [probe]})["messages"]:
        if m["channel"] in inputs.UNTRUSTED and m["content"]:
            res.server_results.append((m["channel"], m["content"]))


def _anthropic_stream(events: list[tuple[str, str]]) -> LlmResult:
    """message_start / content_block_* / message_delta; tool input arrives as
    ``input_json_delta.partial_json`` fragments joined per block index."""
    res = LlmResult()
    blocks: dict[int, dict[str, Any]] = {}
    for name, data in events:
        ev = _loads(data)
        if not isinstance(ev, dict):
            continue
        kind = str(ev.get("type") or name)
        if kind == "message_start":
            msg = _dict(ev.get("message"))
            res.model = str(msg.get("model") or "")
            res.usage = dict(_dict(msg.get("usage")))
        elif kind == "content_block_start":
            cb = _dict(ev.get("content_block"))
            blocks[_int(ev.get("index"))] = {
                "block": cb if isinstance(cb, dict) else {},
                "type": cb.get("type"),
                "text": str(cb.get("text") or ""),
                "json": "",
            }
        elif kind == "content_block_delta":
            slot = blocks.setdefault(
                _int(ev.get("index")), {"block": {}, "type": "text", "text": "", "json": ""}
            )
            delta = _dict(ev.get("delta"))
            if delta.get("type") == "text_delta":
                slot["text"] += str(delta.get("text") or "")
            elif delta.get("type") == "input_json_delta":
                slot["json"] += str(delta.get("partial_json") or "")
        elif kind == "message_delta":
            delta = _dict(ev.get("delta"))
            res.finish_reason = str(delta.get("stop_reason") or res.finish_reason)
            res.usage.update(_dict(ev.get("usage")))
        elif kind == "error":
            res.error = ev.get("error")
    texts: list[str] = []
    for _, b in sorted(blocks.items()):
        if b.get("type") == "text":
            if b.get("text"):
                texts.append(b["text"])
            continue
        block = b["block"]
        arguments = _args(b["json"]) if b["json"] else block.get("input")
        _anthropic_block(res, block, arguments)
    res.text = "".join(texts)
    return res


def _gemini_stream(events: list[tuple[str, str]]) -> LlmResult:
    return _gemini_chunks([c for _, d in events if isinstance(c := _loads(d), dict)])


def _gemini_chunks(chunks: list[dict[str, Any]]) -> LlmResult:
    res = LlmResult()
    texts: list[str] = []
    for chunk in chunks:
        if isinstance(chunk.get("response"), dict) and "candidates" not in chunk:
            chunk = chunk["response"]  # Gemini Code Assist wraps each chunk
        res.model = res.model or str(chunk.get("modelVersion") or "")
        if isinstance(chunk.get("usageMetadata"), dict):
            res.usage = chunk["usageMetadata"]
        for cand in _list(chunk.get("candidates")):
            if not isinstance(cand, dict):
                continue
            res.finish_reason = str(cand.get("finishReason") or res.finish_reason)
            for part in _list(_dict(cand.get("content")).get("parts")):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif isinstance(part, dict) and isinstance(part.get("functionCall"), dict):
                    fc = part["functionCall"]
                    res.tool_calls.append(
                        ToolCall(
                            str(fc.get("name", "")), _dict(fc.get("args")), str(fc.get("id") or "")
                        )
                    )
    res.text = "".join(texts)
    return res


def _ollama_lines(text: str) -> LlmResult:
    """Ollama NDJSON (or one JSON object when not streamed): message deltas, then done."""
    res = LlmResult()
    texts: list[str] = []
    for line in text.splitlines():
        chunk = _loads(line.strip())
        if not isinstance(chunk, dict):
            continue
        res.model = res.model or str(chunk.get("model") or "")
        if "error" in chunk:
            res.error = chunk["error"]
        msg = _dict(chunk.get("message"))
        if isinstance(msg.get("content"), str):
            texts.append(msg["content"])
        if isinstance(chunk.get("response"), str):  # /api/generate
            texts.append(chunk["response"])
        for tc in _list(msg.get("tool_calls")):
            fn = _dict(_dict(tc).get("function"))
            res.tool_calls.append(
                ToolCall(
                    str(fn.get("name", "")), _args(fn.get("arguments")), str(tc.get("id") or "")
                )
            )
        if chunk.get("done"):
            res.finish_reason = str(chunk.get("done_reason") or "stop")
            res.usage = {k: chunk[k] for k in ("prompt_eval_count", "eval_count") if k in chunk}
    res.text = "".join(texts)
    return res


def _loads(data: str) -> Any:
    if not data or data == "[DONE]":
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
