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
from dataclasses import dataclass, field
from typing import Any

import orjson

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
    ("amazonaws.com", "bedrock"),
)
_GEMINI_PATH = re.compile(r"/models/([^/:?]+):(generateContent|streamGenerateContent)")


@dataclass(frozen=True, slots=True)
class LlmCall:
    """What a request was: used again to parse its response."""

    provider: str
    api: str  # chat.completions | responses | messages | generate_content
    wire: str  # the wire format family: openai | anthropic | google
    model: str = ""
    stream: bool = False


@dataclass(slots=True)
class ToolCall:
    tool: str
    arguments: Any
    call_id: str = ""


@dataclass(slots=True)
class LlmResult:
    model: str = ""
    text: str = ""
    finish_reason: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    tool_calls: list[ToolCall] = field(default_factory=list)
    error: Any = None


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
    api = wire = ""
    if route.endswith(("/api/chat", "/api/generate")) and model:
        # Ollama's native API: streams NDJSON unless "stream": false.
        api = "ollama.chat" if route.endswith("/api/chat") else "ollama.generate"
        return LlmCall("ollama", api, "ollama", model, obj.get("stream") is not False)
    if route.endswith("/chat/completions"):
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
    if "/model/" in route and "amazonaws" in host:  # Bedrock invoke: model id in the path
        model = model or route.split("/model/", 1)[1].split("/", 1)[0]
    return LlmCall(provider=_vendor(host, wire), api=api, wire=wire, model=model, stream=stream)


# -- requests ---------------------------------------------------------------------------

_SALVAGE_SCALARS = re.compile(r'"(model|stream)"\s*:\s*("(?:[^"\\]|\\.){0,200}"|true|false)')
_DECODER = json.JSONDecoder()


def salvage_request(body: bytes) -> dict[str, Any] | None:
    """The complete leading parts of a JSON request body cut short by a capture cap.

    A long conversation can exceed the per-call capture or the per-message body cap;
    rather than lose the whole ``llm.request``, keep ``model``/``stream`` and every
    *complete* element of the ``messages``/``input``/``contents``/``tools`` arrays that
    made it. The result carries ``"_partial": True``.
    """
    text = body.decode("utf-8", "replace")
    if not text.lstrip().startswith("{"):
        return None
    out: dict[str, Any] = {"_partial": True}
    for key, value in _SALVAGE_SCALARS.findall(text[: 1 << 16]):
        if key not in out:
            try:
                out[key] = json.loads(value)
            except ValueError:
                continue
    for key in ("messages", "input", "contents", "tools", "system"):
        found = re.search(r'"' + key + r'"\s*:\s*', text)
        if not found:
            continue
        pos = found.end()
        if text[pos : pos + 1] != "[":
            with contextlib.suppress(ValueError):
                out[key], _ = _DECODER.raw_decode(text, pos)
            continue
        items: list[Any] = []
        pos += 1
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(text) or text[pos] == "]":
                break
            try:
                item, pos = _DECODER.raw_decode(text, pos)
            except ValueError:
                break
            items.append(item)
        out[key] = items
    return out if any(k in out for k in ("messages", "input", "contents")) else None


def _text_of(content: Any) -> str:
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
            for key in ("text", "input_text", "output_text", "content", "output"):
                value = part.get(key)
                if isinstance(value, str):
                    parts.append(value)
                    break
                if isinstance(value, list):
                    parts.append(_text_of(value))
                    break
    return "\n".join(p for p in parts if p)


def _msg(role: str, content: Any, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"role": role, "content": _text_of(content)}
    out.update({k: v for k, v in extra.items() if v})
    return out


def parse_request(call: LlmCall, obj: dict[str, Any]) -> dict[str, Any]:
    """Messages (role + text) and offered tools of a request, in a provider-neutral form.

    Tool results are given role ``tool`` whatever the provider calls them, because they
    are the channel indirect prompt injection travels on. ``tool_descriptions`` maps each
    offered tool to its description (tool poisoning hides instructions there).
    """
    messages: list[dict[str, Any]] = []
    tools: list[str] = []
    descriptions: dict[str, str] = {}
    if call.api == "ollama.generate":
        if obj.get("system"):
            messages.append(_msg("system", obj["system"]))
        messages.append(_msg("user", obj.get("prompt")))
    elif call.api in ("chat.completions", "ollama.chat"):
        for m in obj.get("messages") or []:
            if not isinstance(m, dict):
                continue
            role = str(m.get("role", ""))
            calls = [
                (tc.get("function") or {}).get("name", "")
                for tc in m.get("tool_calls") or []
                if isinstance(tc, dict)
            ]
            messages.append(
                _msg(role, m.get("content"), tool_calls=calls, tool_call_id=m.get("tool_call_id"))
            )
        for t in obj.get("tools") or []:
            fn = t.get("function", t) if isinstance(t, dict) else {}
            _add_tool(tools, descriptions, fn.get("name") or t.get("type"), fn.get("description"))
        for fn in obj.get("functions") or []:
            if isinstance(fn, dict):
                _add_tool(tools, descriptions, fn.get("name"), fn.get("description"))
    elif call.api == "responses":
        if obj.get("instructions"):
            messages.append(_msg("system", obj["instructions"]))
        items = obj.get("input")
        if isinstance(items, str):
            messages.append(_msg("user", items))
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            kind = item.get("type", "message")
            if kind == "message" or "role" in item:
                messages.append(_msg(str(item.get("role", "user")), item.get("content")))
            elif kind.endswith("_call_output"):
                messages.append(_msg("tool", item.get("output"), tool_call_id=item.get("call_id")))
            elif kind == "function_call":
                messages.append(_msg("assistant", "", tool_calls=[item.get("name", "")]))
        for t in obj.get("tools") or []:
            if isinstance(t, dict):
                _add_tool(tools, descriptions, t.get("name") or t.get("type"), t.get("description"))
    elif call.api == "messages":
        if obj.get("system"):
            messages.append(_msg("system", obj["system"]))
        for m in obj.get("messages") or []:
            if not isinstance(m, dict):
                continue
            role = str(m.get("role", ""))
            content = m.get("content")
            if isinstance(content, list):
                plain = [b for b in content if not _is_block(b, "tool_result", "tool_use")]
                calls = [b.get("name", "") for b in content if _is_block(b, "tool_use")]
                if plain or calls:
                    messages.append(_msg(role, plain, tool_calls=calls))
                for b in content:
                    if _is_block(b, "tool_result"):
                        messages.append(
                            _msg(
                                "tool",
                                b.get("content"),
                                tool_call_id=b.get("tool_use_id"),
                                is_error=b.get("is_error"),
                            )
                        )
            else:
                messages.append(_msg(role, content))
        for t in obj.get("tools") or []:
            if isinstance(t, dict):
                _add_tool(tools, descriptions, t.get("name") or t.get("type"), t.get("description"))
    else:  # generate_content
        system = obj.get("systemInstruction") or obj.get("system_instruction")
        if isinstance(system, dict):
            messages.append(_msg("system", system.get("parts")))
        for c in obj.get("contents") or []:
            if not isinstance(c, dict):
                continue
            parts = [p for p in c.get("parts") or [] if isinstance(p, dict)]
            texts = [p for p in parts if "text" in p]
            calls = [
                (p.get("functionCall") or {}).get("name", "") for p in parts if "functionCall" in p
            ]
            if texts or calls:
                messages.append(_msg(str(c.get("role", "user")), texts, tool_calls=calls))
            for p in parts:
                if "functionResponse" in p:
                    resp = p["functionResponse"] or {}
                    messages.append(_msg("tool", _json_text(resp.get("response"))))
        for t in obj.get("tools") or []:
            for fn in (
                t.get("functionDeclarations") or t.get("function_declarations") or []
                if isinstance(t, dict)
                else []
            ):
                _add_tool(tools, descriptions, fn.get("name"), fn.get("description"))
    return {"messages": messages, "tools": tools, "tool_descriptions": descriptions}


def _add_tool(tools: list[str], desc: dict[str, str], name: Any, description: Any) -> None:
    if isinstance(name, str) and name:
        tools.append(name)
        if isinstance(description, str) and description:
            desc[name] = description


def _is_block(block: Any, *types: str) -> bool:
    return isinstance(block, dict) and block.get("type") in types


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def _args(value: Any) -> Any:
    """Tool arguments: parsed JSON when the string is valid JSON, else the string."""
    if isinstance(value, str):
        try:
            return orjson.loads(value) if value.strip() else {}
        except orjson.JSONDecodeError:
            return value
    return value if value is not None else {}


# -- responses --------------------------------------------------------------------------


def parse_response(call: LlmCall, content_type: str, body: bytes) -> LlmResult | None:
    """Parse a JSON or SSE response body for ``call``; None when it holds nothing usable."""
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
    if "error" in obj and not any(k in obj for k in ("choices", "content", "output")):
        return LlmResult(model=str(obj.get("model", "")), error=obj["error"])
    if call.wire == "anthropic" or obj.get("type") == "message":
        return _anthropic_message(obj)
    if call.api == "responses" or obj.get("object") == "response":
        return _responses_object(obj)
    if call.wire == "google" or "candidates" in obj:
        return _gemini_chunks([obj])
    return _chat_object(obj)


def _chat_object(obj: dict[str, Any]) -> LlmResult:
    res = LlmResult(model=str(obj.get("model", "")), usage=_dict(obj.get("usage")))
    texts: list[str] = []
    for choice in obj.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        msg = choice.get("message") or {}
        if msg.get("content"):
            texts.append(_text_of(msg["content"]))
        res.finish_reason = res.finish_reason or str(choice.get("finish_reason") or "")
        for tc in msg.get("tool_calls") or []:
            fn = tc.get("function") or {}
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
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                texts.append(delta["content"])
            if choice.get("finish_reason"):
                res.finish_reason = str(choice["finish_reason"])
            ci = int(choice.get("index") or 0)
            for tc in delta.get("tool_calls") or []:
                if not isinstance(tc, dict):
                    continue
                slot = calls.setdefault(
                    (ci, int(tc.get("index") or 0)), {"id": "", "name": "", "arguments": ""}
                )
                fn = tc.get("function") or {}
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
    for item in obj.get("output") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            texts.append(_text_of(item.get("content")))
        elif item.get("type") == "function_call":
            res.tool_calls.append(
                ToolCall(
                    str(item.get("name", "")),
                    _args(item.get("arguments")),
                    str(item.get("call_id") or item.get("id") or ""),
                )
            )
    res.text = "".join(texts)
    incomplete = obj.get("incomplete_details")
    if isinstance(incomplete, dict) and incomplete.get("reason"):
        res.finish_reason = str(incomplete["reason"])
    else:
        res.finish_reason = str(obj.get("status") or "")
    res.error = obj.get("error") or None
    return res


def _responses_stream(events: list[tuple[str, str]]) -> LlmResult:
    """Responses API stream: the final ``response.completed`` has everything; if the
    stream was cut before it, rebuild from output_item and argument deltas."""
    texts: list[str] = []
    items: dict[str, dict[str, str]] = {}
    order: list[str] = []
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
            item = ev.get("item") or {}
            if item.get("type") == "function_call":
                key = str(item.get("id") or ev.get("output_index"))
                slot = items.setdefault(key, {"name": "", "call_id": "", "arguments": ""})
                if key not in order:
                    order.append(key)
                slot["name"] = str(item.get("name") or slot["name"])
                slot["call_id"] = str(item.get("call_id") or slot["call_id"])
                if kind.endswith(".done") and item.get("arguments") is not None:
                    slot["arguments"] = str(item["arguments"])
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
    return res


def _anthropic_message(obj: dict[str, Any]) -> LlmResult:
    res = LlmResult(
        model=str(obj.get("model", "")),
        usage=_dict(obj.get("usage")),
        finish_reason=str(obj.get("stop_reason") or ""),
    )
    texts: list[str] = []
    for block in obj.get("content") or []:
        if _is_block(block, "text"):
            texts.append(str(block.get("text", "")))
        elif _is_block(block, "tool_use", "server_tool_use"):
            res.tool_calls.append(
                ToolCall(
                    str(block.get("name", "")), block.get("input") or {}, str(block.get("id", ""))
                )
            )
    res.text = "".join(texts)
    return res


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
            msg = ev.get("message") or {}
            res.model = str(msg.get("model") or "")
            res.usage = dict(_dict(msg.get("usage")))
        elif kind == "content_block_start":
            cb = ev.get("content_block") or {}
            blocks[int(ev.get("index") or 0)] = {
                "type": cb.get("type"),
                "name": cb.get("name", ""),
                "id": cb.get("id", ""),
                "text": str(cb.get("text") or ""),
                "json": "",
                "input": cb.get("input"),
            }
        elif kind == "content_block_delta":
            slot = blocks.setdefault(
                int(ev.get("index") or 0), {"type": "text", "text": "", "json": ""}
            )
            delta = ev.get("delta") or {}
            if delta.get("type") == "text_delta":
                slot["text"] += str(delta.get("text") or "")
            elif delta.get("type") == "input_json_delta":
                slot["json"] += str(delta.get("partial_json") or "")
        elif kind == "message_delta":
            delta = ev.get("delta") or {}
            res.finish_reason = str(delta.get("stop_reason") or res.finish_reason)
            res.usage.update(_dict(ev.get("usage")))
        elif kind == "error":
            res.error = ev.get("error")
    texts: list[str] = []
    for _, b in sorted(blocks.items()):
        if b.get("type") in ("tool_use", "server_tool_use"):
            args = _args(b["json"]) if b["json"] else (b.get("input") or {})
            res.tool_calls.append(ToolCall(str(b.get("name", "")), args, str(b.get("id", ""))))
        elif b.get("text"):
            texts.append(b["text"])
    res.text = "".join(texts)
    return res


def _gemini_stream(events: list[tuple[str, str]]) -> LlmResult:
    return _gemini_chunks([c for _, d in events if isinstance(c := _loads(d), dict)])


def _gemini_chunks(chunks: list[dict[str, Any]]) -> LlmResult:
    res = LlmResult()
    texts: list[str] = []
    for chunk in chunks:
        res.model = res.model or str(chunk.get("modelVersion") or "")
        if isinstance(chunk.get("usageMetadata"), dict):
            res.usage = chunk["usageMetadata"]
        for cand in chunk.get("candidates") or []:
            if not isinstance(cand, dict):
                continue
            res.finish_reason = str(cand.get("finishReason") or res.finish_reason)
            for part in (cand.get("content") or {}).get("parts") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif isinstance(part, dict) and isinstance(part.get("functionCall"), dict):
                    fc = part["functionCall"]
                    res.tool_calls.append(
                        ToolCall(
                            str(fc.get("name", "")), fc.get("args") or {}, str(fc.get("id") or "")
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
        msg = chunk.get("message") or {}
        if isinstance(msg.get("content"), str):
            texts.append(msg["content"])
        if isinstance(chunk.get("response"), str):  # /api/generate
            texts.append(chunk["response"])
        for tc in msg.get("tool_calls") or []:
            fn = (tc or {}).get("function") or {}
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


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
