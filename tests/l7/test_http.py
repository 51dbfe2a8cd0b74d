"""HTTP/1.1 reassembly through L7Parser: framing, pipelining, encodings, errors."""

from __future__ import annotations

import zlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.l7.http import HttpError, HttpStream
from collectors.l7.parser import L7Event, L7Parser
from tests.l7 import wire


def kinds(events: list[L7Event]) -> list[str]:
    return [e.kind for e in events]


def feed_all(parser: L7Parser, conn: object, chunks: list[tuple[str, bytes]]) -> list[L7Event]:
    out: list[L7Event] = []
    for i, (direction, data) in enumerate(chunks):
        out += parser.feed(conn, direction, data, 1000 + i)
    return out


def test_content_length_request_and_response_match() -> None:
    p = L7Parser()
    ev = p.feed("c", "egress", wire.request("GET", "/v1/models", headers={"Accept": "*/*"}), 5)
    assert kinds(ev) == ["http.request"]
    assert ev[0].data["method"] == "GET" and ev[0].data["path"] == "/v1/models"
    assert ev[0].ts == 5
    ev = p.feed("c", "ingress", wire.response({"data": []}), 9)
    assert kinds(ev) == ["http.response"]
    data = ev[0].data
    assert (data["status"], data["method"], data["host"], data["path"]) == (
        200,
        "GET",
        "api.openai.com",
        "/v1/models",
    )
    assert data["content_type"] == "application/json" and data["body_size"] == len(b'{"data":[]}')


def test_pipelined_requests_in_one_chunk_and_fifo_responses() -> None:
    p = L7Parser()
    reqs = b"".join(wire.request("GET", f"/item/{i}") for i in range(3))
    ev = p.feed(1, "egress", reqs, 1)
    assert [e.data["path"] for e in ev] == ["/item/0", "/item/1", "/item/2"]
    resps = b"".join(wire.response({"i": i}, status=200 + i) for i in range(3))
    ev = p.feed(1, "ingress", resps, 2)
    assert [(e.data["status"], e.data["path"]) for e in ev] == [
        (200, "/item/0"),
        (201, "/item/1"),
        (202, "/item/2"),
    ]
    assert p.stats["unmatched_responses"] == 0


def test_one_message_over_many_chunks_emits_once_with_last_ts() -> None:
    p = L7Parser()
    raw = wire.request("POST", "/v1/chat/completions", wire.CHAT_REQUEST)
    events: list[L7Event] = []
    for i in range(0, len(raw), 7):
        events += p.feed("c", "egress", raw[i : i + 7], i)
    assert kinds(events) == ["http.request", "llm.request"]
    assert {e.ts for e in events} == {((len(raw) - 1) // 7) * 7}


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("chunked", [False, True])
def test_chunked_and_gzip_bodies_decode(chunked: bool, gz: bool) -> None:
    p = L7Parser()
    p.feed("c", "egress", wire.request("POST", "/v1/chat/completions", wire.CHAT_REQUEST), 1)
    body = wire.response(wire.CHAT_RESPONSE_TOOL, chunked=chunked, gzip=gz)
    ev = p.feed("c", "ingress", body, 2)
    assert kinds(ev) == ["http.response", "llm.response", "llm.tool_call"]
    assert ev[0].data["body_size"] == len(orjson.dumps(wire.CHAT_RESPONSE_TOOL))
    assert ev[2].data["arguments"] == {"location": "Boston, MA"}


def test_deflate_zlib_and_raw_both_decode() -> None:
    body = orjson.dumps(wire.CHAT_RESPONSE_TOOL)
    for data in (zlib.compress(body), zlib.compress(body)[2:-4]):
        s = HttpStream()
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n" % len(
            data
        )
        (msg,) = s.feed(head + data, 1)
        assert msg.body == body and not msg.decode_error


def test_head_204_304_and_interim_100_have_no_body() -> None:
    p = L7Parser()
    p.feed(
        "c",
        "egress",
        wire.request("HEAD", "/a") + wire.request("DELETE", "/b") + wire.request("GET", "/c"),
        1,
    )
    resp = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\n\r\n"
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"
    )
    ev = p.feed("c", "ingress", resp, 2)
    assert [(e.data["status"], e.data["path"]) for e in ev] == [
        (200, "/a"),
        (204, "/b"),
        (304, "/c"),
    ]


def test_body_delimited_by_close_flushes_on_close() -> None:
    p = L7Parser()
    p.feed("c", "egress", wire.request("GET", "/stream"), 1)
    assert p.feed("c", "ingress", b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nab", 2) == []
    assert p.feed("c", "ingress", b"cd", 3) == []
    ev = p.close("c")
    assert kinds(ev) == ["http.response"] and ev[0].data["body_size"] == 4 and ev[0].ts == 3
    assert p.close("c") == []


def test_body_cap_truncates_counts_and_still_emits() -> None:
    p = L7Parser(max_body=100)
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 500}]}
    ev = p.feed("c", "egress", wire.request("POST", "/v1/chat/completions", big), 1)
    # The JSON was cut inside the only message: the call is still seen, and the message
    # too, its text cut where the body was.
    assert kinds(ev) == ["http.request", "llm.request"]
    assert ev[1].data["partial"] is True and ev[1].data["truncated"] is True
    (msg,) = ev[1].data["messages"]
    assert msg["role"] == "user" and 0 < len(msg["content"]) < 100
    assert set(msg["content"]) == {"x"}
    assert ev[0].data["truncated"] is True and ev[0].data["body_size"] == 100
    assert ev[0].data["wire_body_size"] == len(orjson.dumps(big))
    assert p.stats["truncated"] == 1
    ev = p.feed("c", "egress", wire.request("GET", "/next"), 2)  # framing survived the cap
    assert ev[0].data["path"] == "/next"


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS record, not plaintext
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: banana\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET / HTTP/1.1\r\n bad folding\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"hello world, this is not http at all\r\n\r\n",
    ],
)
def test_malformed_http_is_counted_never_raises(garbage: bytes) -> None:
    p = L7Parser()
    assert p.feed("bad", "egress", garbage, 1) == []
    assert p.stats["parse_errors"] == 1
    # More bytes on the broken direction are skipped until a message start.
    assert p.feed("bad", "egress", b"more junk", 2) == []
    assert p.stats["parse_errors"] == 1


def test_the_http2_preface_goes_to_the_http2_parser_and_junk_after_it_stops_it() -> None:
    p = L7Parser()
    assert p.feed("h2", "egress", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1) == []
    assert p.stats["h2_conns"] == 1 and p.stats["parse_errors"] == 0
    assert p.feed("h2", "egress", b"more junk that is no frame", 2) == []
    assert p.stats["h2_errors"] == 1
    # The same connection resyncs on a request line, and a new connection is unaffected.
    assert kinds(p.feed("bad", "egress", wire.request("GET", "/ok"), 3)) == ["http.request"]
    assert kinds(p.feed("new", "egress", wire.request("GET", "/ok"), 4)) == ["http.request"]


def test_http_stream_raises_httperror_directly() -> None:
    with pytest.raises(HttpError):
        HttpStream().feed(b"\x00\x01\x02garbage", 1)


def test_server_side_direction_requests_on_ingress() -> None:
    """An MCP server in the pod reads requests (ingress) and writes responses (egress)."""
    p = L7Parser()
    ev = p.feed(
        "srv",
        "ingress",
        wire.request("POST", "/mcp", wire.MCP_TOOLS_CALL, host="mcp.local:8080"),
        1,
    )
    assert kinds(ev) == ["http.request", "mcp.call"]
    ev = p.feed("srv", "egress", wire.response(wire.MCP_TOOLS_CALL_RESULT), 2)
    assert kinds(ev) == ["http.response", "mcp.result"]
    assert ev[1].data["tool"] == "get_weather"


def test_connection_state_is_bounded() -> None:
    p = L7Parser(max_conns=2)
    for c in range(5):
        p.feed(c, "egress", b"GET /partial HTTP/1.1\r\n", c)
    assert p.stats["evicted_conns"] == 3


def _split_every_offset(raw_req: bytes, raw_resp: bytes) -> None:
    whole = L7Parser()
    expected = [e.data for e in whole.feed("c", "egress", raw_req, 1)]
    expected += [e.data for e in whole.feed("c", "ingress", raw_resp, 1)]
    assert expected
    for raw, direction in ((raw_req, "egress"), (raw_resp, "ingress")):
        for cut in range(1, len(raw)):
            p = L7Parser()
            got: list[L7Event] = []
            if direction == "ingress":
                got += p.feed("c", "egress", raw_req, 1)
            got += p.feed("c", direction, raw[:cut], 1)
            got += p.feed("c", direction, raw[cut:], 1)
            if direction == "egress":
                got += p.feed("c", "ingress", raw_resp, 1)
            assert [e.data for e in got] == expected, f"{direction} cut at {cut}"


def test_every_offset_chat_tool_call_chunked_gzip() -> None:
    _split_every_offset(
        wire.request(
            "POST",
            "/v1/chat/completions",
            wire.CHAT_REQUEST,
            headers={"Authorization": f"Bearer {wire.OPENAI_KEY}"},
        ),
        wire.response(wire.CHAT_RESPONSE_TOOL, chunked=True, gzip=True),
    )


def test_every_offset_streamed_sse_deltas() -> None:
    req = dict(wire.CHAT_REQUEST, stream=True)
    _split_every_offset(
        wire.request("POST", "/v1/chat/completions", req),
        wire.response(wire.chat_stream_body(), content_type="text/event-stream", chunked=True),
    )


def test_every_offset_mcp_sse() -> None:
    _split_every_offset(
        wire.request(
            "POST", "/mcp", wire.MCP_TOOLS_CALL, host="localhost:3000", headers=wire.MCP_HEADERS
        ),
        wire.response(
            wire.sse([("message", wire.MCP_TOOLS_CALL_RESULT)]),
            content_type="text/event-stream",
            chunked=True,
        ),
    )


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=25))
def test_any_chunking_of_a_keepalive_conversation(cuts: list[int]) -> None:
    """Three exchanges on one connection, each direction cut at arbitrary points."""
    req = (
        wire.request("POST", "/v1/chat/completions", wire.CHAT_REQUEST)
        + wire.request(
            "POST",
            "/v1/messages",
            wire.ANTHROPIC_REQUEST,
            host="api.anthropic.com",
            headers={"anthropic-version": "2023-06-01"},
            chunked=True,
        )
        + wire.request("GET", "/health")
    )
    resp = (
        wire.response(wire.CHAT_RESPONSE_TOOL, gzip=True)
        + wire.response(
            wire.anthropic_stream_body(), content_type="text/event-stream", chunked=True
        )
        + wire.response(b"ok", content_type="text/plain")
    )
    whole = L7Parser()
    expected = [e.data for e in whole.feed(1, "egress", req, 0) + whole.feed(1, "ingress", resp, 0)]
    p = L7Parser()
    got: list[L7Event] = []
    for raw, direction in ((req, "egress"), (resp, "ingress")):
        points = sorted({c % len(raw) for c in cuts} - {0})
        for a, b in zip([0, *points], [*points, len(raw)], strict=True):
            got += p.feed(1, direction, raw[a:b], 0)
    assert [e.data for e in got] == expected
    assert kinds(got).count("llm.tool_call") == 2


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(
        st.tuples(st.sampled_from(["egress", "ingress"]), st.binary(max_size=300)), max_size=12
    )
)
def test_arbitrary_bytes_never_raise(chunks: list[tuple[str, bytes]]) -> None:
    p = L7Parser()
    for i, (direction, data) in enumerate(chunks):
        for e in p.feed("fuzz", direction, data, i):
            orjson.dumps(e.data)
    p.close("fuzz")
    assert p.stats["internal_errors"] == 0


@settings(max_examples=100, deadline=None)
@given(
    prefix=st.sampled_from(
        [
            b"GET / HTTP/1.1\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]
    ),
    tail=st.binary(max_size=200),
)
def test_http_prefixed_garbage_never_raises(prefix: bytes, tail: bytes) -> None:
    p = L7Parser()
    p.feed("c", "egress", prefix + tail, 1)
    p.feed("c", "ingress", prefix + tail, 2)
    assert p.stats["internal_errors"] == 0


def test_error_on_one_direction_keeps_the_other_mid_message() -> None:
    p = L7Parser()
    p.feed("c", "egress", wire.request("GET", "/a"), 1)
    resp = wire.response({"x": 1})
    assert p.feed("c", "ingress", resp[:20], 2) == []
    p.feed("c", "egress", b"\x00garbage", 3)
    assert p.stats["parse_errors"] == 1
    ev = p.feed("c", "ingress", resp[20:], 4)
    assert kinds(ev) == ["http.response"]
    assert ev[0].data["path"] == ""  # pairing was dropped with the broken request stream
    assert p.stats["unmatched_responses"] == 1


def test_messages_before_bad_bytes_in_the_same_chunk_are_kept() -> None:
    p = L7Parser()
    ev = p.feed("c", "egress", wire.request("GET", "/first") + b"\x00\x01garbage", 1)
    assert kinds(ev) == ["http.request"] and ev[0].data["path"] == "/first"
    assert p.stats["parse_errors"] == 1


def test_stream_cut_by_close_is_emitted_truncated() -> None:
    p = L7Parser()
    p.feed(
        "c",
        "egress",
        wire.request("POST", "/v1/chat/completions", dict(wire.CHAT_REQUEST, stream=True)),
        1,
    )
    full = wire.response(wire.chat_stream_body(), content_type="text/event-stream", chunked=True)
    cut = full.index(b'"get_time"')  # the second tool call never arrives
    assert [e.kind for e in p.feed("c", "ingress", full[:cut], 2)] == []
    ev = p.close("c")
    assert kinds(ev) == ["http.response", "llm.response", "llm.tool_call"]
    assert ev[0].data["truncated"] is True and ev[0].ts == 2
    assert ev[2].data["arguments"] == {"location": "Paris, France", "unit": "c"}
    assert p.stats["truncated"] == 1


def test_close_mid_headers_emits_nothing() -> None:
    p = L7Parser()
    p.feed("c", "egress", b"GET /x HTTP/1.1\r\nHost: a", 1)
    assert p.close("c") == []
