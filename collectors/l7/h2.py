"""HTTP/2 from TLS plaintext: frames (hyperframe) and header blocks (hpack) of both
directions of one connection → whole requests and responses per stream.

Passive: nothing is sent, so no flow control or settings negotiation is needed, only
what keeps the header decoders in step — every header block of each direction is decoded
in order (HEADERS, CONTINUATION, PUSH_PROMISE), and each side's SETTINGS header-table
size bounds the decoder of what the *other* side sends. A connection must be seen from
its start (the client preface, then SETTINGS): joined mid-stream, the HPACK dynamic
tables are unknown, so the connection is counted and skipped (:func:`looks_like_frames`
tells such bytes apart), never guessed. Messages come out as
:class:`~collectors.l7.http.HttpMessage` (``version "2"``) with their stream id, so the
L7 parser's LLM/MCP logic applies unchanged; gRPC bodies (length-prefixed messages) are
summarized by :func:`grpc_summary`.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from hpack import Decoder
from hpack.exceptions import HPACKError
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
)

from collectors.l7.http import HttpMessage, decode_body

__all__ = ["PREFACE", "H2Connection", "H2Error", "grpc_summary", "looks_like_frames"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADER = 9
_MAX_FRAME = 1 << 24
_KNOWN_TYPES = 10  # DATA .. CONTINUATION
_CONN_TYPES = (4, 6, 7)  # SETTINGS, PING, GOAWAY: stream 0 only
_STREAM_TYPES = (0, 1, 2, 3, 5, 9)  # never on stream 0
_FIXED_LENGTH = {2: 5, 3: 4, 6: 8, 8: 4}  # PRIORITY, RST_STREAM, PING, WINDOW_UPDATE


class H2Error(Exception):
    """The bytes broke HTTP/2 framing or HPACK: the connection cannot be followed."""


def looks_like_frames(data: bytes) -> bool:
    """Whether ``data`` reads as a run of HTTP/2 frames (at least one whole header that
    is plausible and, where the chunk holds more, the next headers too). Used to count a
    connection joined mid-stream instead of feeding frames to the HTTP/1 reassembler.

    >>> looks_like_frames(bytes.fromhex("000004080000000000") + b"\\0\\0\\0\\1")
    True
    >>> looks_like_frames(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    False
    """
    pos, seen = 0, 0
    while pos + _HEADER <= len(data) and seen < 8:
        length = int.from_bytes(data[pos : pos + 3], "big")
        ftype = data[pos + 3]
        stream = int.from_bytes(data[pos + 5 : pos + 9], "big")
        if ftype >= _KNOWN_TYPES or stream >> 31 or length > _MAX_FRAME:
            return False
        if (ftype in _CONN_TYPES) != (stream == 0) and ftype in _CONN_TYPES + _STREAM_TYPES:
            return False
        if _FIXED_LENGTH.get(ftype, length) != length or (ftype == 4 and length % 6):
            return False
        if seen == 0 and pos + _HEADER + length > len(data):
            return False  # the first frame must be whole: a chunk starts at a frame
        seen += 1
        pos += _HEADER + length
    return seen > 0


@dataclass(slots=True)
class _Message:
    headers: list[tuple[str, str]] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    wire: int = 0
    cut: bool = False
    started: bool = False  # final (non-1xx) headers seen


@dataclass(slots=True)
class _Side:
    """One direction's parsing state."""

    buf: bytearray = field(default_factory=bytearray)
    decoder: Decoder = field(default_factory=Decoder)
    preface: bool = False  # the client's preface consumed
    ready: bool = False  # its first SETTINGS seen
    max_frame: int = 16384  # the peer's SETTINGS_MAX_FRAME_SIZE bounds what this side sends
    block: bytearray | None = None  # header block awaiting CONTINUATION
    block_stream: int = 0
    block_end_stream: bool = False
    block_push: bool = False


class H2Connection:
    """Both directions of one HTTP/2 connection. ``client`` is the direction that sent
    the preface ("egress" when the probed process is the client).

    :meth:`feed` returns ``(stream_id, message)`` pairs completed by the bytes (a message
    is complete at END_STREAM, or at RST_STREAM with what it had). Raises
    :class:`H2Error` on bytes that break framing or HPACK; the caller then drops the
    connection. ``max_body`` caps each body kept; ``max_streams`` bounds open streams.
    """

    def __init__(self, client: str, *, max_body: int = 1 << 20,
                 max_streams: int = 256) -> None:
        self.client = client
        self.server = "ingress" if client == "egress" else "egress"
        self.max_body = max_body
        self.max_streams = max_streams
        self.sides = {client: _Side(), self.server: _Side()}
        self.open: OrderedDict[tuple[str, int], _Message] = OrderedDict()
        self.stats: dict[str, int] = dict.fromkeys(
            ("frames", "header_blocks", "pushes", "resets", "streams_evicted"), 0)

    def feed(self, direction: str, data: bytes, ts: int) -> list[tuple[int, HttpMessage]]:
        side = self.sides[direction]
        side.buf += data
        out: list[tuple[int, HttpMessage]] = []
        if not side.preface and direction == self.client:
            if len(side.buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(side.buf)):
                    raise H2Error("no client preface")
                return out
            if not side.buf.startswith(PREFACE):
                raise H2Error("no client preface")
            del side.buf[: len(PREFACE)]
            side.preface = True
        while len(side.buf) >= _HEADER:
            try:
                frame, length = Frame.parse_frame_header(memoryview(side.buf[:_HEADER]))
            except HyperframeError as exc:
                raise H2Error(f"frame header: {exc}") from exc
            if length > side.max_frame:
                raise H2Error(f"frame of {length} bytes over the peer's limit")
            if len(side.buf) < _HEADER + length:
                break
            body = bytes(side.buf[_HEADER : _HEADER + length])
            del side.buf[: _HEADER + length]
            if not side.ready:  # each side opens with SETTINGS (the client after its preface)
                if not isinstance(frame, SettingsFrame):
                    raise H2Error("connection does not start with SETTINGS")
                side.ready = True
            try:
                frame.parse_body(memoryview(body))
            except HyperframeError as exc:
                raise H2Error(f"{type(frame).__name__}: {exc}") from exc
            self.stats["frames"] += 1
            done = self._frame(direction, side, frame, ts)
            if done is not None:
                out.append(done)
        return out

    # -- frames -----------------------------------------------------------------------
    def _frame(self, direction: str, side: _Side, frame: Frame,
               ts: int) -> tuple[int, HttpMessage] | None:
        if side.block is not None and not isinstance(frame, ContinuationFrame):
            raise H2Error("header block interrupted")
        if isinstance(frame, SettingsFrame):
            # this side's limits govern what the *other* side encodes and sends
            other = self.sides[self.server if direction == self.client else self.client]
            size = frame.settings.get(SettingsFrame.HEADER_TABLE_SIZE)
            if size is not None:
                other.decoder.max_allowed_table_size = size
            biggest = frame.settings.get(SettingsFrame.MAX_FRAME_SIZE)
            if biggest is not None:
                other.max_frame = min(max(biggest, 16384), _MAX_FRAME)
            return None
        if isinstance(frame, HeadersFrame | PushPromiseFrame):
            side.block = bytearray(frame.data)
            side.block_stream = frame.stream_id
            side.block_end_stream = "END_STREAM" in frame.flags
            side.block_push = isinstance(frame, PushPromiseFrame)
            if "END_HEADERS" not in frame.flags:
                return None
            return self._block(direction, side, ts)
        if isinstance(frame, ContinuationFrame):
            if side.block is None or frame.stream_id != side.block_stream:
                raise H2Error("CONTINUATION without HEADERS")
            side.block += frame.data
            if "END_HEADERS" not in frame.flags:
                return None
            return self._block(direction, side, ts)
        if isinstance(frame, DataFrame):
            msg = self.open.get((direction, frame.stream_id))
            if msg is None:
                return None  # DATA of a stream whose headers we did not see
            msg.wire += len(frame.data)
            room = self.max_body - len(msg.body)
            if len(frame.data) > room:
                msg.cut = True
            msg.body += frame.data[: max(room, 0)]
            if "END_STREAM" in frame.flags:
                return self._finish(direction, frame.stream_id, ts)
            return None
        if isinstance(frame, RstStreamFrame):
            self.stats["resets"] += 1
            for d in (self.client, self.server):
                self.open.pop((d, frame.stream_id), None)
        return None

    def _block(self, direction: str, side: _Side, ts: int) -> tuple[int, HttpMessage] | None:
        assert side.block is not None
        try:
            headers = [(_text(k), _text(v)) for k, v in side.decoder.decode(bytes(side.block))]
        except (HPACKError, ValueError, IndexError) as exc:
            raise H2Error(f"HPACK: {exc}") from exc
        finally:
            side.block = None
        self.stats["header_blocks"] += 1
        sid = side.block_stream
        if side.block_push:
            self.stats["pushes"] += 1  # decoded to keep HPACK in step; not reported
            return None
        key = (direction, sid)
        msg = self.open.get(key)
        if msg is None or not msg.started:
            status = _pseudo(headers, ":status")
            if status.startswith("1"):
                return None  # informational: the final headers follow
            if msg is None:
                msg = self._open(key)
            msg.headers, msg.started = headers, True
        else:
            msg.trailers = headers
        if side.block_end_stream:
            return self._finish(direction, sid, ts)
        return None

    def _open(self, key: tuple[str, int]) -> _Message:
        while len(self.open) >= self.max_streams:
            self.open.popitem(last=False)
            self.stats["streams_evicted"] += 1
        msg = self.open[key] = _Message()
        return msg

    def _finish(self, direction: str, sid: int, ts: int) -> tuple[int, HttpMessage] | None:
        msg = self.open.pop((direction, sid), None)
        if msg is None:
            return None
        is_request = direction == self.client
        regular = [(k, v) for k, v in msg.headers if not k.startswith(":")]
        authority = _pseudo(msg.headers, ":authority")
        if authority and not any(k == "host" for k, _ in regular):
            regular.insert(0, ("host", authority))
        regular += [(k, v) for k, v in msg.trailers if not k.startswith(":")]
        encoding = next((v for k, v in regular if k == "content-encoding"), "")
        body, cut, error = decode_body(bytes(msg.body), encoding, self.max_body)
        status = _pseudo(msg.headers, ":status")
        return sid, HttpMessage(
            is_request=is_request,
            method=_pseudo(msg.headers, ":method"),
            target=_pseudo(msg.headers, ":path"),
            status=int(status) if status.isdigit() else 0,
            version="2",
            headers=regular,
            body=body,
            wire_body_size=msg.wire,
            truncated=msg.cut or cut,
            decode_error=error,
            ts=ts,
        )


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _pseudo(headers: list[tuple[str, str]], name: str) -> str:
    return next((v for k, v in headers if k == name), "")


def grpc_summary(path: str, body: bytes, *, wire_complete: bool = True) -> dict[str, Any]:
    """gRPC framing of a body: service and method from the path, the length-prefixed
    messages (count, bytes, compressed ones) and whether the framing held.

    >>> grpc_summary("/pkg.Greeter/SayHello", b"\\0\\0\\0\\0\\2hi" + b"\\1\\0\\0\\0\\1z")
    {'service': 'pkg.Greeter', 'method': 'SayHello', 'messages': 2, 'message_bytes': 3, \
'compressed': 1, 'framing_ok': True}
    """
    service, _, method = path.lstrip("/").partition("/")
    pos, count, total, compressed, ok = 0, 0, 0, 0, True
    while pos < len(body):
        if pos + 5 > len(body):
            ok = False
            break
        flag, length = struct.unpack_from(">BI", body, pos)
        if flag > 1:
            ok = False
            break
        if pos + 5 + length > len(body):
            ok = not wire_complete
            count += 1
            total += len(body) - pos - 5
            compressed += flag
            break
        count += 1
        total += length
        compressed += flag
        pos += 5 + length
    return {"service": service, "method": method, "messages": count, "message_bytes": total,
            "compressed": compressed, "framing_ok": ok}
