"""The capture half without a kernel: record layout, connection bookkeeping, gaps,
attribution, socket addresses from /proc, libssl discovery, CLI content flags."""

from __future__ import annotations

import argparse
import os
import re
import socket
import struct
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.l7.capture import Capture, socket_addresses
from collectors.l7.chunks import CLOSE, DATA, DIRECTIONS, FUNCTIONS, HEADER, Chunk, decode, encode
from collectors.l7.cli import configure, parse_content
from collectors.l7.libssl import LibraryTracker, libssl_paths
from streams.events import Envelope, Pod

HERE = Path(__file__).resolve().parents[2] / "collectors" / "l7"


def chunk(data: bytes = b"GET / HTTP/1.1\r\n\r\n", **kw: Any) -> Chunk:
    base = dict(ts_ns=1_000, cgroup_id=77, ssl=0xABC, pid=42, tid=43, fd=5,
                total_len=len(data), offset=0, kind=DATA, direction="egress",
                fn="SSL_write_ex", truncated=False, comm="python3", data=data,
                peer=("10.0.0.9", 443))
    base.update(kw)
    return Chunk(**base)


@dataclass(frozen=True)
class Ev:
    kind: str
    ts: int
    data: dict[str, Any]


@dataclass
class FakeParser:
    feeds: list[tuple[Hashable, str, bytes, int]] = field(default_factory=list)
    closed: list[Hashable] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    fail: bool = False

    def feed(self, conn: Hashable, direction: str, data: bytes, ts_ns: int) -> list[Ev]:
        if self.fail:
            raise RuntimeError("parser bug")
        self.feeds.append((conn, direction, data, ts_ns))
        return [Ev("http.request", ts_ns, {"n": len(data)})]

    def close(self, conn: Hashable) -> list[Ev]:
        self.closed.append(conn)
        return [Ev("http.response", 0, {"closed": True})]


def make(parser: FakeParser, **kw: Any) -> tuple[Capture, list[Envelope]]:
    out: list[Envelope] = []
    pod = Pod(uid="pod-1")
    kw.setdefault("resolve_addresses", False)
    cap = Capture(parser, node="n1", attribute=lambda cg: pod if cg == 77 else None,
                  emit=out.append, clock_offset_ns=10**18, **kw)
    return cap, out


# -- record layout --------------------------------------------------------------------
def test_header_matches_the_c_layout() -> None:
    """The Python mirror and the C static asserts agree (size and field offsets)."""
    source = (HERE / "ssl.bpf.c").read_text()
    size = re.search(r"sizeof\(struct ssl_chunk_hdr\) == (\d+)", source)
    assert size is not None and int(size.group(1)) == HEADER.size
    offsets = dict(re.findall(r"offsetof\(struct ssl_chunk_hdr, (\w+)\) == (\d+)", source))
    names = ["ts_ns", "cgroup_id", "ssl", "pid", "tid", "fd", "total_len", "offset", "len",
             "kind", "direction", "fn", "truncated", "comm", "family", "dport", "daddr"]
    fmt, position = HEADER.format[1:], 0
    computed: dict[str, int] = {}
    for name, code in zip(names, re.findall(r"\d*[a-zA-Z]", fmt), strict=True):
        computed[name] = position
        position += struct.calcsize("<" + code)
    assert offsets and all(computed[k] == int(v) for k, v in offsets.items())


@given(
    data=st.binary(max_size=300), ssl=st.integers(0, 2**64 - 1), fd=st.integers(-1, 2**31 - 1),
    direction=st.sampled_from(DIRECTIONS), fn=st.sampled_from(FUNCTIONS),
    peer=st.one_of(st.none(), st.tuples(st.sampled_from(["127.0.0.1", "::1", "2001:db8::7"]),
                                        st.integers(0, 65535))),
)
def test_records_round_trip(data: bytes, ssl: int, fd: int, direction: str, fn: str,
                            peer: tuple[str, int] | None) -> None:
    c = chunk(data, ssl=ssl, fd=fd, direction=direction, fn=fn, peer=peer)
    assert decode(encode(c)) == c


def test_short_records_are_refused() -> None:
    with pytest.raises(ValueError):
        decode(b"\0" * 10)
    with pytest.raises(ValueError):
        decode(encode(chunk(b"abcdef"))[:-2])


# -- capture --------------------------------------------------------------------------
def test_chunks_feed_one_stream_per_connection_and_become_envelopes() -> None:
    parser = FakeParser()
    cap, out = make(parser)
    cap.handle(chunk(b"req", ts_ns=5))
    cap.handle(chunk(b"resp", ts_ns=6, direction="ingress", tid=44))
    cap.handle(chunk(b"other", ssl=0xDEF, cgroup_id=1))
    assert [(f[0], f[1], f[2], f[3]) for f in parser.feeds] == [
        ((42, 0xABC), "egress", b"req", 10**18 + 5),
        ((42, 0xABC), "ingress", b"resp", 10**18 + 6),
        ((42, 0xDEF), "egress", b"other", 10**18 + 1000),
    ]
    first = out[0]
    assert first.source == "l7" and first.node == "n1" and first.pod == Pod(uid="pod-1")
    assert first.proc is not None and (first.proc.pid, first.proc.tid) == (42, 43)
    assert first.proc.comm == "python3"
    assert first.data["conn"] == {"id": "42:abc:5", "tls": True, "fd": 5,
                                  "daddr": "10.0.0.9", "dport": 443, "proto": "tcp"}
    assert out[1].proc is not None and out[1].proc.tid == 44
    assert out[2].pod is None  # not a pod cgroup: out unattributed, keyed by node
    Envelope.from_dict(first.to_dict())  # valid against the contract
    assert cap.stats["chunks"] == 3 and cap.stats["bytes"] == 12 and cap.stats["emitted"] == 3


def test_close_flushes_the_parser_and_a_reused_pointer_is_a_new_connection() -> None:
    parser = FakeParser()
    cap, out = make(parser)
    cap.handle(chunk(b"a", ts_ns=1))
    cap.handle(chunk(b"", kind=CLOSE, ts_ns=2))
    cap.handle(chunk(b"b", ts_ns=3))
    assert parser.closed == [(42, 0xABC)]
    assert out[1].data == {"closed": True, "conn": out[0].data["conn"]}
    assert out[0].data["conn"]["id"] != out[2].data["conn"]["id"]
    assert cap.stats["closes"] == 1 and cap.connections == 1


def test_close_of_an_unknown_connection_is_counted_only() -> None:
    parser = FakeParser()
    cap, out = make(parser)
    cap.handle(chunk(b"", kind=CLOSE))
    assert parser.closed == [] and out == [] and cap.stats["closes"] == 1


def test_truncated_call_is_padded_to_its_length_so_framing_holds() -> None:
    parser = FakeParser()
    cap, _ = make(parser, max_capture=8)
    cap.handle(chunk(b"01234567", total_len=20, truncated=True))
    assert [len(f[2]) for f in parser.feeds] == [8, 12]
    assert parser.feeds[1][2] == b" " * 12
    assert cap.stats["truncated_calls"] == 1 and cap.stats["gap_bytes"] == 12


def test_only_the_last_chunk_of_a_truncated_call_pads() -> None:
    parser = FakeParser()
    cap, _ = make(parser, max_capture=8)
    cap.handle(chunk(b"0123", total_len=20, truncated=True))
    cap.handle(chunk(b"4567", total_len=20, offset=4, truncated=True))
    assert [len(f[2]) for f in parser.feeds] == [4, 4, 12]


def test_a_gap_beyond_max_gap_resets_the_connection() -> None:
    parser = FakeParser()
    cap, _ = make(parser, max_capture=8, max_gap=100)
    cap.handle(chunk(b"01234567", total_len=1000, truncated=True))
    assert parser.closed == [(42, 0xABC)] and cap.stats["gap_resets"] == 1
    assert cap.stats["gap_bytes"] == 0


def test_a_raising_parser_is_counted_not_fatal() -> None:
    parser = FakeParser(fail=True)
    cap, out = make(parser)
    cap.handle(chunk())
    assert out == [] and cap.stats["parser_crashes"] == 1


def test_a_refused_emit_is_counted() -> None:
    cap = Capture(FakeParser(), node="n", attribute=lambda _: None, emit=lambda _: False,
                  clock_offset_ns=0, resolve_addresses=False)
    cap.handle(chunk())
    assert cap.stats["emit_failures"] == 1 and cap.stats["emitted"] == 0


def test_connections_are_bounded_and_evicted_least_recent_first() -> None:
    parser = FakeParser()
    cap, _ = make(parser, max_conns=2)
    for ssl in (1, 2, 1, 3):
        cap.handle(chunk(ssl=ssl))
    assert parser.closed == [(42, 2)] and cap.stats["evicted"] == 1 and cap.connections == 2


def test_connections_of_exited_processes_are_closed() -> None:
    parser = FakeParser()
    cap, _ = make(parser)
    cap.handle(chunk(pid=1))
    cap.handle(chunk(pid=2))
    assert cap.close_pids(lambda pid: pid == 1) == 1
    assert parser.closed == [(2, 0xABC)]
    cap.close_all()
    assert parser.closed == [(2, 0xABC), (1, 0xABC)] and cap.connections == 0


def test_proc_addresses_add_the_local_side_when_they_agree_with_the_kernel() -> None:
    found = {"saddr": "10.0.0.1", "sport": 5555, "daddr": "10.0.0.9", "dport": 443,
             "proto": "tcp"}
    cap, out = make(FakeParser(), resolve=lambda pid, fd: found, resolve_addresses=True)
    cap.handle(chunk())
    assert out[0].data["conn"]["sport"] == 5555
    cap2, out2 = make(FakeParser(), resolve=lambda pid, fd: {**found, "dport": 80},
                      resolve_addresses=True)
    cap2.handle(chunk())  # the fd was reused for another socket: trust the kernel's peer
    assert out2[0].data["conn"]["dport"] == 443 and "sport" not in out2[0].data["conn"]


def test_socket_addresses_of_a_live_socket() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as client:
        got = socket_addresses(os.getpid(), client.fileno())
        assert got == {"saddr": "127.0.0.1", "sport": client.getsockname()[1],
                       "daddr": "127.0.0.1", "dport": server.getsockname()[1],
                       "proto": "tcp"}
    r, w = os.pipe()
    try:
        assert socket_addresses(os.getpid(), r) is None
    finally:
        os.close(r)
        os.close(w)


def test_socket_addresses_ipv6_from_a_proc_tree(tmp_path: Path) -> None:
    (tmp_path / "9" / "fd").mkdir(parents=True)
    (tmp_path / "9" / "net").mkdir()
    os.symlink("socket:[4242]", tmp_path / "9" / "fd" / "3")
    (tmp_path / "9" / "net" / "tcp").write_text("  sl local rem\n")
    (tmp_path / "9" / "net" / "tcp6").write_text(
        "  sl  local_address                         remote_address                        "
        "st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000000000000000000001000000:1F90 0000000000000000FFFF00000100007F:01BB "
        "01 00000000:00000000 00:00000000 00000000     0        0 4242 1\n")
    got = socket_addresses(9, 3, proc=str(tmp_path))
    assert got == {"saddr": "::1", "sport": 8080, "daddr": "127.0.0.1", "dport": 443,
                   "proto": "tcp"}


# -- libssl discovery -----------------------------------------------------------------
def test_libssl_paths_ignore_other_libraries() -> None:
    maps = (
        "7f0-7f1 r-xp 0 fe:00 1 /usr/lib/x86_64-linux-gnu/libssl.so.3\n"
        "7f1-7f2 r-xp 0 fe:00 2 /usr/lib/x86_64-linux-gnu/libssl.so.3\n"
        "7f2-7f3 r-xp 0 fe:00 3 /usr/lib/x86_64-linux-gnu/libcrypto.so.3\n"
        "7f3-7f4 r-xp 0 fe:00 4 /opt/app/lib/libssl.so.1.1\n"
        "7f4-7f5 rw-p 0 00:00 0 [heap]\n"
    )
    assert libssl_paths(maps) == {"/usr/lib/x86_64-linux-gnu/libssl.so.3",
                                  "/opt/app/lib/libssl.so.1.1"}


def test_tracker_attaches_once_per_inode_and_rechecks_pids_without_libssl(
    tmp_path: Path,
) -> None:
    proc = tmp_path / "proc"
    image = tmp_path / "image"
    (image / "lib").mkdir(parents=True)
    (image / "lib" / "libssl.so.3").write_bytes(b"elf")
    for pid in (10, 11, 12):
        (proc / str(pid)).mkdir(parents=True)
        os.symlink(image, proc / str(pid) / "root")
    line = "7f0-7f1 r-xp 0 fe:00 1 /lib/libssl.so.3\n"
    (proc / "10" / "maps").write_text(line)
    (proc / "11" / "maps").write_text(line)  # same image: same inode
    (proc / "12" / "maps").write_text("")  # has not imported ssl yet
    attached: list[str] = []
    tracker = LibraryTracker(lambda path: attached.append(path) or ["SSL_write"],
                             proc=str(proc))
    assert len(tracker.check([10, 11, 12])) == 1
    assert attached == [f"{proc}/10/root/lib/libssl.so.3"]
    reads = tracker.stats["maps_read"]
    (proc / "12" / "maps").write_text(line)
    assert tracker.check([10, 11, 12]) == []  # pid 12 read again, inode already probed
    assert tracker.stats["maps_read"] == reads + 1


def test_tracker_does_not_retry_a_library_without_ssl_symbols(tmp_path: Path) -> None:
    (tmp_path / "5").mkdir()
    os.symlink("/", tmp_path / "5" / "root")
    lib = tmp_path / "libssl.so.3"
    lib.write_bytes(b"not elf")
    (tmp_path / "5" / "maps").write_text(f"7f0-7f1 r-xp 0 fe:00 1 {lib}\n")
    calls: list[str] = []
    tracker = LibraryTracker(lambda path: calls.append(path) or [], proc=str(tmp_path))
    tracker.check([5])
    tracker.check([5])
    assert calls == [str(lib)] and not tracker.libraries and len(tracker.rejected) == 1


# -- CLI ------------------------------------------------------------------------------
def test_content_flags() -> None:
    policy = parse_content(["prompts=hash,tool_results=drop", "tool_arguments=keep"], 99)
    assert (policy.prompts, policy.tool_results, policy.tool_arguments) == (
        "hash", "drop", "keep")
    assert policy.max_chars == 99
    with pytest.raises(argparse.ArgumentTypeError):
        parse_content(["prompts=shred"], 10)
    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(["--max-capture", "4096", "--include-host", "--content",
                              "prompts=drop"])
    assert args.max_capture == 4096 and args.include_host and args.content == ["prompts=drop"]



def test_plaintext_sockets_are_keyed_by_fd_and_marked_not_tls() -> None:
    parser = FakeParser()
    cap, out = make(parser)
    cap.handle(chunk(b"POST /mcp HTTP/1.1\r\n", ssl=0, fd=7, fn="sendto", ts_ns=9))
    cap.handle(chunk(b"GET / HTTP/1.1\r\n", ssl=0, fd=8, fn="write"))
    cap.handle(chunk(b"", ssl=0, fd=7, kind=CLOSE, fn="write"))
    assert [f[0] for f in parser.feeds] == [(42, "fd", 7), (42, "fd", 8)]
    assert parser.closed == [(42, "fd", 7)]
    assert out[0].data["conn"]["id"] == "42:fd7:9" and out[0].data["conn"]["tls"] is False
    cap.close_all()
    assert out[-1].data["conn"] == {"id": "42:fd8", "tls": False}
