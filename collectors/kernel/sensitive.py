"""Sensitive-path marking for file.open (pure). The list is data
(``sensitive_paths.yaml``), in the spirit of Falco's macros: operators override it
without touching code.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULT_RULES_FILE", "SensitiveMatch", "SensitivePaths"]

DEFAULT_RULES_FILE = Path(__file__).with_name("sensitive_paths.yaml")


@dataclass(frozen=True, slots=True)
class SensitiveMatch:
    rule: str
    level: str


_MEMO_MAX = 8192


class SensitivePaths:
    """Compiled rules: one regular expression per rule, first rule wins.

    >>> rules = SensitivePaths([{"id": "sa", "level": "high",
    ...     "patterns": ["/var/run/secrets/kubernetes.io/serviceaccount/*"]}])
    >>> rules.match("/var/run/secrets/kubernetes.io/serviceaccount/token")
    SensitiveMatch(rule='sa', level='high')
    >>> rules.match("/etc/hosts") is None
    True
    """

    def __init__(self, rules: Iterable[Mapping[str, Any]]) -> None:
        self._rules: list[tuple[re.Pattern[str], SensitiveMatch]] = []
        self._found: list[SensitiveMatch] = []
        for rule in rules:
            rid = rule.get("id")
            patterns = rule.get("patterns") or []
            if not isinstance(rid, str) or not rid:
                raise ValueError(f"sensitive path rule without an id: {rule!r}")
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise ValueError(f"rule {rid}: patterns must be a list of strings")
            regex = "|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or r"(?!)"
            self._rules.append(
                (re.compile(regex), SensitiveMatch(rid, str(rule.get("level", "medium")))))
        # One alternation over all rules, a group per rule: one regex run per open
        # (this is on the per-event path), the first matching rule wins as before.
        self._memo: dict[str, SensitiveMatch | None] = {}
        self._any = re.compile("|".join(
            f"(?P<r{i}>{regex.pattern})" for i, (regex, _m) in enumerate(self._rules))
            or r"(?!)")

    @classmethod
    def load(cls, path: str | Path = DEFAULT_RULES_FILE) -> SensitivePaths:
        with open(path) as fh:
            doc = yaml.safe_load(fh) or {}
        if not isinstance(doc, Mapping) or not isinstance(doc.get("rules"), list):
            raise ValueError(f"{path}: expected a mapping with a 'rules' list")
        return cls(doc["rules"])

    def match(self, path: str) -> SensitiveMatch | None:
        # Per event: a container opens the same files window after window, so verdicts
        # are memoised (bounded: dropped whole when full, no per-hit bookkeeping).
        try:
            return self._memo[path]
        except KeyError:
            pass
        hit = self._any.match(path)
        found = (None if hit is None or hit.lastgroup is None
                 else self._rules[int(hit.lastgroup[1:])][1])
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        self._memo[path] = found
        return found

    def __len__(self) -> int:
        return len(self._rules)
