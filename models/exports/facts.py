"""The profile record: what ``agentstory.profiles.v1`` carries per agent.

The baseline summary (``AgentProfile.summary``) plus two views of the agent's inventory:

- ``inventory``: every item seen, with first/last seen and a count (the AI-BOM's source);
- ``policy``: only what the baseline *learned* — syscalls, and network destinations whose
  name (or, unnamed, address prefix) and port the profile knows — with what was seen but
  not learned listed apart (an attack's exfiltration domain must not become an allowed
  egress because the collector saw it once).

The exporters (seccomp, NetworkPolicy, Cilium, CycloneDX) read this record only, so
``agentstory profiles export`` works from the topic alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from models.features import Observation, ip_prefix, registrable_domain
from models.inventory import Inventory

__all__ = ["inventory_view", "iso", "policy_facts", "profile_record"]


class _Knows(Protocol):
    def knows(self, o: Observation) -> bool: ...


def iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def inventory_view(inv: Inventory) -> dict[str, list[dict[str, Any]]]:
    """Items per kind as records, most used first: ``{"key", "first_seen", "last_seen",
    "count", **props}``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, table in sorted(inv.items.items()):
        rows = [{"key": key, "first_seen": iso(first), "last_seen": iso(last), "count": count,
                 **props} for key, (first, last, count, props) in table.items()]
        rows.sort(key=lambda r: (-r["count"], r["key"]))
        out[kind] = rows
    return out


def _destination_known(profile: _Knows, props: Mapping[str, Any]) -> tuple[bool, str]:
    proto, port = props.get("protocol", "tcp"), props.get("port")
    if not profile.knows(Observation("net.port", f"{proto}/{port}")):
        return False, f"port {proto}/{port} not learned"
    domain = props.get("domain")
    if domain:
        reg = registrable_domain(str(domain))
        if profile.knows(Observation("net.domain", reg)):
            return True, ""
        return False, f"domain {reg} not learned"
    addrs = props.get("addrs") or []
    if addrs and all(profile.knows(Observation("net.ip_prefix", ip_prefix(a))) for a in addrs):
        return True, ""
    return False, "address prefix not learned"


def policy_facts(profile: _Knows, inv: Inventory) -> dict[str, Any]:
    """Learned syscalls and destinations (with their addresses and ports), and what was
    seen but is not part of the baseline."""
    syscalls, excluded = [], []
    for name in sorted(inv.items.get("syscall", {})):
        if profile.knows(Observation("syscall", name)):
            syscalls.append(name)
        else:
            excluded.append({"what": f"syscall {name}", "why": "not learned"})
    destinations = []
    for key, (first, last, count, props) in sorted(inv.items.get("destination", {}).items()):
        known, why = _destination_known(profile, props)
        if known:
            destinations.append({"domain": props.get("domain", ""),
                                 "addrs": list(props.get("addrs") or []),
                                 "port": props["port"], "protocol": props["protocol"],
                                 "first_seen": iso(first), "last_seen": iso(last),
                                 "count": count})
        else:
            excluded.append({"what": key, "why": why})
    return {"syscalls": syscalls, "destinations": destinations, "excluded": excluded}


def profile_record(profile: Any, inv: Inventory, *, bom: bool = True) -> dict[str, Any]:
    """The profiles-topic record of one agent: summary, inventory, policy facts and (with
    ``bom``) its CycloneDX AI-BOM."""
    doc: dict[str, Any] = dict(profile.summary())
    doc["inventory"] = inventory_view(inv)
    if hasattr(profile, "knows"):
        doc["policy"] = policy_facts(profile, inv)
    if bom:
        from models.exports.bom import bom_dict

        doc["bom"] = bom_dict(doc)
    return doc
