"""The few bpf(2) commands bcc 0.26 does not wrap, through ctypes: cgroup links (so a
program stays attached only while the enforcer holds the link's fd: if the enforcer
dies, the kernel removes its programs), and the queries the kill switch and the tests
use to see which programs are attached or loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = [
    "ATTACH_TYPES",
    "BpfError",
    "enable_stats",
    "link_create",
    "loaded_programs",
    "prog_ids_attached",
    "program_stats",
]

_SYS_BPF = 321  # x86_64
BPF_PROG_QUERY = 16
BPF_PROG_GET_NEXT_ID = 11
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_LINK_CREATE = 28
BPF_ENABLE_STATS = 32

# enum bpf_attach_type values of the hooks the enforcer uses
ATTACH_TYPES = {
    "ingress": 0,     # BPF_CGROUP_INET_INGRESS
    "connect4": 10,   # BPF_CGROUP_INET4_CONNECT
    "connect6": 11,   # BPF_CGROUP_INET6_CONNECT
    "sendmsg4": 14,   # BPF_CGROUP_UDP4_SENDMSG
    "sendmsg6": 15,   # BPF_CGROUP_UDP6_SENDMSG
}

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    pass


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    ret = _libc.syscall(_SYS_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, f"bpf({cmd}): {os.strerror(err)}")
    return int(ret)


def _attr(size: int = 128) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(size)


def _put(attr: ctypes.Array[ctypes.c_char], offset: int, fmt: type, value: int) -> None:
    fmt.from_buffer(attr, offset).value = value  # type: ignore[attr-defined]


def link_create(prog_fd: int, cgroup_fd: int, attach_type: int) -> int:
    """Attach ``prog_fd`` to the cgroup as a link; returns the link fd (close = detach).
    Links coexist with other programs on the same hook (other tools' programs run
    too, and every program must allow a connect for it to pass)."""
    attr = _attr()
    _put(attr, 0, ctypes.c_uint32, prog_fd)
    _put(attr, 4, ctypes.c_uint32, cgroup_fd)
    _put(attr, 8, ctypes.c_uint32, attach_type)
    return _bpf(BPF_LINK_CREATE, attr)


def prog_ids_attached(cgroup_path: str, attach_type: int) -> list[int]:
    """Ids of the programs attached to this cgroup itself for the hook (not inherited)."""
    fd = os.open(cgroup_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        ids = (ctypes.c_uint32 * 64)()
        attr = _attr()
        _put(attr, 0, ctypes.c_uint32, fd)
        _put(attr, 4, ctypes.c_uint32, attach_type)
        _put(attr, 16, ctypes.c_uint64, ctypes.addressof(ids))
        _put(attr, 24, ctypes.c_uint32, 64)
        _bpf(BPF_PROG_QUERY, attr)
        count = ctypes.c_uint32.from_buffer(attr, 24).value
        return [int(ids[i]) for i in range(min(count, 64))]
    finally:
        os.close(fd)


def _prog_info(prog_id: int) -> tuple[str, int, int] | None:
    """(name, run_time_ns, run_cnt) of a loaded program; None when it is gone."""
    attr = _attr()
    _put(attr, 0, ctypes.c_uint32, prog_id)
    try:
        fd = _bpf(BPF_PROG_GET_FD_BY_ID, attr)
    except BpfError:
        return None  # gone in between
    try:
        info = ctypes.create_string_buffer(256)
        attr = _attr()
        _put(attr, 0, ctypes.c_uint32, fd)
        _put(attr, 4, ctypes.c_uint32, ctypes.sizeof(info))
        _put(attr, 8, ctypes.c_uint64, ctypes.addressof(info))
        _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
        name = info.raw[64:80].split(b"\0", 1)[0].decode("ascii", "replace")
        run_time_ns = ctypes.c_uint64.from_buffer(info, 192).value
        run_cnt = ctypes.c_uint64.from_buffer(info, 200).value
        return name, run_time_ns, run_cnt
    finally:
        os.close(fd)


def loaded_programs(prefix: str) -> dict[int, str]:
    """{id: name} of every BPF program loaded on the node whose name starts with
    ``prefix`` (the kernel keeps 15 characters of a name)."""
    found: dict[int, str] = {}
    current = 0
    while True:
        attr = _attr()
        _put(attr, 0, ctypes.c_uint32, current)
        try:
            _bpf(BPF_PROG_GET_NEXT_ID, attr)
        except BpfError:
            return found
        current = ctypes.c_uint32.from_buffer(attr, 4).value
        info = _prog_info(current)
        if info is not None and info[0].startswith(prefix):
            found[current] = info[0]


def program_stats(prefix: str) -> dict[str, tuple[int, int]]:
    """{name: (runs, total run time in ns)} of the loaded programs named ``prefix…``,
    summed over programs of one name; counted only while :func:`enable_stats` is held."""
    out: dict[str, tuple[int, int]] = {}
    for prog_id in loaded_programs(prefix):
        info = _prog_info(prog_id)
        if info is not None:
            runs, ns = out.get(info[0], (0, 0))
            out[info[0]] = (runs + info[2], ns + info[1])
    return out


def enable_stats() -> int:
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): the kernel times every BPF program run while
    the returned fd is open (close it to stop; nothing to restore)."""
    attr = _attr()
    _put(attr, 0, ctypes.c_uint32, 0)
    return _bpf(BPF_ENABLE_STATS, attr)
