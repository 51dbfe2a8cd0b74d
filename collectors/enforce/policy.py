"""Enforcement policies as data: load and validate (JSON Schema + address checks), derive
one from a learned profile, and turn a policy into the entries of the kernel maps.

Pure: no bcc, no IO besides reading a file the caller names. The loader applies what
:func:`map_entries` returns; tests check the encodings against the BPF side's
expectations (enforce.bpf.h) on real programs.

A policy names one agent (``namespace/Kind/name``); every pod of that agent on the node
is enforced, and no other. ``egress`` absent means egress is not restricted, ``exec``
absent means executables are not. Domains are exact names, or ``*.example.com`` for
every proper subdomain; their addresses are learnt in the kernel from the DNS answers
the pod receives. The DNS resolvers (port 53 only) and the node's own addresses are
always allowed, whatever the policy.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = [
    "MODES",
    "CidrRule",
    "DomainRule",
    "MapEntries",
    "Policy",
    "PolicyError",
    "addr16",
    "always_allowed",
    "cidr_prefixlen",
    "exe_aliases",
    "load_policies",
    "map_entries",
    "parse_policy",
    "policy_from_profile",
    "wire_name",
]

MODES = ("off", "audit", "enforce")
MODE_CODES = {"off": 0, "audit": 1, "enforce": 2}
POLICY_EGRESS, POLICY_EXEC = 1, 2
PORTS = 8
NAME_LEN = 128
PATH_LEN = 252
SCHEMA_PATH = Path(__file__).with_name("policy.schema.json")
LOOPBACK = ("127.0.0.0/8", "::1/128")


class PolicyError(ValueError):
    """A policy document is invalid; the message says where and why."""


@dataclass(frozen=True, slots=True)
class DomainRule:
    name: str            # lowercased, without "*."
    wildcard: bool       # proper subdomains of name
    ports: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class CidrRule:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    ports: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    agent: str
    mode: str
    egress: bool = False
    domains: tuple[DomainRule, ...] = ()
    cidrs: tuple[CidrRule, ...] = ()
    exec_: bool = False
    executables: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def wire_name(name: str) -> bytes:
    """A DNS name in wire form without the final zero byte, lowercased: the key the
    kernel builds from a question.

    >>> wire_name("API.openai.com.")
    b'\\x03api\\x06openai\\x03com'
    """
    out = b""
    for label in name.strip().rstrip(".").lower().split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise PolicyError(f"domain {name!r}: empty or over-long label")
        out += bytes([len(raw)]) + raw
    if len(out) > NAME_LEN - 1:
        raise PolicyError(f"domain {name!r}: longer than {NAME_LEN - 1} bytes in wire form")
    return out


def addr16(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | str) -> bytes:
    """The 16-byte form the kernel maps use: IPv4 as ``::ffff:a.b.c.d``.

    >>> addr16("10.0.0.1").hex()
    '00000000000000000000ffff0a000001'
    """
    ip = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if ip.version == 4:
        return b"\0" * 10 + b"\xff\xff" + ip.packed
    return ip.packed


def cidr_prefixlen(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    """LPM trie prefix length: 32 bits of policy slot, then the address bits (an IPv4
    network sits under ``::ffff:0:0/96``).

    >>> cidr_prefixlen(ipaddress.ip_network("10.0.0.0/8"))
    136
    """
    return 32 + (96 + net.prefixlen if net.version == 4 else net.prefixlen)


def _ports(raw: Any, where: str) -> tuple[int, ...]:
    ports = tuple(sorted(set(raw or ())))
    if len(ports) > PORTS:
        raise PolicyError(f"{where}: at most {PORTS} ports per entry")
    return ports


def parse_policy(doc: Any, *, source: str = "policy") -> Policy:
    """Validate one policy document (schema, then addresses and names)."""
    if isinstance(doc, Mapping) and doc.get("mode") is False:
        doc = {**doc, "mode": "off"}  # YAML 1.1 reads a bare `mode: off` as false
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top)"
        raise PolicyError(f"{source}: {where}: {first.message}")
    domains: list[DomainRule] = []
    cidrs: list[CidrRule] = []
    egress = doc.get("egress")
    for i, item in enumerate((egress or {}).get("domains") or []):
        entry = {"name": item} if isinstance(item, str) else item
        name = str(entry["name"]).lower().rstrip(".")
        wildcard = name.startswith("*.")
        name = name[2:] if wildcard else name
        wire_name(name)
        domains.append(DomainRule(name, wildcard, _ports(entry.get("ports"),
                                                         f"{source}: egress/domains/{i}")))
    for i, item in enumerate((egress or {}).get("cidrs") or []):
        entry = {"cidr": item} if isinstance(item, str) else item
        try:
            net = ipaddress.ip_network(str(entry["cidr"]), strict=False)
        except ValueError as exc:
            raise PolicyError(f"{source}: egress/cidrs/{i}: {exc}") from None
        cidrs.append(CidrRule(net, _ports(entry.get("ports"), f"{source}: egress/cidrs/{i}")))
    if egress is not None and egress.get("loopback", True):
        cidrs.extend(CidrRule(ipaddress.ip_network(n)) for n in LOOPBACK)
    exec_doc = doc.get("exec")
    exes = tuple(dict.fromkeys((exec_doc or {}).get("allowed") or ()))
    for exe in exes:
        if len(exe.encode()) >= PATH_LEN:
            raise PolicyError(f"{source}: exec path longer than {PATH_LEN - 1} bytes: {exe!r}")
    return Policy(agent=doc["agent"], mode=doc["mode"], egress=egress is not None,
                  domains=tuple(domains), cidrs=tuple(cidrs), exec_=exec_doc is not None,
                  executables=exes, notes=tuple(doc.get("notes") or ()))


def load_policies(paths: Iterable[str | Path]) -> list[Policy]:
    """Every policy in these YAML/JSON files (a file may hold several documents, or a
    list). Two policies for one agent are an error."""
    out: dict[str, Policy] = {}
    for path in paths:
        path = Path(path)
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"{path}: {exc}") from None
        flat = [d for doc in docs if doc is not None
                for d in (doc if isinstance(doc, list) else [doc])]
        for i, doc in enumerate(flat):
            policy = parse_policy(doc, source=f"{path}#{i}")
            if policy.agent in out:
                raise PolicyError(f"{path}#{i}: a second policy for {policy.agent}")
            out[policy.agent] = policy
    return list(out.values())


@dataclass
class MapEntries:
    """What the kernel maps hold for one policy slot (keys as bytes-like tuples)."""

    mode: int
    flags: int
    cidrs: list[tuple[int, bytes, tuple[int, ...]]]      # (prefixlen, addr16, ports)
    domains: list[tuple[bool, bytes, tuple[int, ...]]]   # (wildcard, wire name, ports)
    executables: list[bytes]


_BIN_DIRS = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/")
_LIB_DIRS = (("/lib/", "/usr/lib/"), ("/lib64/", "/usr/lib64/"))


def exe_aliases(path: str) -> list[str]:
    """The path and its merged-/usr spellings, which the kernel sees as exec'd (a profile
    names ``/usr/bin/sh`` for what ran as ``/bin/sh``; on merged-/usr images they are one
    file).

    >>> exe_aliases("/usr/bin/sh")
    ['/usr/bin/sh', '/bin/sh', '/sbin/sh', '/usr/sbin/sh']
    >>> exe_aliases("/app/run")
    ['/app/run']
    """
    out = [path]
    for prefix in _BIN_DIRS:
        if path.startswith(prefix):
            out += [d + path[len(prefix):] for d in _BIN_DIRS if d != prefix]
    for short, long in _LIB_DIRS:
        if path.startswith(short):
            out.append(long + path[len(short):])
        elif path.startswith(long):
            out.append(short + path[len(long):])
    return list(dict.fromkeys(p for p in out if len(p.encode()) < PATH_LEN))


def map_entries(policy: Policy) -> MapEntries:
    flags = (POLICY_EGRESS if policy.egress else 0) | (POLICY_EXEC if policy.exec_ else 0)
    return MapEntries(
        mode=MODE_CODES[policy.mode], flags=flags,
        cidrs=[(cidr_prefixlen(r.network), addr16(r.network.network_address), r.ports)
               for r in policy.cidrs],
        domains=[(r.wildcard, wire_name(r.name), r.ports) for r in policy.domains],
        executables=list(dict.fromkeys(a.encode() for exe in policy.executables
                                       for a in exe_aliases(exe))),
    )


def always_allowed(resolvers: Iterable[str], node_addresses: Iterable[str], *,
                   dns_port: int = 53) -> list[tuple[int, bytes, tuple[int, ...]]]:
    """Policy slot 0 of the CIDR map: each resolver on the DNS port, each node address
    on any port (the kubelet's probes, host-network services)."""
    out: list[tuple[int, bytes, tuple[int, ...]]] = []
    for ip in resolvers:
        a = ipaddress.ip_address(ip)
        out.append((32 + 128, addr16(a), (dns_port,)))
    for ip in node_addresses:
        a = ipaddress.ip_address(ip)
        out.append((32 + 128, addr16(a), ()))
    return out


def _dimension_values(summary: Mapping[str, Any], name: str) -> tuple[list[str], str | None]:
    dim = (summary.get("dimensions") or {}).get(name) or {}
    values = [str(v["value"]) for v in dim.get("top") or [] if "value" in v]
    distinct = dim.get("distinct")
    note = None
    if isinstance(distinct, int) and distinct > len(values):
        note = (f"{name}: the profile learned {distinct} values and its summary lists "
                f"{len(values)}: review the list before enforce")
    return values, note


def policy_from_profile(summary: Mapping[str, Any], *, mode: str = "audit") -> dict[str, Any]:
    """The policy document for an agent's profile record (``agentstory.profiles.v1``),
    in ``audit`` mode: what it would block is logged before anything is blocked.

    Egress comes from the record's learned policy facts (``policy.destinations``: exact
    names with their ports, unnamed addresses as /32 or /128) when the record has them,
    else from the ``net.domain`` (registrable domain and its subdomains), ``net.port``
    and ``net.ip_prefix`` dimensions. Executables come from ``process.exe``. Only what
    the baseline learned is used, never what was seen but flagged.
    """
    if mode not in MODES:
        raise PolicyError(f"mode {mode!r} is not one of {MODES}")
    agent = str(summary.get("agent") or "")
    notes: list[str] = [f"derived from the learned profile of {agent} "
                        f"(phase {summary.get('phase')}, {summary.get('events_learned', 0)} "
                        f"events learned, {summary.get('first_seen')} .. "
                        f"{summary.get('last_seen')})"]
    domains: dict[str, set[int]] = {}
    cidrs: dict[str, set[int]] = {}
    facts = summary.get("policy")
    if isinstance(facts, Mapping) and isinstance(facts.get("destinations"), list):
        for d in facts["destinations"]:
            port = d.get("port")
            ports = {int(port)} if isinstance(port, int) and port > 0 else set()
            if d.get("domain"):
                domains.setdefault(str(d["domain"]).lower(), set()).update(ports)
            else:
                for a in d.get("addrs") or []:
                    ip = ipaddress.ip_address(a)
                    cidrs.setdefault(f"{ip}/{ip.max_prefixlen}", set()).update(ports)
    else:
        ports = set()
        port_values, note = _dimension_values(summary, "net.port")
        for v in port_values:
            _proto, _, num = v.partition("/")
            if num.isdigit():
                ports.add(int(num))
        names, note2 = _dimension_values(summary, "net.domain")
        prefixes, note3 = _dimension_values(summary, "net.ip_prefix")
        notes += [n for n in (note, note2, note3) if n]
        port_set = ports if len(ports) <= PORTS else set()
        for name in names:
            domains.setdefault(name.lower(), set()).update(port_set)
            domains.setdefault(f"*.{name.lower()}", set()).update(port_set)
        for prefix in prefixes:
            try:
                net = ipaddress.ip_network(prefix, strict=False)
            except ValueError:
                continue
            cidrs.setdefault(str(net), set()).update(port_set)
    exes, note = _dimension_values(summary, "process.exe")
    if note:
        notes.append(note)
    doc: dict[str, Any] = {
        "apiVersion": "agentstory/v1", "kind": "EnforcePolicy", "agent": agent, "mode": mode,
        "egress": {
            "domains": [{"name": n, "ports": sorted(p)} if p else n
                        for n, p in sorted(domains.items()) if len(p) <= PORTS],
            "cidrs": [{"cidr": c, "ports": sorted(p)} if p else c
                      for c, p in sorted(cidrs.items()) if len(p) <= PORTS],
        },
        "exec": {"allowed": sorted(e for e in exes if e.startswith("/"))},
        "notes": notes,
    }
    parse_policy(doc, source=f"policy of {agent}")  # what we hand out validates
    return doc
