"""From a learned profile to what platform teams apply and auditors read.

Every exporter is a pure function of the profile record (``models.exports.facts``, what
``agentstory.profiles.v1`` carries) and :class:`ExportOptions`; :data:`FORMATS` maps a
``--format`` name to one, so a new format is one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from models.exports.cilium import cilium_policy
from models.exports.common import ExportOptions, NotEnforceReady
from models.exports.netpol import network_policy
from models.exports.seccomp import seccomp_json, seccomp_profile

__all__ = ["FORMATS", "ExportOptions", "Exporter", "NotEnforceReady", "export"]

Exporter = Callable[[Mapping[str, Any], ExportOptions], dict[str, Any]]

def agentstory_policy(record: Mapping[str, Any], options: ExportOptions) -> dict[str, Any]:
    """The policy ``agentstory enforce`` applies, in audit mode (it blocks nothing until
    an operator sets ``mode: enforce``: no enforce-ready check needed)."""
    from collectors.enforce.policy import policy_from_profile

    return policy_from_profile(record)


FORMATS: dict[str, Exporter] = {
    "seccomp": seccomp_profile,  # Security Profiles Operator SeccompProfile
    "seccomp-json": seccomp_json,  # the kubelet Localhost profile file
    "networkpolicy": network_policy,
    "cilium": cilium_policy,
    "agentstory": agentstory_policy,  # the in-kernel enforcer's policy (issue 19)
}


def export(record: Mapping[str, Any], fmt: str, options: ExportOptions | None = None
           ) -> dict[str, Any]:
    """The document of ``fmt`` for one agent's profile record. Raises NotEnforceReady
    (unless ``options.force``), KeyError for an unknown format, ValueError when the record
    lacks what the format needs."""
    try:
        exporter = FORMATS[fmt]
    except KeyError:
        raise KeyError(f"unknown format {fmt!r} (known: {', '.join(sorted(FORMATS))})") from None
    return exporter(record, options or ExportOptions())
