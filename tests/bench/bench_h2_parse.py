"""HTTP/2 parser throughput: plaintext MB/s and streams/s, one core.

Connections are made by the ``h2`` library's own client and server (real framing, HPACK
with dynamic-table reuse), then replayed in 4 KiB chunks (the capture's record size):

  - llm-json: chat-completions POSTs (≈3 KB JSON, growing history) and JSON answers,
    through the whole L7 parser (LLM detection, redaction, injection scoring);
  - grpc: unary gRPC calls (small protobuf-sized messages, trailers), whole L7 parser;
  - frames only: the llm-json bytes through :class:`collectors.l7.h2.H2Connection`
    alone (hyperframe + hpack + stream reassembly), without the events;
  - http/1.1 llm-json: the same requests and answers over HTTP/1.1, for comparison.

Run: ``.venv/bin/python -m tests.bench.bench_h2_parse [--seconds S]``.
"""

from __future__ import annotations

import argparse
import json
import struct
import time
from collections.abc import Callable

from collectors.l7.h2 import H2Connection
from collectors.l7.parser import L7Parser
from tests.l7 import wire
from tests.l7.test_h2 import Pair

CHUNK = 4096
Wire = list[tuple[str, bytes]]


def _chat(i: int) -> bytes:
    history = [{"role": "user" if k % 2 == 0 else "assistant",
                "content": f"turn {k}: please check order {1000 + k} and its refund status"}
               for k in range(min(i, 30))]
    return json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are a careful support agent."}, *history],
        "tools": [{"type": "function", "function": {"name": "lookup_order", "parameters": {
            "type": "object", "properties": {"id": {"type": "string"}}}}}]}).encode()


def _answer(i: int) -> bytes:
    return json.dumps({"id": f"chatcmpl-{i}", "object": "chat.completion",
                       "model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason":
                       "stop", "message": {"role": "assistant", "content":
                       f"Order {1000 + i} was refunded yesterday."}}],
                       "usage": {"prompt_tokens": 120, "completion_tokens": 9}}).encode()


def h2_llm(streams: int) -> Wire:
    pair = Pair()
    for i in range(streams):
        sid = pair.request("POST", "/v1/chat/completions", _chat(i))
        pair.respond(sid, _answer(i))
    pair.pump()
    return pair.wire


def h2_grpc(streams: int) -> Wire:
    pair = Pair()
    for i in range(streams):
        msg = b"\x0a\x10" + f"customer-{i:08d}".encode()[:16]
        sid = pair.request("POST", "/crm.v1.Customers/Get",
                           struct.pack(">BI", 0, len(msg)) + msg, ctype="application/grpc",
                           extra=[("te", "trailers")])
        reply = b"\x12\x20" + b"Ada Lovelace, plan enterprise..."
        pair.respond(sid, struct.pack(">BI", 0, len(reply)) + reply,
                     ctype="application/grpc", trailers=[("grpc-status", "0")])
    pair.pump()
    return pair.wire


def h1_llm(streams: int) -> Wire:
    out: Wire = []
    for i in range(streams):
        out.append(("egress", wire.request(
            "POST", "/v1/chat/completions", _chat(i), host="api.example.test", headers={
                "Content-Type": "application/json",
                "Authorization": "Bearer sk-live-abcdefghijklmnopqrstuvwxyz0123456789"})))
        out.append(("ingress", wire.response(_answer(i))))
    return out


def _chunks(data: Wire) -> Wire:
    return [(d, b[i : i + CHUNK]) for d, b in data for i in range(0, len(b), CHUNK)]


def _through_parser(chunks: Wire) -> int:
    parser = L7Parser()
    n = 0
    for direction, data in chunks:
        n += len(parser.feed("c", direction, data, 1))
    assert parser.stats["h2_errors"] == parser.stats["parse_errors"] == 0
    return n


def _through_frames(chunks: Wire) -> int:
    conn = H2Connection("egress")
    return sum(len(conn.feed(d, data, 1)) for d, data in chunks)


def run(fn: Callable[[Wire], int], chunks: Wire, seconds: float) -> tuple[float, int, int]:
    total = sum(len(b) for _, b in chunks)
    rounds, out, start = 0, 0, time.perf_counter()
    while True:
        out = fn(chunks)
        rounds += 1
        took = time.perf_counter() - start
        if took >= seconds:
            return took / rounds, total, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--streams", type=int, default=200)
    args = ap.parse_args(argv)
    llm = _chunks(h2_llm(args.streams))
    cases = [("h2 llm-json, whole parser", _through_parser, llm),
             ("h2 grpc unary, whole parser", _through_parser, _chunks(h2_grpc(args.streams))),
             ("h2 llm-json, frames + HPACK only", _through_frames, llm),
             ("http/1.1 llm-json, whole parser", _through_parser,
              _chunks(h1_llm(args.streams)))]
    print("### HTTP/2 parser throughput (collectors/l7/h2.py through L7Parser)\n")
    print(f"`.venv/bin/python -m tests.bench.bench_h2_parse` ({args.streams} request/response "
          f"streams per connection made by the h2 library, replayed in {CHUNK} B chunks, one "
          f"core, ≥{args.seconds:.0f} s per row)\n")
    print("| workload | bytes per connection | MB/s | streams/s | outputs per round |")
    print("|---|---:|---:|---:|---:|")
    rates = {}
    for name, fn, chunks in cases:
        per, total, out = run(fn, chunks, args.seconds)
        rates[name] = args.streams / per
        print(f"| {name} | {total} | {total / per / 1e6:.1f} | {args.streams / per:,.0f} | "
              f"{out} |")
    us = {k: 1e6 / v for k, v in rates.items()}
    h2_us, h1_us = us["h2 llm-json, whole parser"], us["http/1.1 llm-json, whole parser"]
    frames_us = us["h2 llm-json, frames + HPACK only"]
    print(f"\nOne LLM call costs {h2_us:.0f} µs to parse over HTTP/2 and {h1_us:.0f} µs over "
          f"HTTP/1.1; frames, HPACK and stream reassembly alone take {frames_us:.0f} µs of "
          "it, the rest is the LLM logic (detection, redaction, scoring) both share.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
