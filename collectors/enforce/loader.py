"""The enforcer on a node: compile and load the programs once (bcc), attach the egress
and DNS programs to each enforced pod's cgroup through bpf links, keep the maps in step
with the policies and the pods, and turn ring-buffer records into envelopes.

Programs are attached as links held by this process: when it exits, whatever the
reason, the kernel detaches them (fail open). The kill switch (a file, default
``/run/agentstory/enforce.off``) makes a running enforcer remove every program at its
next poll; :func:`kill_switch` sets it and waits until no program is left.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import itertools
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.cgroups import CgroupResolver, parse_cgroup_path
from collectors.enforce import bpfsys
from collectors.enforce.decode import COUNTERS, decode
from collectors.enforce.envelopes import mode_envelope, record_envelope
from collectors.enforce.policy import (
    PORTS,
    Policy,
    always_allowed,
    map_entries,
)
from collectors.kernel.envelopes import monotonic_to_epoch_offset
from collectors.pods import Attributor, PodIndex
from streams.events import Envelope

__all__ = ["DEFAULT_KILL_SWITCH", "PROG_PREFIX", "Enforcer", "EnforcerError",
           "detect_node_addresses", "detect_resolvers", "kill_switch"]

log = logging.getLogger("agentstory.enforce")

HERE = Path(__file__).parent
HEADER = "enforce.bpf.h"
SOURCES = ("egress.bpf.c", "dnslearn.bpf.c", "exec.bpf.c")
PROG_PREFIX = "enf_"
DEFAULT_KILL_SWITCH = Path("/run/agentstory/enforce.off")
# (function, attach type name, bcc program type attribute)
CGROUP_PROGRAMS = (
    ("enf_connect4", "connect4", "CGROUP_SOCK_ADDR"),
    ("enf_connect6", "connect6", "CGROUP_SOCK_ADDR"),
    ("enf_sendmsg4", "sendmsg4", "CGROUP_SOCK_ADDR"),
    ("enf_sendmsg6", "sendmsg6", "CGROUP_SOCK_ADDR"),
    ("enf_dns_ingress", "ingress", "CGROUP_SKB"),
)
MAX_POLICIES = 256


class EnforcerError(RuntimeError):
    """The enforcer cannot run here (or the kill switch is set)."""


def assemble_source(directory: Path = HERE) -> str:
    include = f'#include "{HEADER}"'
    parts = [(directory / HEADER).read_text()]
    for name in SOURCES:
        text = (directory / name).read_text().replace(include, f"/* {HEADER} inlined */")
        parts.append(f"/* ---- {name} ---- */\n{text}")
    return "\n".join(parts)


def detect_resolvers(path: str = "/etc/resolv.conf") -> list[str]:
    out = []
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    out.append(str(ipaddress.ip_address(parts[1].split("%")[0])))
    return out


def detect_node_addresses() -> list[str]:
    """The node's own non-loopback addresses (IPv4 from /proc/net/fib_trie's LOCAL
    entries, IPv6 from /proc/net/if_inet6)."""
    found: set[str] = set()
    with contextlib.suppress(OSError):
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
        for prev, line in itertools.pairwise(lines):
            if "/32 host LOCAL" in line:
                ip = prev.strip().split()[-1]
                with contextlib.suppress(ValueError):
                    if not ipaddress.ip_address(ip).is_loopback:
                        found.add(ip)
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            ip6 = ipaddress.IPv6Address(bytes.fromhex(raw))
            if not ip6.is_loopback:
                found.add(str(ip6))
    return sorted(found)


@dataclass
class _Slot:
    policy: Policy
    slot: int
    since_ns: int
    keys: dict[str, set[Any]] = field(default_factory=dict)


@dataclass
class _PodAttach:
    uid: str
    agent: str
    cgroup_id: int
    path: str
    links: list[int]


def _digest(policy: Policy) -> str:
    return hashlib.sha256(repr(policy).encode()).hexdigest()[:16]


class Enforcer:
    """Per-node enforcement. ``emit`` receives envelopes (the publisher's submit)."""

    def __init__(self, node: str, attributor: Attributor, emit: Callable[[Envelope], None],
                 *, policies: Iterable[Policy] = (), resolvers: Iterable[str] | None = None,
                 node_addresses: Iterable[str] | None = None, dns_port: int = 53,
                 log_per_sec: int = 20, ringbuf_pages: int = 64,
                 kill_switch_path: Path | None = DEFAULT_KILL_SWITCH,
                 rescan_s: float = 1.0) -> None:
        self.node = node
        self.attributor = attributor
        self.index: PodIndex = attributor.index
        self.resolver: CgroupResolver = attributor.resolver
        self.emit = emit
        self.resolvers = list(detect_resolvers() if resolvers is None else resolvers)
        self.node_addresses = list(detect_node_addresses() if node_addresses is None
                                   else node_addresses)
        self.dns_port = dns_port
        self.log_per_sec = log_per_sec
        self.ringbuf_pages = ringbuf_pages
        self.kill_switch_path = kill_switch_path
        self.rescan_s = rescan_s
        self._pending = list(policies)
        self._bpf: Any = None
        self._fns: dict[str, Any] = {}
        self._slots: dict[str, _Slot] = {}
        self._pods: dict[str, _PodAttach] = {}
        self._offset_ns = 0
        self._next_scan = 0.0
        self._pods_dirty = True
        self.armed = False
        self.user_stats = {"records": 0, "undecodable": 0, "attach_failed": 0}

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        if self.kill_switch_path is not None and self.kill_switch_path.exists():
            raise EnforcerError(f"the kill switch {self.kill_switch_path} is set: remove it "
                                f"to enforce on this node")
        if os.geteuid() != 0:
            raise EnforcerError("loading BPF programs needs root")
        from bcc import BPF

        cflags = [f"-DDNS_PORT={self.dns_port}", f"-DLOG_PER_SEC={self.log_per_sec}",
                  f"-DRINGBUF_PAGES={self.ringbuf_pages}", f"-DMAX_POLICIES={MAX_POLICIES}"]
        try:
            self._bpf = BPF(text=assemble_source().encode(), cflags=cflags)
            for name, _attach, ptype in CGROUP_PROGRAMS:
                attach = bpfsys.ATTACH_TYPES[_attach]
                self._fns[name] = self._bpf.load_func(name.encode(), getattr(BPF, ptype),
                                                      attach_type=attach)
            self._bpf.attach_tracepoint(tp=b"sched:sched_process_exec", fn_name=b"enf_exec")
        except Exception as exc:
            self._cleanup_bpf()
            raise EnforcerError(f"BPF compile/load failed: {exc}") from exc
        self._offset_ns = monotonic_to_epoch_offset()
        self._bpf[b"enf_events"].open_ring_buffer(self._on_record)
        self._write_always_allowed()
        self.armed = True
        self.index.on_change(lambda _change, _pod: self._mark_dirty())
        self.set_policies(self._pending)

    def _mark_dirty(self) -> None:
        self._pods_dirty = True

    def _cleanup_bpf(self) -> None:
        if self._bpf is not None:
            with contextlib.suppress(Exception):
                self._bpf.cleanup()
        self._bpf = None
        self._fns.clear()

    def disarm(self) -> None:
        """Remove every program: close the pods' links, detach the exec tracepoint,
        unload. Idempotent."""
        for pod in list(self._pods.values()):
            self._detach(pod)
        self._pods.clear()
        self._cleanup_bpf()
        if self.armed:
            log.warning("enforcement disarmed on %s: every program removed", self.node)
        self.armed = False

    close = disarm

    # -- maps -----------------------------------------------------------------------
    def _write_always_allowed(self) -> None:
        cidr = self._bpf[b"allow_cidr"]
        for prefixlen, addr, ports in always_allowed(self.resolvers, self.node_addresses,
                                                         dns_port=self.dns_port):
            cidr[self._cidr_key(0, prefixlen, addr)] = self._allow(cidr.Leaf, ports)
        res = self._bpf[b"resolvers"]
        for ip in self.resolvers:
            from collectors.enforce.policy import addr16

            key = res.Key()
            key.policy = 0
            key.addr[:] = list(addr16(ip))
            res[key] = res.Leaf(1)

    def _cidr_key(self, slot: int, prefixlen: int, addr: bytes) -> Any:
        key = self._bpf[b"allow_cidr"].Key()
        key.prefixlen = prefixlen
        key.policy = slot
        key.addr[:] = list(addr)
        return key

    @staticmethod
    def _allow(leaf_type: Any, ports: tuple[int, ...]) -> Any:
        leaf = leaf_type()
        padded = list(ports)[:PORTS] + [0] * (PORTS - len(ports))
        leaf.ports[:] = padded
        return leaf

    def set_policies(self, policies: Iterable[Policy]) -> None:
        """Apply these policies (all of them: an agent left out stops being enforced).
        Live: only map entries change; programs stay loaded."""
        wanted = {p.agent: p for p in policies}
        if self._bpf is None:
            self._pending = list(wanted.values())
            return
        for agent in [a for a in self._slots if a not in wanted]:
            slot = self._slots.pop(agent)
            self._write_slot(slot, None)
            self._announce(slot.policy.agent, "off", time.time_ns())
        used = {s.slot for s in self._slots.values()}
        for agent, policy in wanted.items():
            slot = self._slots.get(agent)
            if slot is not None and slot.policy == policy:
                continue
            now = time.time_ns()
            if slot is None:
                free = next((i for i in range(1, MAX_POLICIES) if i not in used), None)
                if free is None:
                    log.error("more than %d policies: %s not enforced", MAX_POLICIES - 1, agent)
                    continue
                used.add(free)
                slot = self._slots[agent] = _Slot(policy, free, now)
                rates = self._bpf[b"rates"]  # a new policy does not inherit a log budget
                rates[rates.Key(free)] = rates.Leaf()
            elif slot.policy.mode != policy.mode:
                slot.since_ns = now
            old = slot.policy
            slot.policy = policy
            self._write_slot(slot, policy, domains_changed=old.domains != policy.domains)
            self._announce(agent, policy.mode, slot.since_ns)
        self._pods_dirty = True
        self.sync_pods()

    def _announce(self, agent: str, mode: str, since_ns: int) -> None:
        slot = self._slots.get(agent)
        pods = sum(1 for p in self._pods.values() if p.agent == agent)
        digest = _digest(slot.policy) if slot else ""
        self.emit(mode_envelope(agent, mode, since_ns, node=self.node, pods=pods,
                                policy_digest=digest))

    def _write_slot(self, slot: _Slot, policy: Policy | None, *,
                    domains_changed: bool = True) -> None:
        b = self._bpf
        cfg = b[b"policies"]
        leaf = cfg.Leaf()
        if policy is None:  # the mode goes first on the way out
            cfg[cfg.Key(slot.slot)] = leaf
        new: dict[str, set[Any]] = {"cidr": set(), "domain": set(), "exe": set()}
        if policy is not None:
            entries = map_entries(policy)
            leaf.mode, leaf.flags = entries.mode, entries.flags
            cidr, dom, exe = b[b"allow_cidr"], b[b"allow_domain"], b[b"allow_exe"]
            for prefixlen, addr, ports in entries.cidrs:
                cidr[self._cidr_key(slot.slot, prefixlen, addr)] = self._allow(cidr.Leaf, ports)
                new["cidr"].add((prefixlen, addr))
            for wildcard, name, ports in entries.domains:
                key = dom.Key()
                key.policy, key.wildcard = slot.slot, int(wildcard)
                key.name[: len(name)] = list(name)
                dom[key] = self._allow(dom.Leaf, ports)
                new["domain"].add((wildcard, name))
            for path in entries.executables:
                key = exe.Key()
                key.policy, key.path = slot.slot, path
                exe[key] = exe.Leaf(1)
                new["exe"].add(path)
        # the mode goes last on the way in and first on the way out
        self._delete_stale(slot, new)
        if domains_changed:
            self._forget_learned(slot.slot)
        cfg[cfg.Key(slot.slot)] = leaf
        slot.keys = new

    def _delete_stale(self, slot: _Slot, new: dict[str, set[Any]]) -> None:
        b = self._bpf
        for prefixlen, addr in slot.keys.get("cidr", set()) - new["cidr"]:
            with contextlib.suppress(KeyError):
                del b[b"allow_cidr"][self._cidr_key(slot.slot, prefixlen, addr)]
        dom = b[b"allow_domain"]
        for wildcard, name in slot.keys.get("domain", set()) - new["domain"]:
            key = dom.Key()
            key.policy, key.wildcard = slot.slot, int(wildcard)
            key.name[: len(name)] = list(name)
            with contextlib.suppress(KeyError):
                del dom[key]
        exe = b[b"allow_exe"]
        for path in slot.keys.get("exe", set()) - new["exe"]:
            key = exe.Key()
            key.policy, key.path = slot.slot, path
            with contextlib.suppress(KeyError):
                del exe[key]

    def _forget_learned(self, slot: int) -> None:
        learned = self._bpf[b"allow_learned"]
        for key in [k for k in learned if k.policy == slot]:
            with contextlib.suppress(KeyError):
                del learned[key]

    def learned(self, agent: str) -> list[str]:
        """Addresses learnt from DNS answers for an agent's policy (status, tests)."""
        slot = self._slots.get(agent)
        if slot is None or self._bpf is None:
            return []
        from collectors.enforce.decode import _address

        return sorted(_address(0, bytes(k.addr)) for k in self._bpf[b"allow_learned"]
                      if k.policy == slot.slot)

    # -- pods -----------------------------------------------------------------------
    def _pod_cgroups(self) -> dict[str, tuple[int, str]]:
        """{pod uid: (cgroup id, path)} of the pod-level cgroups on this node."""
        out: dict[str, tuple[int, str]] = {}
        for cgid, path in self.resolver.scan().items():
            ref = parse_cgroup_path(path)
            if ref is not None and not ref.container_id and "pod" in path.rsplit("/", 1)[-1]:
                out[ref.pod_uid] = (cgid, path)
        return out

    def sync_pods(self, *, force: bool = False) -> None:
        """Attach to the cgroups of the policies' pods, detach from pods gone or no
        longer named by a policy."""
        if self._bpf is None:
            return
        now = time.monotonic()
        if not (force or self._pods_dirty or now >= self._next_scan):
            return
        self._next_scan = now + self.rescan_s
        self._pods_dirty = False
        cgroups = self._pod_cgroups()
        wanted: dict[str, tuple[str, int, str]] = {}
        for uid, (cgid, path) in cgroups.items():
            info = self.index.get(uid)
            if info is not None and info.agent in self._slots:
                wanted[uid] = (info.agent, cgid, path)
        for uid in [u for u in self._pods if u not in wanted
                    or wanted[u][1] != self._pods[u].cgroup_id]:
            self._detach(self._pods.pop(uid))
        enforced = self._bpf[b"enforced"]
        changed = False
        for uid, (agent, cgid, path) in wanted.items():
            slot = self._slots[agent].slot
            current = enforced.get(enforced.Key(cgid))
            if current is None or current.policy != slot:  # new, or the agent's slot moved
                leaf = enforced.Leaf()
                leaf.policy = slot
                enforced[enforced.Key(cgid)] = leaf
                changed = True
            if uid in self._pods:
                self._pods[uid].agent = agent
                continue
            links = self._attach(str(self.resolver.root) + path)
            if links is None:
                with contextlib.suppress(KeyError):
                    del enforced[enforced.Key(cgid)]
                continue
            self._pods[uid] = _PodAttach(uid, agent, cgid, path, links)
            log.info("enforcing %s (pod %s) in %s mode", agent, uid,
                     self._slots[agent].policy.mode)
        if changed:
            self._bump_gen()

    def _attach(self, folder: str) -> list[int] | None:
        links: list[int] = []
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            log.warning("cannot open pod cgroup %s: %s", folder, exc)
            self.user_stats["attach_failed"] += 1
            return None
        try:
            for name, attach, _ptype in CGROUP_PROGRAMS:
                links.append(bpfsys.link_create(self._fns[name].fd, fd,
                                                bpfsys.ATTACH_TYPES[attach]))
        except OSError as exc:
            log.warning("attach to %s failed: %s", folder, exc)
            self.user_stats["attach_failed"] += 1
            for link in links:
                os.close(link)
            return None
        finally:
            os.close(fd)
        return links

    def _detach(self, pod: _PodAttach) -> None:
        for link in pod.links:
            with contextlib.suppress(OSError):
                os.close(link)
        pod.links = []
        if self._bpf is not None:
            with contextlib.suppress(KeyError):
                del self._bpf[b"enforced"][self._bpf[b"enforced"].Key(pod.cgroup_id)]
            self._bump_gen()

    def _bump_gen(self) -> None:
        """After every change of `enforced`: the kernel's cached cgroup verdicts are void."""
        if self._bpf is not None:
            gen = self._bpf[b"gen"]
            gen[gen.Key(0)] = gen.Leaf(gen[gen.Key(0)].value + 1)

    @property
    def enforced_pods(self) -> dict[str, str]:
        """{pod uid: agent} of the pods with programs attached."""
        return {uid: p.agent for uid, p in self._pods.items()}

    # -- events ---------------------------------------------------------------------
    def _on_record(self, _ctx: Any, data: Any, size: int) -> None:
        import ctypes

        self.user_stats["records"] += 1
        try:
            rec = decode(ctypes.string_at(data, size))
        except ValueError as exc:
            self.user_stats["undecodable"] += 1
            log.debug("undecodable enforcer record: %s", exc)
            return
        agent = next((a for a, s in self._slots.items() if s.slot == rec.policy), "")
        pod = self.attributor.pod_for_cgroup(rec.cgroup_id)
        self.emit(record_envelope(rec, node=self.node, pod=pod, agent=agent,
                                  offset_ns=self._offset_ns))

    def poll(self, timeout_ms: int = 100) -> int:
        """Drain records, keep pods in step, honour the kill switch; returns the number
        of records read."""
        if self.kill_switch_path is not None and self.kill_switch_path.exists():
            if self.armed:
                self.disarm()
            return 0
        if self._bpf is None:
            time.sleep(timeout_ms / 1000)
            return 0
        before = self.user_stats["records"]
        self._bpf.ring_buffer_poll(timeout_ms)
        self.sync_pods()
        return self.user_stats["records"] - before

    def counters(self) -> dict[str, int]:
        if self._bpf is None:
            return {}
        table = self._bpf[b"enf_counters"]
        return {name: int(sum(table[table.Key(i)])) for i, name in enumerate(COUNTERS)}


def kill_switch(path: Path = DEFAULT_KILL_SWITCH, *, timeout_s: float = 5.0) -> dict[int, str]:
    """Set the node's kill switch and wait until no enforcer program is loaded; returns
    what is still loaded after the timeout (empty: all gone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"set at {time.time_ns()} by pid {os.getpid()}\n")
    deadline = time.monotonic() + timeout_s
    while True:
        left = bpfsys.loaded_programs(PROG_PREFIX)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def random_token() -> str:  # pragma: no cover - used by tests for unique paths
    return secrets.token_hex(4)
