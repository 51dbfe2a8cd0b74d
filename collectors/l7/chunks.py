"""The record the TLS capture program submits, as a typed value (pure: no bcc).

Mirrors ``struct ssl_chunk_hdr`` in ``ssl_event.h``. The C side pins the layout with
static asserts (size 88, field offsets), this side with :data:`HEADER`'s size, and a
test reads the asserts back from ``ssl.bpf.c`` so that the two cannot drift apart.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

__all__ = [
    "CLOSE",
    "DATA",
    "DIRECTIONS",
    "FUNCTIONS",
    "HEADER",
    "Chunk",
    "decode",
    "encode",
]

# ts_ns cgroup_id ssl | pid tid fd total_len offset len | kind direction fn truncated
# | comm[16] | family dport daddr[16]
HEADER = struct.Struct("<QQQIIiIIIBBBB16sHH16s")
DATA, CLOSE = 0, 1
DIRECTIONS = ("egress", "ingress")  # index = SSL_DIR_*: egress = the process wrote
# index = SSL_FN_* / SYS_FN_*: the last four are plaintext HTTP on sockets (ssl == 0)
FUNCTIONS = ("SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex",
             "write", "read", "sendto", "recvfrom")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of plaintext (``kind == DATA``) or the end of a connection (``CLOSE``).

    ``offset``/``len(data)`` place the piece within the ``total_len`` bytes the SSL call
    moved; ``truncated`` says the call moved more than the kernel side captures.
    """

    ts_ns: int  # CLOCK_MONOTONIC (bpf_ktime_get_ns)
    cgroup_id: int
    ssl: int
    pid: int
    tid: int
    fd: int
    total_len: int
    offset: int
    kind: int
    direction: str
    fn: str
    truncated: bool
    comm: str
    data: bytes
    peer: tuple[str, int] | None = None  # (address, port) the fd was connect()ed to

    @property
    def tls(self) -> bool:
        return self.ssl != 0

    @property
    def conn(self) -> tuple[int, int] | tuple[int, str, int]:
        """The connection key: an ``SSL*`` is unique within one process at a time, and
        so is an fd (plaintext sockets, ``ssl == 0``)."""
        return (self.pid, self.ssl) if self.ssl else (self.pid, "fd", self.fd)

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


def decode(raw: bytes) -> Chunk:
    """Ring-buffer record → :class:`Chunk`. Raises ``ValueError`` on a short record."""
    if len(raw) < HEADER.size:
        raise ValueError(f"record of {len(raw)} bytes is shorter than the header")
    (ts, cgid, ssl, pid, tid, fd, total, offset, length, kind, direction, fn, truncated,
     comm, family, dport, daddr) = HEADER.unpack_from(raw)
    data = bytes(raw[HEADER.size : HEADER.size + length])
    if len(data) != length:
        raise ValueError(f"record says {length} payload bytes, carries {len(data)}")
    return Chunk(
        ts_ns=ts, cgroup_id=cgid, ssl=ssl, pid=pid, tid=tid, fd=fd, total_len=total,
        offset=offset, kind=kind,
        direction=DIRECTIONS[direction] if direction < len(DIRECTIONS) else "unknown",
        fn=FUNCTIONS[fn] if fn < len(FUNCTIONS) else "unknown",
        truncated=bool(truncated),
        comm=comm.split(b"\0", 1)[0].decode("utf-8", "replace"), data=data,
        peer=_peer(family, dport, daddr),
    )


def _peer(family: int, port: int, addr: bytes) -> tuple[str, int] | None:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, addr[:4]), port
    if family == socket.AF_INET6:
        text = socket.inet_ntop(socket.AF_INET6, addr)
        if text.startswith("::ffff:") and "." in text:
            text = text[7:]  # an IPv4 peer reached through a dual-stack socket
        return text, port
    return None


def encode(chunk: Chunk) -> bytes:
    """The inverse of :func:`decode` (tests and replays build records with it)."""
    return HEADER.pack(
        chunk.ts_ns, chunk.cgroup_id, chunk.ssl, chunk.pid, chunk.tid, chunk.fd,
        chunk.total_len, chunk.offset, len(chunk.data), chunk.kind,
        DIRECTIONS.index(chunk.direction), FUNCTIONS.index(chunk.fn), int(chunk.truncated),
        chunk.comm.encode()[:16], *_pack_peer(chunk.peer),
    ) + chunk.data


def _pack_peer(peer: tuple[str, int] | None) -> tuple[int, int, bytes]:
    if peer is None:
        return 0, 0, bytes(16)
    address, port = peer
    if ":" in address:
        return socket.AF_INET6, port, socket.inet_pton(socket.AF_INET6, address)
    return socket.AF_INET, port, socket.inet_pton(socket.AF_INET, address).ljust(16, b"\0")
