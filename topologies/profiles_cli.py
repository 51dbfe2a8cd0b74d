"""``agentstory profiles bom AGENT`` and ``agentstory profiles export AGENT --format F``.

Both read the agent's latest record from ``agentstory.profiles.v1`` (or ``--record FILE``,
a record saved with ``profiles show AGENT --json``) and write one document: the CycloneDX
1.6 AI-BOM (JSON), or a policy in the format :data:`models.exports.FORMATS` names
(Kubernetes resources as YAML, the kubelet seccomp file as JSON). A policy of an agent
that is not enforce-ready is refused (exit 3) unless ``--force``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

__all__ = ["configure", "render", "run"]

_JSON_FORMATS = frozenset({"seccomp-json"})
REFUSED = 3


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments ``bom`` and ``export`` add to ``agentstory profiles``."""
    from models.exports import FORMATS

    parser.add_argument("--format", choices=sorted(FORMATS), default=None,
                        help="export: seccomp (Security Profiles Operator SeccompProfile), "
                             "seccomp-json (kubelet Localhost file), networkpolicy, cilium")
    parser.add_argument("--force", action="store_true",
                        help="export: even when the agent is not enforce-ready")
    parser.add_argument("--selector", action="append", default=[], metavar="KEY=VALUE",
                        help="export: pod labels the policy selects (repeatable; default "
                             "app=<workload name>)")
    parser.add_argument("--audit", action="store_true",
                        help="export seccomp: SCMP_ACT_LOG as the default action (logs, "
                             "refuses nothing)")
    parser.add_argument("--record", metavar="FILE",
                        help="read the profile record from FILE (profiles show --json) "
                             "instead of the profiles topic")
    parser.add_argument("--out", metavar="FILE", help="write the document here, not stdout")


def _selector(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--selector {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def render(record: dict[str, Any], action: str, fmt: str | None, *, force: bool = False,
           selector: dict[str, str] | None = None, audit: bool = False) -> str:
    """The text of one document (raises NotEnforceReady, ValueError, KeyError)."""
    from models.exports import ExportOptions, export
    from models.exports.bom import bom_json

    if action == "bom":
        return bom_json(record) + "\n"
    if fmt is None:
        raise ValueError("export needs --format")
    options = ExportOptions(force=force, selector=selector or {},
                            seccomp_default="SCMP_ACT_LOG" if audit else "SCMP_ACT_ERRNO")
    doc = export(record, fmt, options)
    if fmt in _JSON_FORMATS:
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"
    return str(yaml.safe_dump(doc, sort_keys=False, width=100))


def _load(args: argparse.Namespace) -> dict[str, Any]:
    if args.record:
        doc: dict[str, Any] = orjson.loads(Path(args.record).read_bytes())
        if doc.get("agent") != args.agent:
            raise LookupError(f"{args.record} holds {doc.get('agent')}, not {args.agent}")
        return doc
    from topologies.analyst import show_profile

    return asyncio.run(show_profile(args.bootstrap_servers, args.agent,
                                    security=args.kafka_security))


def run(args: argparse.Namespace) -> int:
    from models.exports import NotEnforceReady

    try:
        record = _load(args)
        text = render(record, args.action, args.format, force=args.force,
                      selector=_selector(args.selector), audit=args.audit)
    except NotEnforceReady as exc:
        print(f"agentstory: refused: {exc}", file=sys.stderr)
        return REFUSED
    except (LookupError, ValueError, OSError) as exc:
        print(f"agentstory: {exc}", file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
