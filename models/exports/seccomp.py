"""A seccomp profile from the syscalls the agent's containers were seen to make.

Two forms: the JSON file kubelet reads for ``seccompProfile: {type: Localhost}`` (the OCI /
containers seccomp format, ``/var/lib/kubelet/seccomp/<file>``), and the Security Profiles
Operator's ``SeccompProfile`` resource that installs that file on every node. Default action
``SCMP_ACT_ERRNO`` (EPERM) and the learned syscalls allowed; ``SCMP_ACT_LOG`` as the default
gives an audit run that refuses nothing and logs what the profile lacks.

The kernel collector names syscalls from the x86_64 table; a number it could not name
(``nr_335``) cannot be written into a profile and is listed in an annotation instead
(335 is ``uretprobe`` on 6.11+ kernels: the L7 collector's own probes, which the kernel
lets through seccomp).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from models.exports.common import ANNOTATION, ExportOptions, check_phase, metadata, policy

__all__ = ["seccomp_json", "seccomp_profile"]

ARCHITECTURES = ["SCMP_ARCH_X86_64"]  # the names are from the x86_64 table
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
EPERM = 1


def _split(record: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    names = [str(n) for n in policy(record).get("syscalls") or []]
    good = sorted({n for n in names if _NAME.match(n) and not n.startswith("nr_")})
    return good, sorted(set(names) - set(good))


def _spec(record: Mapping[str, Any], options: ExportOptions) -> dict[str, Any]:
    allowed, _ = _split(record)
    if not allowed:
        raise ValueError(f"{record.get('agent')}: no syscalls learned (the kernel collector "
                         f"runs syscall.profile only with --concerns naming it)")
    return {"defaultAction": options.seccomp_default, "defaultErrnoRet": EPERM,
            "architectures": list(ARCHITECTURES),
            "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]}


def seccomp_json(record: Mapping[str, Any], options: ExportOptions) -> dict[str, Any]:
    """The kubelet Localhost profile file (no room for annotations in that format)."""
    check_phase(record, options)
    return _spec(record, options)


def seccomp_profile(record: Mapping[str, Any], options: ExportOptions) -> dict[str, Any]:
    """The Security Profiles Operator's SeccompProfile (v1beta1)."""
    check_phase(record, options)
    spec = _spec(record, options)
    spec.pop("defaultErrnoRet")  # not a field of the operator's CRD (EPERM is its default)
    _, omitted = _split(record)
    extra = {f"{ANNOTATION}/omitted-syscalls": ",".join(omitted)} if omitted else {}
    return {"apiVersion": "security-profiles-operator.x-k8s.io/v1beta1",
            "kind": "SeccompProfile", "metadata": metadata(record, options, extra=extra),
            "spec": spec}
