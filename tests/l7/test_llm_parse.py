"""LLM provider parsing through L7Parser on documented wire formats."""

from __future__ import annotations

import orjson
import pytest

from collectors.l7.parser import L7Event, L7Parser
from tests.l7 import wire


def exchange(req: bytes, resp: bytes) -> list[L7Event]:
    p = L7Parser()
    return p.feed("c", "egress", req, 1) + p.feed("c", "ingress", resp, 2)


def only(events: list[L7Event], kind: str) -> list[L7Event]:
    return [e for e in events if e.kind == kind]


def test_openai_chat_request_fields() -> None:
    (ev,) = only(
        exchange(wire.request("POST", "/v1/chat/completions", wire.CHAT_REQUEST), b""),
        "llm.request",
    )
    d = ev.data
    assert (d["provider"], d["api"], d["model"], d["stream"]) == (
        "openai",
        "chat.completions",
        "gpt-4o",
        False,
    )
    assert d["messages"] == [
        {"role": "system", "channel": "system", "content": "You are a helpful assistant."},
        {
            "role": "user",
            "channel": "user",
            "content": "What's the weather like in Boston today?",
        },
    ]
    assert d["tools"] == ["get_weather"]
    assert (d["host"], d["path"]) == ("api.openai.com", "/v1/chat/completions")
    assert d["injection"]["score"] == 0.0


def test_openai_chat_tool_call_response() -> None:
    ev = exchange(
        wire.request("POST", "/v1/chat/completions", wire.CHAT_REQUEST),
        wire.response(wire.CHAT_RESPONSE_TOOL),
    )
    (resp,) = only(ev, "llm.response")
    assert resp.data["model"] == "gpt-4o-2024-08-06"
    assert resp.data["finish_reason"] == "tool_calls"
    assert resp.data["usage"]["total_tokens"] == 99
    (call,) = only(ev, "llm.tool_call")
    assert call.data["tool"] == "get_weather"
    assert call.data["arguments"] == {"location": "Boston, MA"}
    assert call.data["call_id"] == "call_abc123"
    assert call.ts == 2


def test_openai_streamed_tool_call_deltas_accumulate() -> None:
    req = dict(wire.CHAT_REQUEST, stream=True, stream_options={"include_usage": True})
    ev = exchange(
        wire.request("POST", "/v1/chat/completions", req),
        wire.response(wire.chat_stream_body(), content_type="text/event-stream", chunked=True),
    )
    (resp,) = only(ev, "llm.response")
    assert resp.data["stream"] is True
    assert resp.data["text"] == "Let me check. "
    assert resp.data["finish_reason"] == "tool_calls"
    assert resp.data["usage"]["total_tokens"] == 21
    calls = only(ev, "llm.tool_call")
    assert [(c.data["tool"], c.data["arguments"], c.data["call_id"]) for c in calls] == [
        (
            "get_weather",
            {"location": "Paris, France", "unit": "c"},
            "call_DdmO9pD3xa9XTPNJ32zg2hcA",
        ),
        ("get_time", {"tz": "CET"}, "call_2"),
    ]


def test_tool_result_message_is_scored_for_injection() -> None:
    (ev,) = only(
        exchange(
            wire.request("POST", "/v1/chat/completions", wire.CHAT_REQUEST_WITH_TOOL_RESULT), b""
        ),
        "llm.request",
    )
    roles = [m["role"] for m in ev.data["messages"]]
    assert roles == ["user", "assistant", "tool"]
    assert ev.data["messages"][1]["tool_calls"] == ["get_ticket"]
    inj = ev.data["injection"]
    assert inj["score"] >= 0.5 and inj["source"] == "messages[2]"
    assert "override.ignore_prior" in inj["indicators"]
    assert "url.exfil_host" in inj["indicators"]


def test_invalid_json_arguments_are_kept_as_string() -> None:
    body = dict(wire.CHAT_RESPONSE_TOOL)
    body["choices"] = [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "run", "arguments": '{"cmd": "ls'},
                    }
                ],
            },
        }
    ]
    ev = exchange(
        wire.request("POST", "/v1/chat/completions", wire.CHAT_REQUEST), wire.response(body)
    )
    (call,) = only(ev, "llm.tool_call")
    assert call.data["arguments"] == '{"cmd": "ls'


def test_responses_api_request_and_json_response() -> None:
    req = dict(wire.RESPONSES_REQUEST, stream=False)
    ev = exchange(wire.request("POST", "/v1/responses", req), wire.response(wire.RESPONSES_OBJECT))
    (r,) = only(ev, "llm.request")
    assert (r.data["api"], r.data["model"]) == ("responses", "gpt-4.1")
    assert [m["role"] for m in r.data["messages"]] == ["system", "user", "assistant", "tool"]
    assert r.data["messages"][1]["content"] == "What is the weather in Paris?"
    assert r.data["messages"][3]["content"] == "No docs found."
    assert r.data["tools"] == ["get_weather", "web_search_preview"]
    (resp,) = only(ev, "llm.response")
    assert resp.data["text"] == "Checking the weather."
    assert resp.data["finish_reason"] == "completed"
    (call,) = only(ev, "llm.tool_call")
    assert (call.data["tool"], call.data["arguments"], call.data["call_id"]) == (
        "get_weather",
        {"location": "Paris, France"},
        "call_12345xyz",
    )


@pytest.mark.parametrize("with_completed", [True, False])
def test_responses_api_stream(with_completed: bool) -> None:
    ev = exchange(
        wire.request("POST", "/v1/responses", wire.RESPONSES_REQUEST),
        wire.response(
            wire.responses_stream_body(with_completed),
            content_type="text/event-stream",
            chunked=True,
        ),
    )
    (resp,) = only(ev, "llm.response")
    assert resp.data["text"] == "Checking the weather."
    (call,) = only(ev, "llm.tool_call")
    assert (call.data["tool"], call.data["arguments"], call.data["call_id"]) == (
        "get_weather",
        {"location": "Paris, France"},
        "call_12345xyz",
    )


def test_anthropic_request_tool_result_becomes_tool_role() -> None:
    (r,) = only(
        exchange(
            wire.request(
                "POST",
                "/v1/messages",
                wire.ANTHROPIC_REQUEST,
                host="api.anthropic.com",
                headers={"x-api-key": wire.ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
            ),
            b"",
        ),
        "llm.request",
    )
    assert (r.data["provider"], r.data["api"], r.data["model"], r.data["stream"]) == (
        "anthropic",
        "messages",
        "claude-sonnet-4-5",
        True,
    )
    msgs = r.data["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool"]
    assert msgs[2]["tool_calls"] == ["get_weather"]
    assert msgs[3]["content"] == "15 degrees, foggy"
    assert r.data["tools"] == ["get_weather"]


def test_anthropic_json_response_tool_use() -> None:
    ev = exchange(
        wire.request(
            "POST",
            "/v1/messages",
            dict(wire.ANTHROPIC_REQUEST, stream=False),
            host="api.anthropic.com",
        ),
        wire.response(wire.ANTHROPIC_RESPONSE),
    )
    (resp,) = only(ev, "llm.response")
    assert (resp.data["text"], resp.data["finish_reason"]) == ("I'll look that up.", "tool_use")
    (call,) = only(ev, "llm.tool_call")
    assert call.data["arguments"] == {"location": "San Francisco, CA", "unit": "celsius"}
    assert call.data["call_id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"


def test_anthropic_stream_input_json_delta() -> None:
    ev = exchange(
        wire.request("POST", "/v1/messages", wire.ANTHROPIC_REQUEST, host="api.anthropic.com"),
        wire.response(wire.anthropic_stream_body(), content_type="text/event-stream"),
    )
    (resp,) = only(ev, "llm.response")
    assert resp.data["model"] == "claude-sonnet-4-5-20250929"
    assert resp.data["text"] == "Okay, let's check the weather."
    assert resp.data["finish_reason"] == "tool_use"
    assert resp.data["usage"] == {"input_tokens": 472, "output_tokens": 89}
    (call,) = only(ev, "llm.tool_call")
    assert call.data["tool"] == "get_weather"
    assert call.data["arguments"] == {"location": "San Francisco, CA", "unit": "celsius"}


def test_openai_compatible_on_unknown_host_detected_by_path_and_shape() -> None:
    body = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}]}
    (r,) = only(
        exchange(wire.request("POST", "/v1/chat/completions", body, host="127.0.0.1:11434"), b""),
        "llm.request",
    )
    assert (r.data["provider"], r.data["api"], r.data["model"]) == (
        "openai",
        "chat.completions",
        "llama3.1:8b",
    )
    (r,) = only(
        exchange(wire.request("POST", "/api/generate-ish", body, host="llm.internal"), b""),
        "llm.request",
    )
    assert r.data["api"] == "chat.completions"
    (r,) = only(
        exchange(
            wire.request("POST", "/openai/v1/chat/completions", body, host="api.groq.com"), b""
        ),
        "llm.request",
    )
    assert r.data["provider"] == "groq"


def test_gemini_generate_content() -> None:
    req = {
        "contents": [{"role": "user", "parts": [{"text": "Weather in Rome?"}]}],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "w"}]}],
    }
    resp = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}],
                },
                "finishReason": "STOP",
            }
        ],
        "modelVersion": "gemini-2.0-flash",
    }
    ev = exchange(
        wire.request(
            "POST",
            "/v1beta/models/gemini-2.0-flash:generateContent",
            req,
            host="generativelanguage.googleapis.com",
        ),
        wire.response(resp),
    )
    (r,) = only(ev, "llm.request")
    assert (r.data["provider"], r.data["model"], r.data["tools"]) == (
        "google",
        "gemini-2.0-flash",
        ["get_weather"],
    )
    (call,) = only(ev, "llm.tool_call")
    assert call.data["arguments"] == {"city": "Rome"}


def test_error_response_is_reported() -> None:
    err = {
        "error": {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    ev = exchange(
        wire.request("POST", "/v1/chat/completions", wire.CHAT_REQUEST),
        wire.response(err, status=401),
    )
    (resp,) = only(ev, "llm.response")
    assert resp.data["status"] == 401 and resp.data["error"]["code"] == "invalid_api_key"


def test_non_llm_json_post_is_only_http() -> None:
    ev = exchange(
        wire.request("POST", "/api/orders", {"sku": "A1", "qty": 2}, host="shop.local"),
        wire.response({"ok": True}),
    )
    assert [e.kind for e in ev] == ["http.request", "http.response"]


def test_events_are_json_serializable() -> None:
    ev = exchange(
        wire.request("POST", "/v1/messages", wire.ANTHROPIC_REQUEST, host="api.anthropic.com"),
        wire.response(wire.anthropic_stream_body(), content_type="text/event-stream"),
    )
    for e in ev:
        assert isinstance(orjson.loads(orjson.dumps(e.data)), dict)


def test_truncated_request_is_salvaged_with_complete_messages() -> None:
    history = [{"role": "user", "content": f"question {i} " + "x" * 200} for i in range(40)]
    body = {"model": "gpt-4o", "stream": True, "messages": history, "tools": wire.CHAT_TOOLS}
    raw = orjson.dumps(body)
    p = L7Parser(max_body=3000)
    ev = p.feed("c", "egress", wire.request("POST", "/v1/chat/completions", body), 1)
    (r,) = only(ev, "llm.request")
    assert r.data["partial"] is True and r.data["model"] == "gpt-4o" and r.data["stream"] is True
    kept = r.data["messages"]
    assert 5 <= len(kept) < 40 and kept[0]["content"].startswith("question 0 ")
    assert p.stats["salvaged"] == 1 and p.stats["truncated"] == 1
    assert len(raw) > 3000


def test_capture_gap_filled_with_spaces_is_salvaged() -> None:
    """The capture feeds missing bytes of a cut SSL call as spaces to keep framing."""
    body = orjson.dumps(dict(wire.CHAT_REQUEST_WITH_TOOL_RESULT))
    cut = body.index(b"Ticket 4711") + 20  # inside the last message
    filled = body[:cut] + b" " * (len(body) - cut)
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    p = L7Parser()
    (r,) = only(p.feed("c", "egress", head + filled, 1), "llm.request")
    assert r.data["partial"] is True
    # The last message was cut in its text: kept up to the cut (the filler stripped).
    assert [m["role"] for m in r.data["messages"]] == ["user", "assistant", "tool"]
    assert r.data["messages"][2]["content"] == "Ticket 4711: printer"
    # The next request on the connection still parses.
    ev = p.feed("c", "egress", wire.request("GET", "/v1/models"), 2)
    assert ev[0].data["path"] == "/v1/models"


def test_ollama_chat_ndjson_stream_with_tool_call() -> None:
    req = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "Weather in Toronto?"}],
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_current_weather", "parameters": {"type": "object"}},
            }
        ],
    }
    lines = [
        {
            "model": "llama3.2",
            "created_at": "2025-01-01T00:00:00Z",
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "function": {
                            "name": "get_current_weather",
                            "arguments": {"location": "Toronto", "format": "celsius"},
                        }
                    }
                ],
            },
            "done": False,
        },
        {
            "model": "llama3.2",
            "created_at": "2025-01-01T00:00:01Z",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 26,
            "eval_count": 25,
        },
    ]
    body = b"\n".join(orjson.dumps(x) for x in lines) + b"\n"
    ev = exchange(
        wire.request("POST", "/api/chat", req, host="ollama.ai-system:11434"),
        wire.response(body, content_type="application/x-ndjson", chunked=True),
    )
    (r,) = only(ev, "llm.request")
    assert (r.data["provider"], r.data["api"], r.data["stream"], r.data["tools"]) == (
        "ollama",
        "ollama.chat",
        True,
        ["get_current_weather"],
    )
    (resp,) = only(ev, "llm.response")
    assert resp.data["finish_reason"] == "stop" and resp.data["usage"]["eval_count"] == 25
    (call,) = only(ev, "llm.tool_call")
    assert call.data["arguments"] == {"location": "Toronto", "format": "celsius"}


def test_ollama_generate_not_streamed() -> None:
    req = {"model": "qwen2.5", "prompt": "Why is the sky blue?", "stream": False}
    ev = exchange(
        wire.request("POST", "/api/generate", req, host="localhost:11434"),
        wire.response(
            {
                "model": "qwen2.5",
                "response": "Rayleigh scattering.",
                "done": True,
                "done_reason": "stop",
            }
        ),
    )
    (r,) = only(ev, "llm.request")
    assert r.data["messages"] == [
        {"role": "user", "channel": "user", "content": "Why is the sky blue?"}
    ]
    (resp,) = only(ev, "llm.response")
    assert resp.data["text"] == "Rayleigh scattering."


def test_azure_openai_deployment_names_the_model() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    path = "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    (r,) = only(
        exchange(
            wire.request(
                "POST",
                path,
                body,
                host="acme.openai.azure.com",
                headers={"api-key": wire.OPENAI_KEY},
            ),
            b"",
        ),
        "llm.request",
    )
    assert (r.data["provider"], r.data["model"]) == ("azure-openai", "gpt4o-prod")
