"""``agentstory enforce``: per-agent enforcement on this node (root), off by default.

- ``run --policy FILE…``: load the programs, enforce every pod of every agent a policy
  names, publish enforce.* events to the raw kernel topic, reload the files when they
  change (live: only map values change), stop on SIGTERM/SIGINT or the kill switch;
- ``off``: the node's kill switch: set it and wait until no enforcer program is
  loaded; ``on`` clears it;
- ``status``: which pod cgroups have the enforcer's programs attached;
- ``check FILE…``: validate policies; ``policy AGENT``: the policy derived from the
  agent's learned profile (profiles topic), in audit mode, as YAML to review and edit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["add_subcommand"]

log = logging.getLogger("agentstory.enforce")


def add_subcommand(sub: Any, common: Any, node_args: Any) -> None:
    """Register ``agentstory enforce …`` (``common``/``node_args`` add the shared flags)."""
    from collectors.enforce.loader import DEFAULT_KILL_SWITCH

    enforce = sub.add_parser("enforce", help="per-agent enforcement in the kernel: audit, "
                                             "then enforce (root; off by default)")
    esub = enforce.add_subparsers(dest="enforce_command", required=True)

    p = esub.add_parser("run", help="enforce the policies' agents on this node")
    common(p)
    node_args(p)
    p.add_argument("--policy", action="append", required=True, metavar="FILE",
                   help="policy YAML/JSON (repeatable); reloaded when it changes")
    p.add_argument("--kill-switch", type=Path, default=DEFAULT_KILL_SWITCH, metavar="FILE",
                   help="while this file exists nothing is enforced (default %(default)s)")
    p.add_argument("--resolver", action="append", default=None, metavar="IP",
                   help="DNS resolver always allowed on the DNS port, and the only source "
                        "of learnt answers (default: nameservers of /etc/resolv.conf). On "
                        "Kubernetes: the cluster DNS Service IP (and a node-local cache's "
                        "address), which is what a DaemonSet with dnsPolicy "
                        "ClusterFirstWithHostNet finds in its resolv.conf")
    p.add_argument("--node-address", action="append", default=None, metavar="IP",
                   help="node address always allowed (default: this host's addresses)")
    p.add_argument("--dns-port", type=int, default=53)
    p.add_argument("--log-per-sec", type=int, default=20,
                   help="block/would-block records per policy and second; the rest are "
                        "counted (default 20)")
    p.add_argument("--cgroup-root", default=None)
    p.add_argument("--no-publish", action="store_true",
                   help="print the events as JSON lines instead of publishing them")
    p.set_defaults(func=_run)

    p = esub.add_parser("off", help="kill switch: remove every enforcer program on this node")
    p.add_argument("--kill-switch", type=Path, default=DEFAULT_KILL_SWITCH, metavar="FILE")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_off)

    p = esub.add_parser("on", help="clear the kill switch (a new 'enforce run' may start)")
    p.add_argument("--kill-switch", type=Path, default=DEFAULT_KILL_SWITCH, metavar="FILE")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_on)

    p = esub.add_parser("status", help="the enforcer's programs and the cgroups they guard")
    p.add_argument("--cgroup-root", default=None)
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_status)

    p = esub.add_parser("check", help="validate policy files")
    p.add_argument("files", nargs="+")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_check)

    p = esub.add_parser("policy", help="derive a policy (audit mode) from a learned profile")
    p.add_argument("agent", help="namespace/Kind/name")
    p.add_argument("--mode", choices=["audit", "enforce"], default="audit")
    p.add_argument("--json", action="store_true")
    common(p)
    p.set_defaults(func=_policy)


def _check(args: argparse.Namespace) -> int:
    from collectors.enforce.policy import PolicyError, load_policies

    try:
        policies = load_policies(args.files)
    except PolicyError as exc:
        print(f"agentstory enforce: {exc}", file=sys.stderr)
        return 2
    for p in policies:
        parts = [f"{p.agent}: {p.mode}"]
        parts.append(f"egress {len(p.domains)} domains, {len(p.cidrs)} networks"
                     if p.egress else "egress unrestricted")
        parts.append(f"{len(p.executables)} executables" if p.exec_ else "exec unrestricted")
        print(", ".join(parts))
    return 0


def _policy(args: argparse.Namespace) -> int:
    import orjson
    import yaml

    from collectors.enforce.policy import policy_from_profile
    from topologies.analyst import show_profile

    try:
        record = asyncio.run(show_profile(args.bootstrap_servers, args.agent,
                                          security=args.kafka_security))
    except LookupError as exc:
        print(f"agentstory: {exc}", file=sys.stderr)
        return 1
    doc = policy_from_profile(record, mode=args.mode)
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() if args.json
          else yaml.safe_dump(doc, sort_keys=False), end="" if not args.json else "\n")
    return 0


def _off(args: argparse.Namespace) -> int:
    from collectors.enforce.loader import kill_switch

    left = kill_switch(args.kill_switch, timeout_s=args.timeout)
    if left:
        print(f"kill switch set ({args.kill_switch}), but programs are still loaded after "
              f"{args.timeout:g} s: {left}; the enforcer process holds them: stop it "
              f"(its programs go with it)", file=sys.stderr)
        return 1
    print(f"kill switch set ({args.kill_switch}): no enforcer program is loaded")
    return 0


def _on(args: argparse.Namespace) -> int:
    args.kill_switch.unlink(missing_ok=True)
    print(f"kill switch cleared ({args.kill_switch})")
    return 0


def _status(args: argparse.Namespace) -> int:
    from collectors.cgroups import CgroupResolver
    from collectors.enforce import bpfsys
    from collectors.enforce.loader import PROG_PREFIX

    loaded = bpfsys.loaded_programs(PROG_PREFIX)
    print(f"{len(loaded)} enforcer programs loaded: "
          f"{', '.join(sorted(set(loaded.values()))) or 'none'}")
    root = Path(args.cgroup_root) if args.cgroup_root else None
    resolver = CgroupResolver(root)
    for _cgid, path in sorted(resolver.scan().items(), key=lambda kv: kv[1]):
        ids = bpfsys.prog_ids_attached(str(resolver.root) + path, bpfsys.ATTACH_TYPES["connect4"])
        ours = [i for i in ids if i in loaded]
        if ours:
            print(f"  guarded: {path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from collectors.cgroups import CgroupResolver
    from collectors.enforce.loader import Enforcer, EnforcerError
    from collectors.enforce.policy import PolicyError, load_policies
    from collectors.pods import Attributor, PodIndex, make_pod_source

    files = [Path(f) for f in args.policy]
    try:
        policies = load_policies(files)
    except PolicyError as exc:
        print(f"agentstory enforce: {exc}", file=sys.stderr)
        return 2
    index = PodIndex()
    source = make_pod_source(getattr(args, "pods_file", None), args.node)
    try:
        source.load(index)
    except Exception as exc:
        log.warning("initial pod list failed: %s", exc)
    threading.Thread(target=_watch_pods, args=(source, index), daemon=True).start()
    root = Path(args.cgroup_root) if args.cgroup_root else None
    publisher: Any = None
    if args.no_publish:
        def emit(e: Any) -> None:
            print(e.to_json().decode(), flush=True)
    else:
        from collectors.publish import FramePublisher

        publisher = FramePublisher(args.bootstrap_servers,
                                   security=getattr(args, "kafka_security", None))
        emit = publisher.submit
    enforcer = Enforcer(args.node, Attributor(index, CgroupResolver(root)), emit,
                        policies=policies, resolvers=args.resolver,
                        node_addresses=args.node_address, dns_port=args.dns_port,
                        log_per_sec=args.log_per_sec, kill_switch_path=args.kill_switch)
    try:
        enforcer.start()
    except EnforcerError as exc:
        print(f"agentstory enforce: {exc}", file=sys.stderr)
        source.stop()
        return 2
    log.info("enforcing on %s: %s", args.node,
             ", ".join(f"{p.agent} ({p.mode})" for p in policies))
    try:
        return asyncio.run(_main(enforcer, publisher, files))
    finally:
        enforcer.close()
        source.stop()


def _watch_pods(source: Any, index: Any) -> None:
    try:
        source.run(index)
    except Exception:
        log.exception("pod source stopped")


async def _main(enforcer: Any, publisher: Any, files: list[Path]) -> int:
    from collectors.enforce.policy import PolicyError, load_policies

    stop = threading.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if publisher is not None:
        await publisher.start()

    def poll() -> None:
        stamps = {f: _mtime(f) for f in files}
        next_check = time.monotonic() + 1.0
        while not stop.is_set() and enforcer.armed:
            try:
                enforcer.poll(100)
            except Exception:  # keep enforcing what is in place; say what failed
                log.exception("enforcer poll failed")
                time.sleep(0.5)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                now = {f: _mtime(f) for f in files}
                if now != stamps:
                    stamps = now
                    try:
                        enforcer.set_policies(load_policies(files))
                        log.info("policies reloaded")
                    except PolicyError as exc:  # keep what runs; say why the edit failed
                        log.error("policy change refused: %s", exc)
                    except Exception:
                        log.exception("policy change failed part-way; run 'agentstory "
                                      "enforce status' and fix the files")

    thread = threading.Thread(target=poll, name="enforce-poll", daemon=True)
    thread.start()
    while thread.is_alive() and not stop.is_set():
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.to_thread(thread.join, 5.0)
    if not enforcer.armed:
        log.warning("kill switch: every enforcer program removed; exiting")
    if publisher is not None:
        await publisher.stop()
    log.info("enforcer stopped: %s", enforcer.counters())
    return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
