"""Sensitive-path marking for file events (pure). The list is data
(``sensitive_paths.yaml``), in the spirit of Falco's macros: operators override it
without touching code.

Each rule has a ``class`` (credential, token, ssh, cloud, kube, history, persistence,
environ, system) and an ``access``: ``any`` (reading it is already the fact: a token,
a key) or ``write`` (only a change matters: cron, ld.so.preload, shell rc files, which
every process or shell reads). Paths are matched once normalized
(:func:`collectors.kernel.paths.normalize`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CLASSES", "DEFAULT_RULES_FILE", "SensitiveMatch", "SensitivePaths"]

DEFAULT_RULES_FILE = Path(__file__).with_name("sensitive_paths.yaml")
CLASSES = frozenset({"credential", "token", "ssh", "cloud", "kube", "history",
                     "persistence", "environ", "system"})
_ACCESS = ("any", "write")


@dataclass(frozen=True, slots=True)
class SensitiveMatch:
    rule: str
    level: str
    category: str = "credential"  # "class" on the wire
    on_write_only: bool = False

    def to_data(self) -> dict[str, str]:
        """The ``data.sensitive`` object of an event."""
        return {"rule": self.rule, "level": self.level, "class": self.category}


_MEMO_MAX = 8192


class SensitivePaths:
    """Compiled rules: one regular expression per rule, first rule wins.

    >>> rules = SensitivePaths([{"id": "sa", "level": "high", "class": "token",
    ...     "patterns": ["/var/run/secrets/kubernetes.io/serviceaccount/*"]},
    ...     {"id": "cron", "class": "persistence", "access": "write",
    ...      "patterns": ["/etc/cron.d/*"]}])
    >>> rules.match("/var/run/secrets/kubernetes.io/serviceaccount/token").to_data()
    {'rule': 'sa', 'level': 'high', 'class': 'token'}
    >>> rules.match("/etc/cron.d/job") is None   # read: not a fact
    True
    >>> rules.match("/etc/cron.d/job", write=True).rule
    'cron'
    >>> rules.match("/etc/hosts") is None
    True
    """

    def __init__(self, rules: Iterable[Mapping[str, Any]]) -> None:
        self._rules: list[tuple[re.Pattern[str], SensitiveMatch]] = []
        for rule in rules:
            rid = rule.get("id")
            patterns = rule.get("patterns") or []
            if not isinstance(rid, str) or not rid:
                raise ValueError(f"sensitive path rule without an id: {rule!r}")
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise ValueError(f"rule {rid}: patterns must be a list of strings")
            category = str(rule.get("class", "credential"))
            if category not in CLASSES:
                raise ValueError(f"rule {rid}: class {category!r} not in {sorted(CLASSES)}")
            access = str(rule.get("access", "any"))
            if access not in _ACCESS:
                raise ValueError(f"rule {rid}: access must be one of {_ACCESS}")
            regex = "|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or r"(?!)"
            self._rules.append((re.compile(regex), SensitiveMatch(
                rid, str(rule.get("level", "medium")), category, access == "write")))
        # One alternation over all rules, a group per rule: one regex run per open
        # (this is on the per-event path), the first matching rule wins as before. Reads
        # use the alternation without the write-only rules.
        self._memo: dict[tuple[str, bool], SensitiveMatch | None] = {}
        self._all = self._alternation(lambda m: True)
        self._reads = self._alternation(lambda m: not m.on_write_only)

    def _alternation(self, keep: Any) -> re.Pattern[str]:
        return re.compile("|".join(
            f"(?P<r{i}>{regex.pattern})" for i, (regex, m) in enumerate(self._rules)
            if keep(m)) or r"(?!)")

    @classmethod
    def load(cls, path: str | Path = DEFAULT_RULES_FILE) -> SensitivePaths:
        with open(path) as fh:
            doc = yaml.safe_load(fh) or {}
        if not isinstance(doc, Mapping) or not isinstance(doc.get("rules"), list):
            raise ValueError(f"{path}: expected a mapping with a 'rules' list")
        return cls(doc["rules"])

    def match(self, path: str, *, write: bool = False) -> SensitiveMatch | None:
        """The first rule matching ``path`` (write-only rules only when ``write``)."""
        # Per event: a container opens the same files window after window, so verdicts
        # are memoised (bounded: dropped whole when full, no per-hit bookkeeping).
        key = (path, write)
        try:
            return self._memo[key]
        except KeyError:
            pass
        hit = (self._all if write else self._reads).match(path)
        found = (None if hit is None or hit.lastgroup is None
                 else self._rules[int(hit.lastgroup[1:])][1])
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        self._memo[key] = found
        return found

    def __len__(self) -> int:
        return len(self._rules)
