"""HTTP/2 parsing on bytes made by the ``h2`` library's own client and server
connections (real framing, real HPACK with dynamic-table entries), fed to the L7 parser
as the TLS capture would: what the client wrote as egress, what it read as ingress."""

from __future__ import annotations

import gzip
import json
import struct
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from collectors.l7.h2 import PREFACE, H2Connection, H2Error, grpc_summary, looks_like_frames
from collectors.l7.parser import L7Parser

CHAT = {"model": "gpt-h2-test", "messages": [{"role": "user", "content": "hello over h2"}]}


class Pair:
    """An h2 client and server wired back to back; every byte each writes is kept."""

    def __init__(self) -> None:
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.server = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.wire: list[tuple[str, bytes]] = []  # (direction seen by the client, bytes)
        self.client.initiate_connection()
        self.server.initiate_connection()
        self.pump()

    def pump(self) -> list[h2.events.Event]:
        got: list[h2.events.Event] = []
        for _ in range(10):
            c, s = self.client.data_to_send(), self.server.data_to_send()
            if not c and not s:
                break
            if c:
                self.wire.append(("egress", c))
                got += self._ack(self.server, self.server.receive_data(c))
            if s:
                self.wire.append(("ingress", s))
                got += self._ack(self.client, self.client.receive_data(s))
        return got

    @staticmethod
    def _ack(conn: h2.connection.H2Connection, events: list[Any]) -> list[Any]:
        for ev in events:  # give the flow-control window back, as a real peer does
            if isinstance(ev, h2.events.DataReceived) and ev.flow_controlled_length:
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        return events

    def request(self, method: str, path: str, body: bytes = b"",
                ctype: str = "application/json", extra: list[tuple[str, str]] | None = None
                ) -> int:
        sid = self.client.get_next_available_stream_id()
        headers = [(":method", method), (":path", path), (":scheme", "https"),
                   (":authority", "api.example.test"), ("content-type", ctype),
                   ("authorization", "Bearer sk-live-abcdefghijklmnopqrstuvwxyz0123456789"),
                   *(extra or [])]
        self.client.send_headers(sid, headers, end_stream=not body)
        if body:
            self.send_data(self.client, sid, body)
        return sid

    def respond(self, sid: int, body: bytes, ctype: str = "application/json",
                trailers: list[tuple[str, str]] | None = None,
                extra: list[tuple[str, str]] | None = None) -> None:
        self.server.send_headers(sid, [(":status", "200"), ("content-type", ctype),
                                       *(extra or [])])
        self.send_data(self.server, sid, body, end=trailers is None)
        if trailers is not None:
            self.server.send_headers(sid, trailers, end_stream=True)

    def send_data(self, conn: h2.connection.H2Connection, sid: int, body: bytes,
                  end: bool = True) -> None:
        size = conn.max_outbound_frame_size
        for i in range(0, len(body), size):
            self.pump()
            conn.send_data(sid, body[i : i + size], end_stream=end and i + size >= len(body))
            self.pump()

    def feed(self, parser: L7Parser, piece: int = 0, skip: int = 0) -> list[Any]:
        """Feed the kept bytes, optionally cut into ``piece``-byte chunks, from the
        ``skip``-th write on."""
        events: list[Any] = []
        for direction, data in self.wire[skip:]:
            step = piece or len(data)
            for i in range(0, len(data), step):
                events += parser.feed(("conn", 1), direction, data[i : i + step], 1)
        return events


def test_concurrent_streams_are_paired_per_stream_and_llm_calls_detected() -> None:
    pair = Pair()
    a = pair.request("POST", "/v1/chat/completions", json.dumps(CHAT).encode())
    b = pair.request("GET", "/v1/models")
    c = pair.request("POST", "/v1/chat/completions",
                     json.dumps({**CHAT, "model": "gpt-h2-second"}).encode())
    pair.pump()
    # answered out of order; one answer gzip-compressed
    pair.respond(c, json.dumps({"id": "c", "object": "chat.completion", "model":
                                "gpt-h2-second", "choices": []}).encode())
    pair.respond(b, gzip.compress(b'{"data": [{"id": "gpt-h2-test"}]}'),
                 extra=[("content-encoding", "gzip")])
    pair.respond(a, json.dumps({"id": "a", "object": "chat.completion", "model":
                                "gpt-h2-test", "choices": []}).encode())
    pair.pump()
    parser = L7Parser()
    events = pair.feed(parser, piece=7)  # arbitrary chunk boundaries
    requests = {e.data["stream"]: e.data for e in events if e.kind == "http.request"}
    responses = {e.data["stream"]: e.data for e in events if e.kind == "http.response"}
    assert sorted(requests) == sorted(responses) == [a, b, c]
    assert requests[a]["method"] == "POST" and requests[b]["path"] == "/v1/models"
    assert all(r["host"] == "api.example.test" and r["version"] == "2"
               for r in requests.values())
    # each response names its own stream's request, whatever the order they came in
    assert responses[b]["path"] == "/v1/models" and responses[c]["method"] == "POST"
    assert responses[b]["body_size"] == len(b'{"data": [{"id": "gpt-h2-test"}]}')
    models = sorted(e.data["model"] for e in events if e.kind == "llm.request")
    assert models == ["gpt-h2-second", "gpt-h2-test"]
    assert not any(b"sk-live-abcdef" in json.dumps(e.data).encode() for e in events)
    assert parser.stats["h2_conns"] == 1 and parser.stats["h2_messages"] == 6
    assert parser.stats["parse_errors"] == parser.stats["h2_errors"] == 0


def test_large_bodies_over_many_frames_come_out_whole() -> None:
    pair = Pair()
    big = {**CHAT, "messages": [{"role": "user", "content": "y" * 150_000}]}
    sid = pair.request("POST", "/v1/chat/completions", json.dumps(big).encode())
    pair.respond(sid, b'{"ok": true}')
    events = pair.feed(L7Parser())
    req = next(e.data for e in events if e.kind == "http.request")
    assert req["body_size"] == len(json.dumps(big)) and not req["truncated"]


def grpc_frame(payload: bytes, compressed: int = 0) -> bytes:
    return struct.pack(">BI", compressed, len(payload)) + payload


def test_grpc_framing_and_status_from_trailers() -> None:
    pair = Pair()
    body = grpc_frame(b"\x0a\x05hello") + grpc_frame(b"\x0a\x03bye")
    sid = pair.request("POST", "/agent.v1.Tools/Invoke", body, ctype="application/grpc",
                       extra=[("te", "trailers")])
    pair.respond(sid, grpc_frame(b"\x12\x02ok"), ctype="application/grpc+proto",
                 trailers=[("grpc-status", "0"), ("grpc-message", "")])
    pair.pump()
    events = pair.feed(L7Parser())
    req = next(e.data for e in events if e.kind == "http.request")
    resp = next(e.data for e in events if e.kind == "http.response")
    assert req["grpc"] == {"service": "agent.v1.Tools", "method": "Invoke", "messages": 2,
                           "message_bytes": 12, "compressed": 0, "framing_ok": True}
    assert resp["grpc"]["messages"] == 1 and resp["grpc"]["status"] == 0
    assert resp["path"] == "/agent.v1.Tools/Invoke"


def test_a_connection_joined_mid_stream_is_counted_and_skipped() -> None:
    pair = Pair()
    first = pair.request("POST", "/v1/chat/completions", json.dumps(CHAT).encode())
    pair.respond(first, b'{"ok": 1}')
    start = len(pair.wire)
    second = pair.request("POST", "/v1/chat/completions", json.dumps(CHAT).encode())
    pair.respond(second, b'{"ok": 2}')
    parser = L7Parser()
    assert pair.feed(parser, skip=start) == []  # HPACK state unknown: nothing guessed
    assert parser.stats["h2_midstream_conns"] == 1 and parser.stats["h2_skipped_bytes"] > 0
    assert parser.stats["parse_errors"] == 0 and parser.stats["h2_conns"] == 0


def test_broken_bytes_stop_the_connection_instead_of_guessing() -> None:
    conn = H2Connection("egress")
    conn.feed("egress", PREFACE + bytes.fromhex("000000040000000000"), 1)
    with pytest.raises(H2Error):
        conn.feed("egress", b"\x00\x00\x05\x01\x05\x00\x00\x00\x01\xff\xff\xff\xff\xff", 2)
    with pytest.raises(H2Error):
        H2Connection("egress").feed("egress", b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", 1)
    pair = Pair()
    pair.request("GET", "/a")
    pair.wire.insert(3, ("egress", b"\x00\x00\x05\x01\x05\x00\x00\x00\x03\xff\xff\xff\xff\xff"))
    parser = L7Parser()
    pair.feed(parser)
    assert parser.stats["h2_errors"] == 1 and parser.stats["internal_errors"] == 0


def test_frames_heuristic_and_grpc_summary_edges() -> None:
    assert not looks_like_frames(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    assert not looks_like_frames(b"")
    # a cut message: framing holds only if the body itself was cut by a cap
    cut = grpc_frame(b"abcdef")[:-2]
    assert grpc_summary("/s/m", cut)["framing_ok"] is False
    assert grpc_summary("/s/m", cut, wire_complete=False)["framing_ok"] is True
    assert grpc_summary("/s/m", b"\x07\0\0\0\0")["framing_ok"] is False


def test_a_pod_that_serves_http2_has_its_requests_read_from_ingress() -> None:
    """The probed process is the server: the preface comes in (ingress) and the requests
    are still the client's messages."""
    pair = Pair()
    sid = pair.request("POST", "/v1/chat/completions", json.dumps(CHAT).encode())
    pair.respond(sid, b'{"ok": true}')
    pair.wire = [("ingress" if d == "egress" else "egress", b) for d, b in pair.wire]
    events = pair.feed(L7Parser())
    assert [(e.kind, e.data.get("stream")) for e in events if e.kind.startswith("http.")] == [
        ("http.request", sid), ("http.response", sid)]
    assert any(e.kind == "llm.request" and e.data["model"] == "gpt-h2-test" for e in events)
