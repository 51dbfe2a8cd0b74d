"""An agent's risk class — high, medium or low — with its reasons in words.

The class comes from what the agent *normally does* (its learned values), on four axes:
code execution (shells, interpreters with inline code, compilers), data sensitivity
(sensitive files, PII-looking tables or tools, secrets), external reach (distinct
external destinations) and privilege (service-account token use, cloud writes or IAM,
namespace changes). Code execution and privilege weigh 2, the others 1;
≥ 3 points is high, ≥ 1 medium. It sets the default response level and feeds severity.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from models.features import INTERPRETERS, SHELLS, exe_name

__all__ = ["RiskClass", "classify"]


@dataclass(frozen=True, slots=True)
class RiskClass:
    level: str  # "high" | "medium" | "low"
    reasons: tuple[str, ...]  # sentences, e.g. "runs shells (/usr/bin/sh: 212 times)"


COMPILERS = frozenset({"gcc", "cc", "clang", "g++", "c++", "go", "rustc", "cargo", "javac",
                       "tcc", "as", "ld", "make"})
_PII = re.compile(r"user|customer|account|payment|card|patient|person|employee|ssn|email|"
                  r"address|phone|salar|invoice|credential|password|secret", re.I)
_CLOUD_WRITE = re.compile(r":(Put|Create|Delete|Update|Attach|Detach|Modify|Run|Terminate|"
                          r"Add|Remove|Set|Start|Stop|Invoke|Publish|Send|Assume|Pass)")
_CLOUD_SECRETS = ("secretsmanager:GetSecretValue", "ssm:GetParameter", "kms:Decrypt")
_INTERNAL = (".svc", ".svc.cluster.local", ".cluster.local", ".internal", ".local")
EXTERNAL_REACH = 5  # distinct external destinations that count as broad reach


def _fmt(items: list[tuple[str, int]], k: int = 3) -> str:
    top = sorted(items, key=lambda kv: (-kv[1], kv[0]))[:k]
    more = f" and {len(items) - k} more" if len(items) > k else ""
    return ", ".join(f"{v}: {n} times" for v, n in top) + more


def classify(values: Mapping[str, Mapping[str, int]]) -> RiskClass:
    """``values``: dimension → learned value → count.

    >>> r = classify({"process.exe": {"/usr/bin/sh": 212, "/usr/bin/python3": 40}})
    >>> r.level, r.reasons[0]
    ('medium', 'code execution: runs shells (/usr/bin/sh: 212 times)')
    """
    points = 0
    reasons: list[str] = []

    def get(dim: str) -> Mapping[str, int]:
        return values.get(dim, {})

    exes = get("process.exe")
    shells = [(v, n) for v, n in exes.items() if exe_name(v) in SHELLS]
    inline = list(get("process.interpreter_inline").items())
    inline = [(v, n) for v, n in inline if v.endswith((" inline", " stdin"))]
    compilers = [(v, n) for v, n in exes.items() if exe_name(v) in COMPILERS]
    interpreters = [(v, n) for v, n in exes.items()
                    if exe_name(v) in INTERPRETERS and exe_name(v) not in SHELLS]
    code: list[str] = []
    if shells:
        code.append(f"runs shells ({_fmt(shells)})")
    if inline:
        code.append(f"runs interpreters with inline code ({_fmt(inline)})")
    if compilers:
        code.append(f"runs compilers ({_fmt(compilers)})")
    if code:
        points += 2
        reasons.append("code execution: " + "; ".join(code))
    elif interpreters and len(exes) > len(interpreters):
        reasons.append(f"spawns interpreters ({_fmt(interpreters)})")

    data: list[str] = []
    sensitive = [(v, n) for v, n in get("file.sensitive").items()
                 if not v.startswith(("token", "kube"))]
    if sensitive:
        data.append(f"reads sensitive files ({_fmt(sensitive)})")
    pii = [(v, n) for dim in ("l7.tool_arg_shape", "l7.tool_called", "l7.mcp_tool",
                              "cloud.resource")
           for v, n in get(dim).items() if _PII.search(v)]
    if pii:
        data.append(f"touches PII-looking tables or tools ({_fmt(pii)})")
    secrets = [(v, n) for v, n in get("cloud.action").items() if v.startswith(_CLOUD_SECRETS)]
    if secrets:
        data.append(f"reads secrets ({_fmt(secrets)})")
    if data:
        points += 1
        reasons.append("data sensitivity: " + "; ".join(data))

    external = [(v, n) for dim in ("net.domain", "net.ip_prefix") for v, n in get(dim).items()
                if not v.endswith(_INTERNAL) and not _private(v)]
    if len(external) >= EXTERNAL_REACH:
        points += 1
        reasons.append(f"external reach: {len(external)} distinct external destinations "
                       f"({_fmt(external)})")
    elif external:
        reasons.append(f"reaches {len(external)} external destination"
                       f"{'s' if len(external) > 1 else ''} ({_fmt(external)})")

    priv: list[str] = []
    tokens = [(v, n) for v, n in get("file.sensitive").items() if v.startswith(("token", "kube"))]
    if tokens:
        priv.append(f"uses the service-account token ({_fmt(tokens)})")
    writes = [(v, n) for v, n in get("cloud.action").items()
              if v.startswith("iam:") or _CLOUD_WRITE.search(v)]
    if writes:
        priv.append(f"cloud writes or IAM ({_fmt(writes)})")
    ns = list(get("process.namespace").items())
    if ns:
        priv.append(f"changes namespaces ({_fmt(ns)})")
    if priv:
        points += 2
        reasons.append("privilege: " + "; ".join(priv))

    level = "high" if points >= 3 else "medium" if points >= 1 else "low"
    if not reasons:
        reasons.append("no code execution, sensitive data, external reach or privilege seen")
    return RiskClass(level, tuple(reasons))


def _private(value: str) -> bool:
    return value.startswith(("10.", "192.168.", "127.", "169.254.", "fd", "fe80", "::1")) or (
        value.startswith("172.") and value.split(".")[1].isdigit()
        and 16 <= int(value.split(".")[1]) <= 31)
