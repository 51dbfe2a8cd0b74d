"""decode.py's ctypes mirrors against the layout clang compiled (Tetragon's alignchecker
idea): bcc builds its own ctypes class for a map's value type from the compiled program;
every field offset and the size must agree with ours."""

from __future__ import annotations

import ctypes

import pytest

from collectors.kernel import decode as dec

pytestmark = pytest.mark.root

MIRRORS = {
    b"layout_event_header": dec.EventHeader,
    b"layout_exec_event": dec.ExecRecord,
    b"layout_exit_event": dec.ExitRecord,
    b"layout_cgroup_event": dec.CgroupMkdirRecord,
    b"layout_open_event": dec.OpenRecord,
    b"layout_fileop_event": dec.FileOpRecord,
    b"layout_nsop_event": dec.NsOpRecord,
    b"layout_open_key": dec.OpenKey,
    b"layout_open_key_short": dec.OpenKeyShort,
    b"layout_net_event": dec.NetRecord,
    b"layout_net_key": dec.NetKey,
    b"layout_close_event": dec.CloseRecord,
    b"layout_dns_event": dec.DnsRecord,
}


def _layout(cls: type[ctypes.Structure], prefix: str = "") -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for name, ftype, *_ in cls._fields_:
        if name.startswith("__pad"):
            continue
        desc = getattr(cls, name)
        out[prefix + name] = (desc.offset, desc.size)
        if isinstance(ftype, type) and issubclass(ftype, ctypes.Structure):
            for sub, (off, size) in _layout(ftype, f"{prefix}{name}.").items():
                out[sub] = (desc.offset + off, size)
    return out


@pytest.fixture(scope="module")
def compiled(kernel_ok):
    from bcc import BPF

    from collectors.kernel.loader import ALL_CONCERNS, assemble_source, btf_defines

    bpf = BPF(text=assemble_source(ALL_CONCERNS).encode(),
              cflags=["-DLAYOUT_CHECK", *btf_defines()])
    try:
        yield bpf
    finally:
        bpf.cleanup()


@pytest.mark.parametrize("table", sorted(MIRRORS))
def test_mirror_matches_compiled_layout(compiled, table: bytes) -> None:
    ours = MIRRORS[table]
    theirs = compiled[table].Leaf
    assert ctypes.sizeof(ours) == ctypes.sizeof(theirs)
    layout = _layout(ours)
    assert len(layout) >= 4
    assert layout == _layout(theirs)
