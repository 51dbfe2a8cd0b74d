"""A scripted LLM provider on 127.0.0.1 that records the exact bytes of every exchange.

Real SDK clients (openai, anthropic, boto3 for Bedrock, pydantic-ai on top of them) are
pointed at it; the bytes each one wrote and the bytes it got back are what the parser
tests feed to :class:`L7Parser`. The client must accept every answer (the SDK parses it
and the test checks what it parsed), which is how the test double is held to the real
wire format: OpenAI chat completions and Responses, Anthropic messages (JSON and SSE),
Bedrock Converse / ConverseStream / InvokeModel / InvokeModelWithResponseStream (AWS
event-stream frames with their CRCs, encoded by :func:`eventstream_frame`).

The script: ``plan`` is the list of tool calls the "model" makes, one per turn (turn =
how many tool results the request already carries); after the plan it answers with text.
HTTPS when a certificate is given (for the live capture tests), plain HTTP otherwise.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import ssl
import struct
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

__all__ = ["Exchange", "ScriptedProvider", "eventstream_frame"]

FINAL_TEXT = "All done: the order ships Monday."


@dataclass
class Exchange:
    """One request/response pair as it crossed the wire."""

    request: bytes
    response: bytes
    path: str
    body: Any


def eventstream_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total, headers length, CRC), string
    headers (type 7), payload, message CRC (CRC-32 over everything before it)."""
    head = b"".join(
        bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
        for k, v in headers.items()
    )
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + head + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return eventstream_frame(
        {":event-type": name, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(payload).encode(),
    )


class _Tee:
    """A file wrapper that remembers what passed through."""

    def __init__(self, inner: Any, sink: bytearray) -> None:
        self._inner = inner
        self._sink = sink

    def read(self, *a: Any) -> bytes:
        data = self._inner.read(*a)
        self._sink += data
        return data

    def readline(self, *a: Any) -> bytes:
        data = self._inner.readline(*a)
        self._sink += data
        return data

    def write(self, data: bytes) -> int:
        self._sink += data
        return self._inner.write(data)

    def flush(self) -> None:
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self._in = bytearray()
        self._out = bytearray()
        self.rfile = _Tee(self.rfile, self._in)  # type: ignore[assignment]

    def handle_one_request(self) -> None:
        self._in.clear()
        self._out.clear()
        super().handle_one_request()

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        raw = self._body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        # The answer is composed in memory and the exchange recorded before any byte of
        # it leaves: a client that returns at once must find its exchange recorded.
        real, self.wfile = self.wfile, _Tee(io.BytesIO(), self._out)  # type: ignore[assignment]
        try:
            self.server.provider.route(self, self.path, body)
        finally:
            self.wfile = real
            self.server.provider.exchanges.append(
                Exchange(bytes(self._in), bytes(self._out), self.path, body)
            )
            self.wfile.write(bytes(self._out))
            self.wfile.flush()

    # -- answers ------------------------------------------------------------------------
    def send_json(self, doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_chunked(self, content_type: str, pieces: list[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def send_sse(self, events: list[tuple[str | None, Any]]) -> None:
        pieces = []
        for name, data in events:
            text = data if isinstance(data, str) else json.dumps(data)
            pieces.append(((f"event: {name}\n" if name else "") + f"data: {text}\n\n").encode())
        self.send_chunked("text/event-stream", pieces)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    provider: ScriptedProvider


@dataclass
class ScriptedProvider:
    """The server; ``plan`` holds (tool, arguments) per turn, then ``final`` text."""

    cert: Path | None = None
    key: Path | None = None
    plan: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    final: str = FINAL_TEXT
    mcp_output: str = "Order 4711 ships Monday."
    exchanges: list[Exchange] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.provider = self
        if self.cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.cert, self.key)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        scheme = "https" if self.cert is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _step(self, done: int) -> tuple[str, dict[str, Any]] | None:
        return self.plan[done] if done < len(self.plan) else None

    # -- routing ------------------------------------------------------------------------
    def route(self, h: _Handler, path: str, body: Any) -> None:
        route = path.split("?", 1)[0]
        if not isinstance(body, dict):
            h.send_json({"error": {"message": "bad body"}}, 400)
        elif route.endswith("/chat/completions"):
            self._chat(h, body)
        elif route.endswith("/responses"):
            self._responses(h, body)
        elif route.endswith("/messages/count_tokens"):
            h.send_json({"input_tokens": 42})
        elif route.endswith("/messages"):
            self._anthropic(h, body)
        elif route.startswith("/model/"):
            model, _, op = route[len("/model/") :].rpartition("/")
            self._bedrock(h, unquote(model), op, body)
        else:
            h.send_json({"error": {"message": f"no route {route}"}}, 404)

    # -- OpenAI chat completions --------------------------------------------------------
    def _chat(self, h: _Handler, body: dict[str, Any]) -> None:
        done = sum(1 for m in body.get("messages", []) if m.get("role") == "tool")
        step = self._step(done)
        model = body.get("model", "gpt-test")
        usage = {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
        if step is None:
            message: dict[str, Any] = {"role": "assistant", "content": self.final}
            finish = "stop"
        else:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{done}",
                        "type": "function",
                        "function": {"name": step[0], "arguments": json.dumps(step[1])},
                    }
                ],
            }
            finish = "tool_calls"
        if not body.get("stream"):
            h.send_json(
                {
                    "id": f"chatcmpl-{done}",
                    "object": "chat.completion",
                    "created": 1763700000,
                    "model": model,
                    "usage": usage,
                    "choices": [
                        {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
                    ],
                }
            )
            return
        base = {
            "id": f"chatcmpl-{done}",
            "object": "chat.completion.chunk",
            "created": 1763700000,
            "model": model,
        }
        chunks: list[dict[str, Any]] = []
        if step is None:
            chunks += [
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": piece},
                            "finish_reason": None,
                        }
                    ],
                }
                for piece in (self.final[:10], self.final[10:])
            ]
        else:
            args = json.dumps(step[1])
            chunks.append(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": None,
                            "delta": {
                                "role": "assistant",
                                "tool_calls": [
                                    {
                                        "index": 0,
                                        "id": f"call_{done}",
                                        "type": "function",
                                        "function": {"name": step[0], "arguments": ""},
                                    }
                                ],
                            },
                        }
                    ],
                }
            )
            chunks += [
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": None,
                            "delta": {
                                "tool_calls": [
                                    {"index": 0, "function": {"arguments": args[i : i + 7]}}
                                ]
                            },
                        }
                    ],
                }
                for i in range(0, len(args), 7)
            ]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        chunks.append({**base, "choices": [], "usage": usage})
        h.send_sse([(None, c) for c in chunks] + [(None, "[DONE]")])

    # -- OpenAI Responses ---------------------------------------------------------------
    def _responses(self, h: _Handler, body: dict[str, Any]) -> None:
        items = body.get("input") if isinstance(body.get("input"), list) else []
        done = sum(
            1 for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"
        )
        step = self._step(done)
        output: list[dict[str, Any]] = []
        for tool in body.get("tools") or []:
            if tool.get("type") == "mcp":  # provider-side MCP: OpenAI calls the server
                label = tool.get("server_label", "")
                output.append(
                    {
                        "type": "mcp_list_tools",
                        "id": "mcpl_1",
                        "server_label": label,
                        "tools": [
                            {
                                "name": "read_ticket",
                                "input_schema": {},
                                "description": "Read a ticket",
                            }
                        ],
                    }
                )
                output.append(
                    {
                        "type": "mcp_call",
                        "id": "mcp_1",
                        "server_label": label,
                        "name": "read_ticket",
                        "arguments": '{"id": 4711}',
                        "output": self.mcp_output,
                        "error": None,
                    }
                )
        if step is None:
            output.append(
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": self.final, "annotations": []}],
                }
            )
        else:
            output.append(
                {
                    "type": "function_call",
                    "id": f"fc_{done}",
                    "call_id": f"call_{done}",
                    "name": step[0],
                    "arguments": json.dumps(step[1]),
                    "status": "completed",
                }
            )
        h.send_json(
            {
                "id": "resp_1",
                "object": "response",
                "created_at": 1763700000,
                "status": "completed",
                "error": None,
                "incomplete_details": None,
                "model": body.get("model", "gpt-test"),
                "output": output,
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
                "usage": {
                    "input_tokens": 50,
                    "output_tokens": 10,
                    "total_tokens": 60,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0},
                },
            }
        )

    # -- Anthropic messages -------------------------------------------------------------
    def _anthropic_content(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        done = sum(
            1
            for m in body.get("messages", [])
            if isinstance(m.get("content"), list)
            for b in m["content"]
            if isinstance(b, dict) and b.get("type") == "tool_result"
        )
        step = self._step(done)
        content: list[dict[str, Any]] = []
        for server in body.get("mcp_servers") or []:  # provider-side MCP
            content.append(
                {
                    "type": "mcp_tool_use",
                    "id": "mcptoolu_1",
                    "name": "read_ticket",
                    "server_name": server.get("name", ""),
                    "input": {"id": 4711},
                }
            )
            content.append(
                {
                    "type": "mcp_tool_result",
                    "tool_use_id": "mcptoolu_1",
                    "is_error": False,
                    "content": [{"type": "text", "text": self.mcp_output}],
                }
            )
        if step is None:
            content.append({"type": "text", "text": self.final})
            return content, "end_turn"
        content.append({"type": "text", "text": "Let me check."})
        content.append(
            {"type": "tool_use", "id": f"toolu_{done}", "name": step[0], "input": step[1]}
        )
        return content, "tool_use"

    def _anthropic(self, h: _Handler, body: dict[str, Any]) -> None:
        content, stop = self._anthropic_content(body)
        model = body.get("model", "claude-test")
        if not body.get("stream"):
            h.send_json(_anthropic_message(model, content, stop))
            return
        h.send_sse([(e["type"], e) for e in anthropic_stream_events(model, content, stop)])

    # -- Bedrock runtime ----------------------------------------------------------------
    def _bedrock(self, h: _Handler, model: str, op: str, body: dict[str, Any]) -> None:
        if op.startswith("converse"):
            done = sum(
                1
                for m in body.get("messages", [])
                for b in m.get("content", [])
                if "toolResult" in b
            )
            step = self._step(done)
            if step is None:
                content: list[dict[str, Any]] = [{"text": self.final}]
                stop = "end_turn"
            else:
                content = [
                    {"text": "Let me check."},
                    {
                        "toolUse": {
                            "toolUseId": f"tooluse_{done}",
                            "name": step[0],
                            "input": step[1],
                        }
                    },
                ]
                stop = "tool_use"
            usage = {"inputTokens": 50, "outputTokens": 10, "totalTokens": 60}
            if op == "converse":
                h.send_json(
                    {
                        "output": {"message": {"role": "assistant", "content": content}},
                        "stopReason": stop,
                        "usage": usage,
                        "metrics": {"latencyMs": 12},
                    }
                )
                return
            frames = [_event("messageStart", {"role": "assistant"})]
            for i, block in enumerate(content):
                if "text" in block:
                    for piece in (block["text"][:6], block["text"][6:]):
                        frames.append(
                            _event(
                                "contentBlockDelta",
                                {"contentBlockIndex": i, "delta": {"text": piece}},
                            )
                        )
                else:
                    tu = block["toolUse"]
                    frames.append(
                        _event(
                            "contentBlockStart",
                            {
                                "contentBlockIndex": i,
                                "start": {
                                    "toolUse": {"toolUseId": tu["toolUseId"], "name": tu["name"]}
                                },
                            },
                        )
                    )
                    args = json.dumps(tu["input"])
                    frames += [
                        _event(
                            "contentBlockDelta",
                            {
                                "contentBlockIndex": i,
                                "delta": {"toolUse": {"input": args[j : j + 5]}},
                            },
                        )
                        for j in range(0, len(args), 5)
                    ]
                frames.append(_event("contentBlockStop", {"contentBlockIndex": i}))
            frames.append(_event("messageStop", {"stopReason": stop}))
            frames.append(_event("metadata", {"usage": usage, "metrics": {"latencyMs": 12}}))
            h.send_chunked("application/vnd.amazon.eventstream", frames)
            return
        # InvokeModel: the body is Anthropic's (anthropic_version bedrock-2023-05-31).
        content, stop = self._anthropic_content(body)
        if op == "invoke":
            h.send_json(_anthropic_message(model, content, stop))
            return
        frames = [
            eventstream_frame(
                {
                    ":event-type": "chunk",
                    ":content-type": "application/json",
                    ":message-type": "event",
                },
                json.dumps({"bytes": base64.b64encode(json.dumps(e).encode()).decode()}).encode(),
            )
            for e in anthropic_stream_events(model, content, stop)
        ]
        h.send_chunked("application/vnd.amazon.eventstream", frames)


def _anthropic_message(model: str, content: list[dict[str, Any]], stop: str) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 50, "output_tokens": 10},
    }


def anthropic_stream_events(
    model: str, content: list[dict[str, Any]], stop: str
) -> list[dict[str, Any]]:
    """Anthropic's message stream for ``content``: text as text deltas, tool input as
    input_json_delta fragments, other blocks whole in content_block_start."""
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                **_anthropic_message(model, [], ""),
                "stop_reason": None,
                "usage": {"input_tokens": 50, "output_tokens": 1},
            },
        }
    ]
    for i, block in enumerate(content):
        if block["type"] == "text":
            events.append(
                {
                    "type": "content_block_start",
                    "index": i,
                    "content_block": {"type": "text", "text": ""},
                }
            )
            events += [
                {
                    "type": "content_block_delta",
                    "index": i,
                    "delta": {"type": "text_delta", "text": p},
                }
                for p in (block["text"][:5], block["text"][5:])
            ]
        elif block["type"] in ("tool_use", "mcp_tool_use", "server_tool_use"):
            events.append(
                {"type": "content_block_start", "index": i, "content_block": {**block, "input": {}}}
            )
            args = json.dumps(block["input"])
            events += [
                {
                    "type": "content_block_delta",
                    "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": args[j : j + 6]},
                }
                for j in range(0, len(args), 6)
            ]
        else:
            events.append({"type": "content_block_start", "index": i, "content_block": block})
        events.append({"type": "content_block_stop", "index": i})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": 10},
        }
    )
    events.append({"type": "message_stop"})
    return events
