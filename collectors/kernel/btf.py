"""Struct member offsets of the running kernel, from its BTF (pure reader of
``/sys/kernel/btf/vmlinux``).

bcc compiles against the installed kernel headers, whose struct layouts need not match
the running kernel (here: 6.1 headers, a 6.18 kernel), and these machines cannot load
the BTF-based program types (fentry, LSM) that would relocate field accesses. The few
kernel structs the collector walks (the exec'ing task's namespaces, its stdio files,
the binprm's interpreter) are therefore read with ``bpf_probe_read_kernel`` at offsets
taken from the kernel's own type information and passed to the BPF program as ``-D``
defines. A member that is not found leaves its define out, and the program leaves that
fact out (``#ifdef``), so a kernel that renames a field loses one fact, not the loader.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Btf", "BtfError", "kernel_offsets"]

VMLINUX = Path("/sys/kernel/btf/vmlinux")

_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF, _VOLATILE, _CONST = range(1, 11)
_RESTRICT, _FUNC, _FUNC_PROTO, _VAR, _DATASEC, _FLOAT, _DECL_TAG, _TYPE_TAG, _ENUM64 = (
    range(11, 20))
_MODIFIERS = (_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG)
_TYPE = struct.Struct("<III")
_MEMBER = struct.Struct("<III")


class BtfError(ValueError):
    """Not BTF, or a struct/member that is not there."""


@dataclass(frozen=True, slots=True)
class _Type:
    kind: int
    name: str
    size_or_type: int
    kind_flag: bool
    vlen: int
    at: int  # offset of the kind-specific data in the type section


class Btf:
    """Types of one BTF blob, indexed by id; structs and unions also by name."""

    def __init__(self, blob: bytes) -> None:
        if len(blob) < 24:
            raise BtfError("shorter than a BTF header")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", blob)
        if magic != 0xEB9F:
            raise BtfError(f"bad BTF magic {magic:#x}")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", blob, 8)
        self._types_raw = blob[hdr_len + type_off: hdr_len + type_off + type_len]
        self._strings = blob[hdr_len + str_off: hdr_len + str_off + str_len]
        self._types: list[_Type | None] = [None]  # ids start at 1
        self._by_name: dict[str, int] = {}
        self._parse()

    @classmethod
    def load(cls, path: Path = VMLINUX) -> Btf:
        return cls(path.read_bytes())

    def _name(self, off: int) -> str:
        end = self._strings.find(b"\0", off)
        return self._strings[off:end].decode("ascii", "replace")

    def _parse(self) -> None:
        raw, pos, n = self._types_raw, 0, len(self._types_raw)
        # bytes after the type record: fixed, or per member (vlen)
        fixed = {_INT: 4, _ARRAY: 12, _VAR: 4, _DECL_TAG: 4}
        per_member = {_STRUCT: 12, _UNION: 12, _ENUM: 8, _FUNC_PROTO: 8, _DATASEC: 12,
                      _ENUM64: 12}
        while pos + 12 <= n:
            name_off, info, size_or_type = _TYPE.unpack_from(raw, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            data_at = pos + 12
            pos = data_at + fixed.get(kind, 0) + per_member.get(kind, 0) * vlen
            name = self._name(name_off) if kind in (_STRUCT, _UNION) and name_off else ""
            self._types.append(_Type(kind, name, size_or_type, bool(info >> 31), vlen,
                                     data_at))
            if name and name not in self._by_name:
                self._by_name[name] = len(self._types) - 1

    def _resolve(self, type_id: int) -> tuple[int, _Type]:
        for _ in range(32):
            t = self._types[type_id]
            if t is None or t.kind not in _MODIFIERS:
                break
            type_id = t.size_or_type
        t = self._types[type_id]
        if t is None:
            raise BtfError(f"type id {type_id} is void")
        return type_id, t

    def _members(self, t: _Type) -> list[tuple[str, int, int]]:
        """(name, type id, bit offset) of a struct/union's members."""
        out = []
        for i in range(t.vlen):
            name_off, mtype, offset = _MEMBER.unpack_from(self._types_raw, t.at + 12 * i)
            bits = offset & 0xFFFFFF if t.kind_flag else offset
            out.append((self._name(name_off) if name_off else "", mtype, bits))
        return out

    def _find(self, type_id: int, member: str) -> tuple[int, int] | None:
        """(byte offset, member type id) of ``member``, looking into anonymous
        structs and unions."""
        _tid, t = self._resolve(type_id)
        if t.kind not in (_STRUCT, _UNION):
            return None
        for name, mtype, bits in self._members(t):
            if name == member:
                return bits // 8, mtype
            if not name:
                inner = self._find(mtype, member)
                if inner is not None:
                    return bits // 8 + inner[0], inner[1]
        return None

    def offset(self, struct_name: str, path: str) -> int:
        """Byte offset of ``path`` ("ns.inum": members of nested structs) in
        ``struct struct_name``."""
        type_id = self._by_name.get(struct_name)
        if type_id is None:
            raise BtfError(f"no struct {struct_name}")
        total = 0
        for part in path.split("."):
            found = self._find(type_id, part)
            if found is None:
                raise BtfError(f"struct {struct_name} has no member {path}")
            total += found[0]
            type_id = found[1]
        return total

    def size(self, struct_name: str) -> int:
        type_id = self._by_name.get(struct_name)
        if type_id is None:
            raise BtfError(f"no struct {struct_name}")
        return self._resolve(type_id)[1].size_or_type


# define name → (struct, member path); "SIZEOF_x" → size of struct x
WANTED: dict[str, tuple[str, str]] = {
    # namespaces of a task
    "OFF_TASK_NSPROXY": ("task_struct", "nsproxy"),
    "OFF_NSPROXY_MNT": ("nsproxy", "mnt_ns"),
    "OFF_NSPROXY_NET": ("nsproxy", "net_ns"),
    "OFF_NSPROXY_PID_CHILDREN": ("nsproxy", "pid_ns_for_children"),
    "OFF_MNT_NS_INUM": ("mnt_namespace", "ns.inum"),
    "OFF_NET_NS_INUM": ("net", "ns.inum"),
    "OFF_PID_NS_INUM": ("pid_namespace", "ns.inum"),
    "OFF_TASK_THREAD_PID": ("task_struct", "thread_pid"),
    "OFF_PID_LEVEL": ("pid", "level"),
    "OFF_PID_NUMBERS": ("pid", "numbers"),
    "OFF_UPID_NS": ("upid", "ns"),
    "SIZEOF_UPID": ("upid", ""),
    # the exec'd program and its interpreter
    "OFF_BPRM_FILENAME": ("linux_binprm", "filename"),
    "OFF_BPRM_INTERP": ("linux_binprm", "interp"),
    "OFF_BPRM_FILE": ("linux_binprm", "file"),
    # stdio: fd table → file → inode / socket
    "OFF_TASK_FILES": ("task_struct", "files"),
    "OFF_FILES_FDT": ("files_struct", "fdt"),
    "OFF_FDT_FD": ("fdtable", "fd"),
    "OFF_FDT_MAX_FDS": ("fdtable", "max_fds"),
    "OFF_FILE_INODE": ("file", "f_inode"),
    "OFF_FILE_PRIVATE": ("file", "private_data"),
    "OFF_INODE_MODE": ("inode", "i_mode"),
    "OFF_INODE_RDEV": ("inode", "i_rdev"),
    "OFF_INODE_NLINK": ("inode", "__i_nlink"),
    "OFF_SOCKET_SK": ("socket", "sk"),
    "OFF_SOCKET_TYPE": ("socket", "type"),
    "OFF_SK_FAMILY": ("sock", "__sk_common.skc_family"),
    "OFF_SK_DADDR": ("sock", "__sk_common.skc_daddr"),
    "OFF_SK_DPORT": ("sock", "__sk_common.skc_dport"),
    "OFF_SK_V6_DADDR": ("sock", "__sk_common.skc_v6_daddr"),
    "OFF_SK_PROTOCOL": ("sock", "sk_protocol"),
    "OFF_SK_ERR": ("sock", "sk_err"),
    "OFF_FILE_DENTRY": ("file", "f_path.dentry"),
    "OFF_DENTRY_NAME": ("dentry", "d_name.name"),
}


def kernel_offsets(btf: Btf | None = None) -> dict[str, int]:
    """The defines of :data:`WANTED` this kernel has (missing ones are left out)."""
    if btf is None:
        try:
            btf = Btf.load()
        except (OSError, BtfError):
            return {}
    out: dict[str, int] = {}
    for define, (struct_name, path) in WANTED.items():
        try:
            out[define] = btf.size(struct_name) if not path else btf.offset(struct_name, path)
        except BtfError:
            continue
    return out
