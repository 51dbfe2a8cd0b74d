"""A Kubernetes NetworkPolicy from the destinations the agent's baseline learned.

Egress only (ingress is left as it is): DNS to kube-dns (UDP and TCP 53), in-cluster
services by their namespace (a Service name ``svc.ns.svc.cluster.local`` resolves to a
ClusterIP that the policy never sees: NetworkPolicy matches the pods behind it, so the
rule selects the namespace), and every other destination by the addresses it was seen at
(``/32``, ``/128``) and its port. A plain NetworkPolicy cannot name a domain, so a
provider whose addresses change is better served by the CiliumNetworkPolicy export.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from models.exports.common import (
    ANNOTATION,
    ExportOptions,
    check_phase,
    metadata,
    policy,
    selector,
)

__all__ = ["cluster_namespace", "network_policy"]

KUBE_DNS_NAMESPACE = "kube-system"
KUBE_DNS_LABELS = {"k8s-app": "kube-dns"}


def cluster_namespace(domain: str, cluster_domain: str = "cluster.local") -> str | None:
    """The namespace of an in-cluster Service name, None for anything else.

    >>> cluster_namespace("crm-mcp.support.svc.cluster.local")
    'support'
    >>> cluster_namespace("api.openai.com") is None
    True
    """
    for suffix in (f".svc.{cluster_domain}", ".svc"):
        if domain.endswith(suffix):
            labels = domain[: -len(suffix)].split(".")
            return labels[-1] if len(labels) >= 2 else None
    return None


def _cidr(addr: str) -> str | None:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    return f"{ip}/{32 if ip.version == 4 else 128}"


def grouped(destinations: Iterable[Mapping[str, Any]], cluster_domain: str
            ) -> tuple[dict[tuple[str, int], set[str]], dict[tuple[str, int], set[str]],
                       dict[tuple[str, int], set[str]]]:
    """Per (protocol, port): in-cluster namespaces, CIDRs, and external names."""
    namespaces: dict[tuple[str, int], set[str]] = defaultdict(set)
    cidrs: dict[tuple[str, int], set[str]] = defaultdict(set)
    names: dict[tuple[str, int], set[str]] = defaultdict(set)
    for d in destinations:
        key = (str(d.get("protocol", "tcp")).upper(), int(d["port"]))
        domain = str(d.get("domain") or "")
        ns = cluster_namespace(domain, cluster_domain) if domain else None
        if ns:
            namespaces[key].add(ns)
            continue
        if domain:
            names[key].add(domain)
        for addr in d.get("addrs") or []:
            cidr = _cidr(str(addr))
            if cidr:
                cidrs[key].add(cidr)
    return namespaces, cidrs, names


def network_policy(record: Mapping[str, Any], options: ExportOptions) -> dict[str, Any]:
    check_phase(record, options)
    facts = policy(record)
    namespaces, cidrs, names = grouped(facts.get("destinations") or [], options.cluster_domain)
    egress: list[dict[str, Any]] = [{
        "to": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": KUBE_DNS_NAMESPACE}},
                "podSelector": {"matchLabels": dict(KUBE_DNS_LABELS)}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]
    for (proto, port), nss in sorted(namespaces.items()):
        egress.append({"to": [{"namespaceSelector": {"matchLabels": {
                                   "kubernetes.io/metadata.name": ns}}} for ns in sorted(nss)],
                       "ports": [{"protocol": proto, "port": port}]})
    for (proto, port), blocks in sorted(cidrs.items()):
        egress.append({"to": [{"ipBlock": {"cidr": c}} for c in sorted(blocks)],
                       "ports": [{"protocol": proto, "port": port}]})
    seen = "; ".join(f"{proto}/{port}: {', '.join(sorted(n))}"
                     for (proto, port), n in sorted(names.items()))
    extra = {f"{ANNOTATION}/egress-names": seen} if seen else {}
    excluded = [str(x.get("what")) for x in facts.get("excluded") or []
                if not str(x.get("what", "")).startswith("syscall ")]
    if excluded:
        extra[f"{ANNOTATION}/seen-not-learned"] = ", ".join(excluded)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata(record, options, extra=extra),
            "spec": {"podSelector": {"matchLabels": selector(record, options)},
                     "policyTypes": ["Egress"], "egress": egress}}
