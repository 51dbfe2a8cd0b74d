"""What every policy export shares: the enforce-ready gate, names, selectors, annotations."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from models.phases import ENFORCE_READY

__all__ = ["ANNOTATION", "ExportOptions", "NotEnforceReady", "check_phase", "metadata",
           "resource_name", "split_agent"]

ANNOTATION = "agentstory.io"
_DNS1123 = re.compile(r"[^a-z0-9-]+")


class NotEnforceReady(ValueError):
    """The agent's baseline is not enforce-ready: a policy from it would break the agent
    or allow too much. ``--force`` exports anyway (the phase is in the annotations)."""


@dataclass(frozen=True, slots=True)
class ExportOptions:
    force: bool = False
    # pod labels the policy selects; empty: ``app=<workload name>`` (the usual template label)
    selector: Mapping[str, str] = field(default_factory=dict)
    seccomp_default: str = "SCMP_ACT_ERRNO"  # SCMP_ACT_LOG: audit mode, nothing refused
    cluster_domain: str = "cluster.local"


def check_phase(record: Mapping[str, Any], options: ExportOptions) -> None:
    phase = record.get("phase")
    if phase != ENFORCE_READY and not options.force:
        reasons = "; ".join(str(r) for r in record.get("phase_reasons") or []) or "no reason given"
        raise NotEnforceReady(
            f"{record.get('agent')} is in phase {phase!r}, not {ENFORCE_READY!r} ({reasons}): "
            f"a policy learned from it may break the agent or allow too much. Wait until "
            f"`agentstory profiles show` says {ENFORCE_READY}, or pass --force to export it "
            f"anyway (its phase is written into the annotations).")


def split_agent(agent: str) -> tuple[str, str, str]:
    """``namespace/kind/name`` → its parts (a bare name: namespace ``default``, kind Pod)."""
    parts = agent.split("/")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return "default", "Pod", agent


def resource_name(agent: str) -> str:
    """A DNS-1123 name for the agent's policy: ``agentstory-<workload>``."""
    name = _DNS1123.sub("-", split_agent(agent)[2].lower()).strip("-")
    return f"agentstory-{name}"[:63].rstrip("-")


def selector(record: Mapping[str, Any], options: ExportOptions) -> dict[str, str]:
    return dict(options.selector) or {"app": split_agent(str(record["agent"]))[2]}


def provenance(record: Mapping[str, Any], options: ExportOptions,
                extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where the policy came from: agent, phase, learning span, events learned."""
    out = {
        f"{ANNOTATION}/agent": str(record["agent"]),
        f"{ANNOTATION}/phase": str(record.get("phase")),
        f"{ANNOTATION}/learned-from": str(record.get("first_seen")),
        f"{ANNOTATION}/learned-until": str(record.get("last_seen")),
        f"{ANNOTATION}/events-learned": str(record.get("events_learned", 0)),
    }
    if record.get("phase") != ENFORCE_READY:
        out[f"{ANNOTATION}/forced"] = "true: exported before the baseline was enforce-ready"
    out.update(extra or {})
    return out


def metadata(record: Mapping[str, Any], options: ExportOptions, *, namespaced: bool = True,
             extra: Mapping[str, str] | None = None) -> dict[str, Any]:
    namespace = split_agent(str(record["agent"]))[0]
    meta: dict[str, Any] = {"name": resource_name(str(record["agent"]))}
    if namespaced:
        meta["namespace"] = namespace
    meta["labels"] = {"app.kubernetes.io/managed-by": "agentstory"}
    meta["annotations"] = provenance(record, options, extra)
    return meta


def policy(record: Mapping[str, Any]) -> Mapping[str, Any]:
    facts = record.get("policy")
    if not isinstance(facts, Mapping):
        raise ValueError(f"the profile record of {record.get('agent')} carries no policy facts "
                         f"(written by an older worker, or a frozen baseline)")
    return facts
