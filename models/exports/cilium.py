"""A CiliumNetworkPolicy from the destinations the agent's baseline learned.

What a NetworkPolicy cannot say: ``toFQDNs`` with the names the agent resolved and
connected to (Cilium learns their addresses from the DNS answers it proxies, so a
provider's changing addresses stay allowed), each with its ``toPorts``. ``toFQDNs`` needs
Cilium's DNS proxy to see the lookups: the first rule allows DNS to kube-dns with an L7
``dns`` rule (``matchPattern: "*"``, as Cilium's documentation recommends, so the
resolver's search-path lookups are answered rather than refused). In-cluster services are
allowed by their namespace (``toEndpoints``), unnamed destinations by ``toCIDR``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.exports.common import ANNOTATION, ExportOptions, check_phase, metadata, policy
from models.exports.common import selector as pod_selector
from models.exports.netpol import grouped

__all__ = ["cilium_policy"]

POD_NAMESPACE = "k8s:io.kubernetes.pod.namespace"


def _ports(proto: str, port: int) -> list[dict[str, Any]]:
    return [{"ports": [{"port": str(port), "protocol": proto}]}]


def cilium_policy(record: Mapping[str, Any], options: ExportOptions) -> dict[str, Any]:
    check_phase(record, options)
    facts = policy(record)
    dests = facts.get("destinations") or []
    namespaces, cidrs, names = grouped(dests, options.cluster_domain)
    named_addrs: dict[tuple[str, int], set[str]] = {
        (str(d.get("protocol", "tcp")).upper(), int(d["port"])): set() for d in dests}
    for d in dests:  # addresses of named destinations are covered by toFQDNs
        if d.get("domain"):
            named_addrs[(str(d.get("protocol", "tcp")).upper(), int(d["port"]))].update(
                f"{a}/32" if ":" not in str(a) else f"{a}/128" for a in d.get("addrs") or [])
    egress: list[dict[str, Any]] = [{
        "toEndpoints": [{"matchLabels": {POD_NAMESPACE: "kube-system",
                                         "k8s:k8s-app": "kube-dns"}}],
        "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}],
                     "rules": {"dns": [{"matchPattern": "*"}]}}]}]
    for (proto, port), nss in sorted(namespaces.items()):
        egress.append({"toEndpoints": [{"matchLabels": {POD_NAMESPACE: ns}}
                                       for ns in sorted(nss)],
                       "toPorts": _ports(proto, port)})
    for (proto, port), domains in sorted(names.items()):
        egress.append({"toFQDNs": [{"matchName": d} for d in sorted(domains)],
                       "toPorts": _ports(proto, port)})
    for (proto, port), blocks in sorted(cidrs.items()):
        unnamed = sorted(blocks - named_addrs.get((proto, port), set()))
        if unnamed:
            egress.append({"toCIDR": unnamed, "toPorts": _ports(proto, port)})
    labels = dict(pod_selector(record, options))
    excluded = [str(x.get("what")) for x in facts.get("excluded") or []
                if not str(x.get("what", "")).startswith("syscall ")]
    extra = {f"{ANNOTATION}/seen-not-learned": ", ".join(excluded)} if excluded else {}
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": metadata(record, options, extra=extra),
            "spec": {"description": f"egress of {record['agent']} as agentstory learned it "
                                    f"({record.get('first_seen')} .. {record.get('last_seen')}, "
                                    f"phase {record.get('phase')})",
                     "endpointSelector": {"matchLabels": labels},
                     "egress": egress}}
