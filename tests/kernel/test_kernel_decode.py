"""Pure decoder tests: no kernel, no bcc."""

from __future__ import annotations

import ctypes

from collectors.kernel import decode as dec
from collectors.kernel.envelopes import exec_envelope, exit_envelope
from collectors.kernel.loader import ALL_CONCERNS, assemble_source
from streams.events import Envelope, Pod


def _header(kind: int) -> dec.EventHeader:
    h = dec.EventHeader()
    h.kind, h.pid, h.tid, h.ppid, h.uid, h.count = kind, 42, 43, 41, 1000, 1
    h.ts, h.cgroup_id, h.start_ns, h.comm = 5_000, 77, 4_000, b"python3"
    return h


def test_exec_record_round_trip() -> None:
    r = dec.ExecRecord()
    r.h = _header(dec.Kind.EXEC)
    args = b"python3\0-c\0print('\xff')\0"
    ctypes.memmove(ctypes.addressof(r) + dec.ExecRecord.args.offset, args, len(args))
    r.args_len, r.argc, r.flags = len(args), 3, dec.EXEC_ARGV_TRUNCATED
    r.filename, r.pcomm = b"/usr/bin/python3", b"bash"
    ev = dec.decode(bytes(r))
    assert isinstance(ev, dec.ExecEvent)
    assert ev.argv == ["python3", "-c", "print('\\xff')"]
    assert ev.filename == "/usr/bin/python3" and ev.parent_comm == "bash"
    assert ev.argv_truncated and not ev.argv_missing
    assert ev.header.pid == 42 and ev.header.comm == "python3"
    env = exec_envelope(ev, node="n", pod=Pod(uid="u"), offset_ns=1_000_000)
    assert env.ts == 1_005_000 and env.kind == "process.exec"
    assert env.proc is not None and env.proc.exe == "/usr/bin/python3"
    assert env.proc.ppid == 41 and env.proc.start_ns == 4_000
    assert env.data["argv_truncated"] is True
    assert Envelope.from_dict(env.to_dict()) == env


def test_exit_record_fields_known_and_unknown() -> None:
    r = dec.ExitRecord()
    r.h = _header(dec.Kind.EXIT)
    r.exit_code, r.exit_flags, r.lifetime_ns = 3, dec.EXIT_CODE_KNOWN, 1_000
    ev = dec.decode(bytes(r))
    assert isinstance(ev, dec.ExitEvent)
    assert (ev.exit_code, ev.signal, ev.lifetime_ns) == (3, None, 1_000)
    r.exit_flags, r.signal, r.lifetime_ns = dec.EXIT_SIGNAL_KNOWN, 9, 0
    ev = dec.decode(bytes(r))
    assert isinstance(ev, dec.ExitEvent)
    assert (ev.exit_code, ev.signal, ev.lifetime_ns) == (None, 9, None)
    env = exit_envelope(ev, node="n", pod=None, offset_ns=0)
    assert env.data == {"cgroup_id": 77, "signal": 9}


def test_short_and_unknown_records_are_reported_not_raised() -> None:
    assert isinstance(dec.decode(b"\x01\x00"), dec.Undecodable)
    h = _header(99)
    bad = dec.decode(bytes(h))
    assert isinstance(bad, dec.Undecodable) and "unknown kind 99" in bad.reason
    h = _header(dec.Kind.EXEC)
    short = dec.decode(bytes(h))
    assert isinstance(short, dec.Undecodable) and "expected" in short.reason


def test_split_args_edge_cases() -> None:
    assert dec.split_args(b"a\0b\0", 100) == ["a", "b"]
    assert dec.split_args(b"a\0bc", 3) == ["a", "b"]  # cut by length
    assert dec.split_args(b"\0", 1) == [""]


def test_assemble_source_inlines_the_header_once() -> None:
    text = assemble_source(ALL_CONCERNS)
    assert text.count("#define AGENTSTORY_COMMON_BPF_H") == 1
    assert not [line for line in text.splitlines() if line.startswith("#include \"common")]
    assert "sched_process_exec" in text


def test_unpacked_header_and_open_agree_with_the_ctypes_mirror() -> None:
    """The hot path unpacks with precompiled structs; the ctypes mirror (checked against
    the compiled layout in test_kernel_layout) must read the same values."""
    r = dec.OpenRecord()
    r.h = _header(dec.Kind.OPEN)
    r.h.ts, r.h.cgroup_id, r.h.start_ns = 2**63 + 5, 2**40 + 7, 2**33 + 9
    r.h.comm = b"x" * dec.COMM_LEN  # no NUL: all 16 bytes are the name
    r.window, r.ret, r.flags, r.dfd = 2**34 + 1, -13, 0o2000101, -100
    r.path = b"/a/\xffb"
    ev = dec.decode(bytes(r))
    assert isinstance(ev, dec.OpenEvent)
    assert ev.header == dec.Header.from_struct(r.h)
    assert (ev.window, ev.result, ev.flags, ev.dfd) == (r.window, r.ret, r.flags, r.dfd)
    assert ev.path_raw == b"/a/\xffb" and ev.path == "/a/\\xffb"
    full = dec.OpenRecord()
    full.h = _header(dec.Kind.OPEN)
    ctypes.memmove(ctypes.addressof(full) + dec.OpenRecord.path.offset, b"p" * 256, 256)
    long_path = dec.decode(bytes(full))
    assert isinstance(long_path, dec.OpenEvent) and long_path.path == "p" * 256
