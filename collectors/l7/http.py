"""Incremental HTTP/1.1 reassembly for one direction of one connection.

Capture hands us whatever ``SSL_write``/``SSL_read`` saw: a message may span many
chunks and one chunk may hold several pipelined messages, so this is a byte-level
state machine, not a "parse this buffer" function. It yields whole messages (head and
de-framed, decoded body) and raises :class:`HttpError` on bytes that cannot be HTTP/1.x,
leaving recovery policy to the caller.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["HttpError", "HttpMessage", "HttpStream", "decode_body"]

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_REQUEST_LINE = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}) (\S{1,16384}) HTTP/(1\.[01])$")
_STATUS_LINE = re.compile(rb"^HTTP/(1\.[01]) ([0-9]{3})(?: (.*))?$")
_METHOD_PREFIX = re.compile(rb"^[A-Z][A-Z_-]{0,19}(?: |$)")
_CHUNK_SIZE = re.compile(rb"^([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?$")


class HttpError(ValueError):
    """Bytes that are not HTTP/1.x (or break its framing).

    ``completed`` holds the messages the same chunk finished before the bad bytes, so
    the caller can still emit them.
    """

    completed: list[HttpMessage]

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.completed = []


@dataclass(slots=True)
class HttpMessage:
    """One reassembled message. ``body`` is de-chunked and decompressed (maybe capped)."""

    is_request: bool
    method: str = ""
    target: str = ""
    status: int = 0
    version: str = "1.1"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    wire_body_size: int = 0
    truncated: bool = False
    # The last bytes of a body cut by ``max_body`` (identity encoding only): a JSON
    # request often puts "model" and "tools" after its long "messages".
    tail: bytes = b""
    decode_error: str = ""
    ts: int = 0

    def header(self, name: str, default: str = "") -> str:
        """First value of a header (names are stored lower-case)."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

    @property
    def content_type(self) -> str:
        return self.header("content-type").split(";", 1)[0].strip().lower()


def decode_body(body: bytes, encoding: str, limit: int) -> tuple[bytes, bool, str]:
    """Undo gzip/deflate, keeping at most ``limit`` bytes (a zip bomb costs nothing).

    Returns (bytes, truncated, error). A body cut by the capture cap still decodes
    to the prefix it holds, which is why this uses a streaming decompressor.
    """
    out = body
    truncated = False
    for coding in reversed([c.strip().lower() for c in encoding.split(",") if c.strip()]):
        if coding in ("identity", ""):
            continue
        if coding in ("gzip", "x-gzip"):
            wbits = 16 + zlib.MAX_WBITS
        elif coding == "deflate":
            # RFC 9110 says zlib-wrapped; some servers send raw deflate: try both.
            wbits = zlib.MAX_WBITS if out[:1] and (out[0] & 0x0F) == 8 else -zlib.MAX_WBITS
        else:
            return out, truncated, f"unsupported content-encoding {coding}"
        try:
            dec = zlib.decompressobj(wbits)
            plain = dec.decompress(out, limit)
            if dec.unconsumed_tail:
                truncated = True
            out = plain
        except zlib.error as exc:
            return out, truncated, f"{coding}: {exc}"
    return out, truncated, ""


class HttpStream:
    """Reassemble HTTP/1.x messages from one direction of a byte stream.

    ``response_method`` is asked for the method of the request a response answers
    (HEAD responses carry no body, CONNECT 2xx switches protocol); the caller owns
    request/response matching across the two directions.
    """

    HEAD, LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_CRLF, TRAILERS, UNTIL_CLOSE, OPAQUE = range(8)

    def __init__(
        self,
        max_body: int = 1 << 20,
        max_head: int = 64 << 10,
        response_method: Callable[[], str] | None = None,
        max_tail: int = 64 << 10,
    ) -> None:
        self.max_body = max_body
        self.max_tail = max_tail
        self._tail = bytearray()
        self.max_head = max_head
        self.response_method = response_method or (lambda: "")
        self._buf = bytearray()
        self._state = self.HEAD
        self._msg: HttpMessage | None = None
        self._body = bytearray()
        self._remaining = 0
        self._switch = False
        self._scanned = 0
        self.opaque_bytes = 0

    @property
    def idle(self) -> bool:
        """True between messages (nothing buffered)."""
        return self._state == self.HEAD and not self._buf

    def feed(self, data: bytes, ts: int) -> list[HttpMessage]:
        """Consume one chunk; return the messages it completed."""
        if self._state == self.OPAQUE:
            self.opaque_bytes += len(data)
            return []
        self._buf += data
        out: list[HttpMessage] = []
        while True:
            try:
                msg = self._step(ts)
            except HttpError as exc:
                exc.completed = out
                raise
            if msg is None:
                break
            out.append(msg)
            if self._state == self.OPAQUE:
                self.opaque_bytes += len(self._buf)
                self._buf.clear()
                break
        return out

    def close(self, ts: int) -> list[HttpMessage]:
        """End of stream: a body delimited by close is complete now.

        A body cut by the close (a stream the client abandoned, a long-lived SSE stream)
        is handed over too, marked truncated: a partial stream still names the tool calls
        and text that were sent.
        """
        if self._msg is None or self._state in (self.HEAD, self.OPAQUE):
            return []
        if self._state != self.UNTIL_CLOSE:
            self._msg.truncated = True
        return [self._finish(ts)]

    # -- state machine -------------------------------------------------------------

    def _step(self, ts: int) -> HttpMessage | None:
        """Advance as far as the buffer allows; return a message when one completes."""
        while True:
            state = self._state
            if state == self.HEAD:
                if not self._parse_head():
                    return None
                if self._state == self.HEAD:  # no body
                    return self._finish(ts)
            elif state == self.LENGTH:
                take = min(self._remaining, len(self._buf))
                self._take_body(take)
                self._remaining -= take
                if self._remaining:
                    return None
                return self._finish(ts)
            elif state == self.CHUNK_SIZE:
                end = self._buf.find(b"\n")
                if end < 0:
                    if len(self._buf) > 1024:
                        raise HttpError("chunk-size line too long")
                    return None
                line = bytes(self._buf[:end]).rstrip(b"\r")
                del self._buf[: end + 1]
                match = _CHUNK_SIZE.match(line)
                if not match:
                    raise HttpError(f"bad chunk size {line[:32]!r}")
                self._remaining = int(match.group(1), 16)
                self._state = self.CHUNK_DATA if self._remaining else self.TRAILERS
            elif state == self.CHUNK_DATA:
                take = min(self._remaining, len(self._buf))
                self._take_body(take)
                self._remaining -= take
                if self._remaining:
                    return None
                self._state = self.CHUNK_CRLF
            elif state == self.CHUNK_CRLF:
                if len(self._buf) < 2 and self._buf[:1] != b"\n":
                    return None
                if self._buf[:2] == b"\r\n":
                    del self._buf[:2]
                elif self._buf[:1] == b"\n":
                    del self._buf[:1]
                else:
                    raise HttpError("missing CRLF after chunk data")
                self._state = self.CHUNK_SIZE
            elif state == self.TRAILERS:
                end = self._buf.find(b"\n")
                if end < 0:
                    if len(self._buf) > self.max_head:
                        raise HttpError("trailers too long")
                    return None
                line = bytes(self._buf[:end]).rstrip(b"\r")
                del self._buf[: end + 1]
                if not line:
                    return self._finish(ts)
            elif state == self.UNTIL_CLOSE:
                self._take_body(len(self._buf))
                return None
            else:  # OPAQUE
                return None

    def _take_body(self, n: int) -> None:
        msg = self._msg
        assert msg is not None
        room = self.max_body - len(self._body)
        if room > 0:
            self._body += self._buf[: min(n, room)]
        if n > room:
            msg.truncated = True
            if self.max_tail:
                self._tail += self._buf[max(room, 0) : n]
                if len(self._tail) > self.max_tail:
                    del self._tail[: len(self._tail) - self.max_tail]
        msg.wire_body_size += n
        del self._buf[:n]

    def _parse_head(self) -> bool:
        # Tolerate blank lines between messages (RFC 9112 section 2.2).
        while self._buf[:2] == b"\r\n" or self._buf[:1] == b"\n":
            del self._buf[: 2 if self._buf[:1] == b"\r" else 1]
        if not self._buf:
            return False
        if not _plausible_start(bytes(self._buf[:24])):
            raise HttpError(f"not an HTTP/1.x start line: {bytes(self._buf[:24])!r}")
        # Resume the search where the last one stopped: a header arriving in many small
        # chunks must not be rescanned from its start each time.
        match = _HEAD_END.search(self._buf, self._scanned)
        if match is None:
            if len(self._buf) > self.max_head:
                raise HttpError("header section too long")
            self._scanned = max(0, len(self._buf) - 3)
            return False
        self._scanned = 0
        head = bytes(self._buf[: match.start()])
        del self._buf[: match.end()]
        lines = head.split(b"\n")
        start = lines[0].rstrip(b"\r")
        msg = self._start_line(start)
        for raw in lines[1:]:
            line = raw.rstrip(b"\r")
            if line[:1] in (b" ", b"\t"):
                raise HttpError("obsolete header line folding")
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise HttpError(f"bad header line {line[:40]!r}")
            msg.headers.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
        self._msg = msg
        self._body = bytearray()
        self._frame_body(msg)
        return True

    def _start_line(self, start: bytes) -> HttpMessage:
        match = _REQUEST_LINE.match(start)
        if match:
            return HttpMessage(
                is_request=True,
                method=match.group(1).decode(),
                target=match.group(2).decode("latin-1"),
                version=match.group(3).decode(),
            )
        match = _STATUS_LINE.match(start)
        if match:
            return HttpMessage(
                is_request=False, status=int(match.group(2)), version=match.group(1).decode()
            )
        if start.startswith(b"PRI * HTTP/2"):
            raise HttpError("HTTP/2 is not parsed")
        raise HttpError(f"bad start line {start[:40]!r}")

    def _frame_body(self, msg: HttpMessage) -> None:
        """Pick the body framing (RFC 9112 section 6.3)."""
        te = msg.header("transfer-encoding").lower()
        cl = msg.header("content-length")
        if not msg.is_request:
            method = self.response_method().upper()
            if 100 <= msg.status < 200 or msg.status in (204, 304) or method == "HEAD":
                self._state = self.HEAD
                return
            if msg.status == 101 or (method == "CONNECT" and 200 <= msg.status < 300):
                self._state = self.HEAD
                self._switch = True
                return
        if te:
            if te.split(",")[-1].strip() != "chunked":
                if msg.is_request:
                    raise HttpError(f"request transfer-encoding {te!r} without chunked")
                self._state = self.UNTIL_CLOSE
                return
            self._state = self.CHUNK_SIZE
            return
        if cl:
            values = {v.strip() for v in cl.split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise HttpError(f"bad content-length {cl!r}")
            self._remaining = int(next(iter(values)))
            self._state = self.LENGTH if self._remaining else self.HEAD
            return
        self._state = self.HEAD if msg.is_request else self.UNTIL_CLOSE

    def _finish(self, ts: int) -> HttpMessage:
        msg = self._msg
        assert msg is not None
        self._msg = None
        body = bytes(self._body)
        self._body = bytearray()
        encoding = msg.header("content-encoding")
        if self._tail:
            if not encoding or encoding.strip().lower() == "identity":
                msg.tail = bytes(self._tail)
            self._tail = bytearray()
        if encoding and body:
            body, cut, err = decode_body(body, encoding, self.max_body)
            msg.truncated = msg.truncated or cut
            msg.decode_error = err
        msg.body = body
        msg.ts = ts
        if self._switch:
            self._switch = False
            self._state = self.OPAQUE
        else:
            self._state = self.HEAD
        return msg


def _plausible_start(prefix: bytes) -> bool:
    """Could these first bytes begin a request or status line? Fail fast on garbage."""
    if not prefix:
        return True
    if b"HTTP/"[: len(prefix)] == prefix[:5]:
        return True
    if prefix.startswith(b"PRI "):
        return True
    return bool(_METHOD_PREFIX.match(prefix)) and (b" " in prefix or len(prefix) < 20)
