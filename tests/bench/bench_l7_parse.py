"""Parser throughput: plaintext MB/s and events/s through L7Parser, one core.

Workloads, each a keep-alive connection replayed in 4 KiB chunks (the capture's record
size) so reassembly cost is included:
  - llm-json:   OpenAI chat completions, JSON request + JSON tool-call response
  - llm-sse:    the same call streamed (SSE deltas, tool-call arguments in fragments)
  - anthropic-sse: Anthropic messages stream with tool_use input_json_delta
  - chunked-gzip: JSON responses with Transfer-Encoding chunked + gzip
  - mcp:        MCP tools/call over streamable HTTP (JSON and SSE answers alternate)
  - plain-http: non-LLM JSON API calls (http.* events only)
  - bedrock-stream: Bedrock ConverseStream (AWS event-stream frames, tool input deltas)
  - big-tool-args: tool calls whose arguments exceed the content cap (structural capping)
A realistic conversation grows: each llm request carries the history so far (capped),
which is what makes injection scoring and redaction dominate on large prompts.

Run: .venv/bin/python tests/bench/bench_l7_parse.py [--seconds S]
Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from collectors.l7.parser import L7Parser  # noqa: E402
from tests.l7 import wire  # noqa: E402
from tests.l7.providers import eventstream_frame  # noqa: E402

CHUNK = 4096


def _history(n: int) -> list[dict[str, object]]:
    msgs: list[dict[str, object]] = [
        {
            "role": "system",
            "content": "You are a support agent. Use the tools to answer questions about orders.",
        }
    ]
    for i in range(n):
        msgs.append(
            {
                "role": "user",
                "content": f"Where is order {1000 + i}? It was due on "
                "Monday and the tracking page shows no update since last week.",
            }
        )
        msgs.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{i}",
                        "type": "function",
                        "function": {"name": "get_order", "arguments": f'{{"id": {1000 + i}}}'},
                    }
                ],
            }
        )
        msgs.append(
            {
                "role": "tool",
                "tool_call_id": f"call_{i}",
                "content": f'{{"order": {1000 + i}, "status": "in transit", "carrier": "DHL", '
                '"events": [{"ts": "2025-06-01T10:00:00Z", "where": "Leipzig hub"}, '
                '{"ts": "2025-06-02T08:00:00Z", "where": "Berlin depot"}]}',
            }
        )
    return msgs


def llm_json(turns: int) -> list[bytes]:
    out = []
    for t in range(turns):
        req = dict(wire.CHAT_REQUEST, messages=_history(t % 12 + 1))
        out.append(
            wire.request(
                "POST",
                "/v1/chat/completions",
                req,
                headers={"Authorization": f"Bearer {wire.OPENAI_KEY}"},
            )
        )
        out.append(wire.response(wire.CHAT_RESPONSE_TOOL))
    return out


def llm_sse(turns: int) -> list[bytes]:
    out = []
    for t in range(turns):
        req = dict(wire.CHAT_REQUEST, messages=_history(t % 12 + 1), stream=True)
        out.append(wire.request("POST", "/v1/chat/completions", req))
        out.append(
            wire.response(
                wire.chat_stream_body(),
                content_type="text/event-stream",
                chunked=True,
                chunk_size=400,
            )
        )
    return out


def anthropic_sse(turns: int) -> list[bytes]:
    out = []
    for _ in range(turns):
        out.append(
            wire.request(
                "POST",
                "/v1/messages",
                wire.ANTHROPIC_REQUEST,
                host="api.anthropic.com",
                headers={"x-api-key": wire.ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
            )
        )
        out.append(
            wire.response(
                wire.anthropic_stream_body(),
                content_type="text/event-stream",
                chunked=True,
                chunk_size=300,
            )
        )
    return out


def chunked_gzip(turns: int) -> list[bytes]:
    body = {
        "items": [
            {"id": i, "name": f"item {i}", "price": i * 1.5, "tags": ["a", "b"]} for i in range(200)
        ]
    }
    out = []
    for _ in range(turns):
        out.append(wire.request("GET", "/api/items?page=1", host="shop.internal"))
        out.append(wire.response(body, chunked=True, gzip=True, chunk_size=1024))
    return out


def mcp(turns: int) -> list[bytes]:
    out = []
    for t in range(turns):
        call = dict(wire.MCP_TOOLS_CALL, id=t)
        result = dict(wire.MCP_TOOLS_CALL_RESULT, id=t)
        out.append(
            wire.request("POST", "/mcp", call, host="localhost:3000", headers=wire.MCP_HEADERS)
        )
        out.append(
            wire.response(result)
            if t % 2
            else wire.response(wire.sse([("message", result)]), content_type="text/event-stream")
        )
    return out


def plain_http(turns: int) -> list[bytes]:
    out = []
    for t in range(turns):
        out.append(
            wire.request("POST", "/api/orders", {"sku": f"A{t}", "qty": 2}, host="shop.internal")
        )
        out.append(wire.response({"ok": True, "id": t}))
    return out


def _converse_history(n: int) -> list[dict[str, object]]:
    msgs: list[dict[str, object]] = []
    for i in range(n):
        msgs.append({"role": "user", "content": [{"text": f"Where is order {1000 + i}?"}]})
        msgs.append(
            {
                "role": "assistant",
                "content": [
                    {
                        "toolUse": {
                            "toolUseId": f"t{i}",
                            "name": "get_order",
                            "input": {"id": 1000 + i},
                        }
                    }
                ],
            }
        )
        msgs.append(
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": f"t{i}",
                            "content": [{"json": {"order": 1000 + i, "status": "in transit"}}],
                        }
                    }
                ],
            }
        )
    return msgs


def _frame(name: str, payload: dict[str, object]) -> bytes:
    import orjson

    return eventstream_frame(
        {":event-type": name, ":content-type": "application/json", ":message-type": "event"},
        orjson.dumps(payload),
    )


def bedrock_stream(turns: int) -> list[bytes]:
    out = []
    args = '{"id": 4711, "include": ["events", "carrier"]}'
    frames = _frame("messageStart", {"role": "assistant"})
    frames += _frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me "}})
    frames += _frame(
        "contentBlockStart",
        {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t9", "name": "get_order"}}},
    )
    for j in range(0, len(args), 6):
        frames += _frame(
            "contentBlockDelta",
            {"contentBlockIndex": 1, "delta": {"toolUse": {"input": args[j : j + 6]}}},
        )
    frames += _frame("messageStop", {"stopReason": "tool_use"})
    frames += _frame("metadata", {"usage": {"inputTokens": 90, "outputTokens": 20}})
    for t in range(turns):
        body = {
            "messages": _converse_history(t % 12 + 1),
            "system": [{"text": "Be brief."}],
            "toolConfig": {
                "tools": [
                    {
                        "toolSpec": {
                            "name": "get_order",
                            "description": "x",
                            "inputSchema": {"json": {}},
                        }
                    }
                ]
            },
        }
        out.append(
            wire.request(
                "POST",
                "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream",
                body,
                host="bedrock-runtime.us-east-1.amazonaws.com",
            )
        )
        out.append(
            wire.response(frames, content_type="application/vnd.amazon.eventstream", chunked=True)
        )
    return out


def big_tool_args(turns: int) -> list[bytes]:
    out = []
    for t in range(turns):
        args = {"file_path": f"/app/mod{t}.py", "content": "def f():\n    return 1\n" * 400}
        body = dict(wire.CHAT_RESPONSE_TOOL)
        body["choices"] = [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": f"c{t}",
                            "type": "function",
                            "function": {
                                "name": "write_file",
                                "arguments": __import__("json").dumps(args),
                            },
                        }
                    ],
                },
            }
        ]
        out.append(wire.request("POST", "/v1/chat/completions", wire.CHAT_REQUEST))
        out.append(wire.response(body))
    return out


WORKLOADS: dict[str, Callable[[int], list[bytes]]] = {
    "llm-json": llm_json,
    "llm-sse": llm_sse,
    "anthropic-sse": anthropic_sse,
    "chunked-gzip": chunked_gzip,
    "mcp": mcp,
    "plain-http": plain_http,
    "bedrock-stream": bedrock_stream,
    "big-tool-args": big_tool_args,
}


def run(messages: list[bytes], seconds: float) -> tuple[float, float, int]:
    """Replay the conversation until ``seconds`` pass; returns (MB/s, events/s, bytes)."""
    total = sum(len(m) for m in messages)
    nbytes = nevents = rounds = 0
    start = time.perf_counter()
    while True:
        parser = L7Parser()  # fresh per round: the injection cache does not help repeats
        parser.scorer._cache.clear()
        conn = ("bench", rounds)
        for i, msg in enumerate(messages):
            direction = "egress" if i % 2 == 0 else "ingress"
            for off in range(0, len(msg), CHUNK):
                nevents += len(parser.feed(conn, direction, msg[off : off + CHUNK], off))
        parser.close(conn)
        assert parser.stats["parse_errors"] == 0 and parser.stats["internal_errors"] == 0
        nbytes += total
        rounds += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return nbytes / elapsed / 1e6, nevents / elapsed, total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--turns", type=int, default=24)
    ap.add_argument("--only", nargs="*", help="workload names to run (default: all)")
    args = ap.parse_args(argv)
    print("### L7 parser throughput (collectors/l7/parser.py)\n")
    print(
        f"One process, one core, {CHUNK}-byte chunks, {args.turns} exchanges per connection, "
        f"{args.seconds:.0f} s per workload, redaction and injection scoring on (cache "
        "cleared per round). Command: `.venv/bin/python tests/bench/bench_l7_parse.py`.\n"
    )
    print("| workload | bytes per round | MB/s | events/s |")
    print("|---|---:|---:|---:|")
    for name, build in WORKLOADS.items():
        if args.only and name not in args.only:
            continue
        mbps, eps, total = run(build(args.turns), args.seconds)
        print(f"| {name} | {total} | {mbps:.1f} | {eps:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
