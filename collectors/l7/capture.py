"""Captured plaintext chunks → parsed, attributed envelopes (no bcc here).

The kernel side hands over :class:`~collectors.l7.chunks.Chunk` records; this module
keeps one parser stream per connection ``(pid, SSL*)``, feeds it, and wraps what the
parser completes into :class:`~streams.events.Envelope` s with the pod, the process and
the connection (``SSL*``, fd, and the socket's addresses when ``/proc`` still has them).
It is pure apart from the injected callables, so it is tested on synthetic chunks.

Two kinds of missing bytes are handled so that one loss does not desynchronise a
keep-alive connection for ever:

- a *truncated* call (more than ``max_capture`` bytes in one SSL call): the missing
  tail is fed as filler of the right length (``gap_fill``, counted in ``gap_bytes``), so
  HTTP framing (content-length, the next request) stays aligned; the body itself then
  fails to parse, which the parser counts. Gaps above ``max_gap`` reset the connection.
- a record the ring buffer refused is counted in the kernel (``lost``); the parser
  meets the hole as a parse error and resynchronises on the next message it recognises.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import struct
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from collectors.l7.chunks import CLOSE, Chunk
from streams.events import Envelope, Pod, Proc

__all__ = [
    "Capture",
    "ConnInfo",
    "Parser",
    "monotonic_to_epoch_offset",
    "socket_addresses",
]

log = logging.getLogger(__name__)

ConnKey = tuple[int, int] | tuple[int, str, int]  # (pid, SSL*) or (pid, "fd", fd)


class _Event(Protocol):
    kind: str
    ts: int
    data: dict[str, Any]


class Parser(Protocol):
    """What :class:`Capture` needs from :class:`collectors.l7.parser.L7Parser`."""

    stats: dict[str, int]

    def feed(self, conn: Hashable, direction: str, data: bytes, ts_ns: int) -> list[Any]: ...
    def close(self, conn: Hashable) -> list[Any]: ...


def monotonic_to_epoch_offset() -> int:
    """Nanoseconds to add to ``bpf_ktime_get_ns()`` (CLOCK_MONOTONIC) to get epoch time.

    Taken once at start: event time must not jump when the wall clock is stepped later.
    """
    import time

    return time.time_ns() - time.monotonic_ns()


@dataclass(slots=True)
class ConnInfo:
    """What an event says about its connection (``data["conn"]``)."""

    id: str
    fd: int = -1
    tls: bool = True
    addresses: dict[str, Any] | None = None
    chunks: int = 0
    bytes: dict[str, int] = field(default_factory=lambda: {"egress": 0, "ingress": 0})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "tls": self.tls}
        if self.fd >= 0:
            out["fd"] = self.fd
        if self.addresses:
            out.update(self.addresses)
        return out


class Capture:
    """Feeds chunks to a parser per connection and emits envelopes.

    ``attribute(cgroup_id)`` returns the pod (``Attributor.pod_for_cgroup``);
    ``emit(envelope)`` publishes (``FramePublisher.submit``); ``resolve(pid, fd)`` finds
    the socket's addresses (default: :func:`socket_addresses`; ``None`` disables).
    ``max_conns`` bounds the connections tracked: the least recently used one is closed
    (its parser state flushed) and counted in ``evicted`` when a new one arrives.
    """

    def __init__(
        self,
        parser: Parser,
        *,
        node: str,
        attribute: Callable[[int], Pod | None],
        emit: Callable[[Envelope], object],
        clock_offset_ns: int | None = None,
        max_capture: int = 128 * 1024,
        max_gap: int = 16 * 1024 * 1024,
        gap_fill: bytes = b" ",
        max_conns: int = 65_536,
        resolve: Callable[[int, int], dict[str, Any] | None] | None = None,
        resolve_addresses: bool = True,
    ) -> None:
        self.parser = parser
        self.node = node
        self.attribute = attribute
        self.emit = emit
        self.clock_offset_ns = (
            monotonic_to_epoch_offset() if clock_offset_ns is None else clock_offset_ns
        )
        self.max_capture = max_capture
        self.max_gap = max_gap
        self.gap_fill = gap_fill
        self.max_conns = max_conns
        self.resolve = (resolve or socket_addresses) if resolve_addresses else None
        self._conns: OrderedDict[ConnKey, ConnInfo] = OrderedDict()
        self.stats: dict[str, int] = {
            "chunks": 0, "bytes": 0, "truncated_calls": 0, "gap_bytes": 0, "gap_resets": 0,
            "closes": 0, "events": 0, "emitted": 0, "emit_failures": 0, "parser_crashes": 0,
            "evicted": 0, "bad_records": 0,
        }

    # -- input ------------------------------------------------------------------------
    def handle(self, chunk: Chunk) -> None:
        """Take one record from the kernel. Never raises on its content."""
        key = chunk.conn
        if chunk.kind == CLOSE:
            self.stats["closes"] += 1
            info = self._conns.pop(key, None)
            if info is not None:
                self._emit_all(chunk, info, self._parser_call(self.parser.close, key))
            return
        info = self._conn(chunk)
        ts = chunk.ts_ns + self.clock_offset_ns
        self.stats["chunks"] += 1
        self.stats["bytes"] += len(chunk.data)
        info.chunks += 1
        info.bytes[chunk.direction] = info.bytes.get(chunk.direction, 0) + len(chunk.data)
        events = self._parser_call(self.parser.feed, key, chunk.direction, chunk.data, ts)
        if chunk.truncated and chunk.end >= min(chunk.total_len, self.max_capture):
            events += self._fill_gap(chunk, info, ts)
        self._emit_all(chunk, info, events)

    def close_pids(self, alive: Callable[[int], bool]) -> int:
        """Close the connections of processes that are gone (no SSL_free was seen, e.g.
        the process was killed). Returns how many were closed."""
        dead = [key for key in self._conns if not alive(key[0])]
        for key in dead:
            self._close_quietly(key)
        return len(dead)

    def close_all(self) -> None:
        """Flush every connection (shutdown): messages that end with the close go out."""
        for key in list(self._conns):
            self._close_quietly(key)

    @property
    def connections(self) -> int:
        return len(self._conns)

    # -- internals --------------------------------------------------------------------
    def _conn(self, chunk: Chunk) -> ConnInfo:
        key = chunk.conn
        info = self._conns.get(key)
        if info is not None:
            self._conns.move_to_end(key)
            if info.fd < 0 <= chunk.fd:
                info.fd = chunk.fd
            return info
        while len(self._conns) >= self.max_conns:
            old_key = next(iter(self._conns))
            self.stats["evicted"] += 1
            self._close_quietly(old_key)
        # An SSL* is reused by malloc once freed: the first chunk's time tells apart the
        # connections that shared it.
        info = ConnInfo(id=f"{_conn_name(key)}:{chunk.ts_ns}", fd=chunk.fd, tls=chunk.tls)
        if chunk.peer is not None:  # from the kernel: survives the connection's end
            info.addresses = {"daddr": chunk.peer[0], "dport": chunk.peer[1], "proto": "tcp"}
        if self.resolve is not None and chunk.fd >= 0:
            try:
                found = self.resolve(chunk.pid, chunk.fd)
            except OSError:
                found = None
            if found and (info.addresses is None or (found["daddr"], found["dport"])
                          == (info.addresses["daddr"], info.addresses["dport"])):
                info.addresses = found  # adds the local side while the socket lives
        self._conns[key] = info
        return info

    def _close_quietly(self, key: ConnKey) -> None:
        self._conns.pop(key, None)
        for event in self._parser_call(self.parser.close, key):
            # No chunk to take pod and process from: the event goes out with the pid only.
            self._submit(event, pod=None, proc=Proc(pid=key[0]),
                         conn={"id": _conn_name(key), "tls": len(key) == 2})

    def _fill_gap(self, chunk: Chunk, info: ConnInfo, ts: int) -> list[Any]:
        missing = chunk.total_len - chunk.end
        self.stats["truncated_calls"] += 1
        if missing <= 0:
            return []
        if missing > self.max_gap:
            self.stats["gap_resets"] += 1
            return self._parser_call(self.parser.close, chunk.conn)
        self.stats["gap_bytes"] += missing
        filler = self.gap_fill * missing
        return self._parser_call(self.parser.feed, chunk.conn, chunk.direction, filler, ts)

    def _parser_call(self, fn: Callable[..., list[Any]], *args: Any) -> list[Any]:
        try:
            return list(fn(*args))
        except Exception:  # the parser promises not to raise; one bug must not stop capture
            self.stats["parser_crashes"] += 1
            log.exception("L7 parser raised on %s", args[0])
            return []

    def _emit_all(self, chunk: Chunk, info: ConnInfo, events: list[Any]) -> None:
        if not events:
            return
        pod = self.attribute(chunk.cgroup_id)
        proc = Proc(pid=chunk.pid, tid=chunk.tid, comm=chunk.comm)
        conn = info.to_dict()
        for event in events:
            self._submit(event, pod=pod, proc=proc, conn=conn)

    def _submit(self, event: _Event, *, pod: Pod | None, proc: Proc,
                conn: dict[str, Any]) -> None:
        self.stats["events"] += 1
        envelope = Envelope(
            kind=event.kind, ts=event.ts, node=self.node, source="l7",
            data={**event.data, "conn": conn}, pod=pod, proc=proc,
        )
        try:
            accepted = self.emit(envelope)
        except Exception:
            self.stats["emit_failures"] += 1
            log.exception("emit failed for %s", event.kind)
            return
        if accepted is False:
            self.stats["emit_failures"] += 1
        else:
            self.stats["emitted"] += 1


def _conn_name(key: ConnKey) -> str:
    """``pid:ssl`` (hex) for TLS, ``pid:fd<n>`` for plaintext sockets."""
    if len(key) == 2:
        return f"{key[0]}:{key[1]:x}"
    return f"{key[0]}:fd{key[-1]}"


# -- socket addresses from /proc ------------------------------------------------------
def _socket_inode(pid: int, fd: int, proc: str) -> int | None:
    try:
        target = os.readlink(f"{proc}/{pid}/fd/{fd}")
    except OSError:
        return None
    if not target.startswith("socket:["):
        return None
    return int(target[8:-1])


def _hex_address(text: str) -> tuple[str, int]:
    host, _, port = text.partition(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # four 32-bit words, each in host (little-endian) order
        words = struct.unpack("<4I", raw)
        addr = str(ipaddress.IPv6Address(struct.pack(">4I", *words)))
        mapped = ipaddress.IPv6Address(addr).ipv4_mapped
        if mapped is not None:
            addr = str(mapped)
    return addr, int(port, 16)


def socket_addresses(pid: int, fd: int, proc: str = "/proc") -> dict[str, Any] | None:
    """``{"saddr", "sport", "daddr", "dport", "proto"}`` of a TCP socket fd, read from
    the process's own network namespace (``/proc/<pid>/net/tcp{,6}``), else None.

    The same 4-tuple the kernel collector reports for ``net.connect``, so the two layers
    join on it. Looked up once per connection, at its first chunk.
    """
    inode = _socket_inode(pid, fd, proc)
    if inode is None:
        return None
    wanted = str(inode)
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{proc}/{pid}/net/{name}") as fh:
                next(fh, None)
                for line in fh:
                    cols = line.split()
                    if len(cols) > 9 and cols[9] == wanted:
                        saddr, sport = _hex_address(cols[1])
                        daddr, dport = _hex_address(cols[2])
                        return {"saddr": saddr, "sport": sport, "daddr": daddr,
                                "dport": dport, "proto": "tcp"}
        except (OSError, ValueError):
            continue
    return None
