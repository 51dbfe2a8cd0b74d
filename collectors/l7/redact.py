"""Privacy at the edge: credentials out, prompt and tool content kept/hashed/dropped.

Two guarantees, in this order: header values named in ``credentials.yaml`` are replaced
whole, and every string of an event is scrubbed of key-shaped substrings before the
event leaves the parser. Scrubbing runs before any cap or hash, so a key cut in half by
a cap cannot leak its prefix and a hash never fingerprints a secret.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from collectors.l7.caps import cap_tree
from collectors.l7.policy import ContentPolicy

__all__ = ["REDACTED", "CredentialRules", "Redactor", "load_rules"]

REDACTED = "[REDACTED]"
_RULES = Path(__file__).with_name("credentials.yaml")


@dataclass(frozen=True, slots=True)
class CredentialRules:
    """Compiled credential content: header names plus one alternation of patterns."""

    headers: frozenset[str]
    ids: tuple[str, ...]
    keeps: tuple[int, ...]
    regex: re.Pattern[str]
    prefilter: re.Pattern[str] | None = None


def _compile(
    headers: Iterable[str], patterns: list[dict[str, Any]], prefilter: str | None = None
) -> CredentialRules:
    parts: list[str] = []
    ids: list[str] = []
    keeps: list[int] = []
    for i, pat in enumerate(patterns):
        regex = str(pat["regex"])
        re.compile(regex)  # fail on the pattern that is wrong, not the alternation
        parts.append(f"(?P<p{i}>{regex})")
        ids.append(str(pat["id"]))
        keeps.append(int(pat.get("keep", 0)))
    return CredentialRules(
        headers=frozenset(h.lower() for h in headers),
        ids=tuple(ids),
        keeps=tuple(keeps),
        regex=re.compile("|".join(parts)),
        prefilter=re.compile(prefilter) if prefilter else None,
    )


@lru_cache(maxsize=4)
def load_rules(path: str | None = None) -> CredentialRules:
    """Load and compile credential rules (the packaged YAML unless a path is given)."""
    doc = yaml.safe_load(Path(path or _RULES).read_text())
    return _compile(doc.get("headers", []), doc.get("patterns", []), doc.get("prefilter"))


class Redactor:
    """Apply credential rules and a :class:`ContentPolicy`; counts what it removed.

    ``counts`` is shared with the parser's stats so removals are visible as metrics.
    """

    def __init__(
        self,
        policy: ContentPolicy | None = None,
        rules: CredentialRules | None = None,
        counts: dict[str, int] | None = None,
    ) -> None:
        self.policy = policy or ContentPolicy()
        self.rules = rules or load_rules()
        self.counts = counts if counts is not None else {}
        for name in ("redacted_headers", "redacted_secrets", "content_capped"):
            self.counts.setdefault(name, 0)
        self._group_index = {f"p{i}": i for i in range(len(self.rules.ids))}
        # Event strings repeat (conversation history, re-scrub of kept content): remember
        # recent results. Bounded; cleared whole when full.
        self._memo: dict[str, str] = {}

    def headers(self, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Header dict (later duplicates joined by ', ') with credential values removed."""
        out: dict[str, str] = {}
        for name, value in headers:
            if name in self.rules.headers:
                self.counts["redacted_headers"] += 1
                value = REDACTED
            else:
                value = self.scrub(value)
            out[name] = f"{out[name]}, {value}" if name in out else value
        return out

    def scrub(self, text: str) -> str:
        """Replace key-shaped substrings with ``[REDACTED:<id>]``."""
        if len(text) < 8:
            return text
        done = self._memo.get(text)
        if done is not None:
            return done
        pre = self.rules.prefilter
        out = (
            text
            if pre is not None and not pre.search(text)
            else self.rules.regex.sub(self._replace, text)
        )
        if len(text) <= 8192:  # memory stays bounded: at most 8192 entries of 8 KiB
            if len(self._memo) >= 8192:
                self._memo.clear()
            self._memo[text] = out
        return out

    def _replace(self, match: re.Match[str]) -> str:
        group = match.lastgroup or ""
        i = self._group_index.get(group)
        if i is None:  # a nested named group cannot occur: patterns use plain groups
            return REDACTED
        self.counts["redacted_secrets"] += 1
        keep = self.rules.keeps[i]
        # Inner plain groups are numbered after this pattern's named group.
        prefix = match.group(match.re.groupindex[group] + keep) if keep else ""
        return f"{prefix}[REDACTED:{self.rules.ids[i]}]"

    def scrub_tree(self, value: Any) -> Any:
        """Scrub every string (and dict key) of a JSON-like tree; returns a new tree."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {self.scrub(str(k)): self.scrub_tree(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub_tree(v) for v in value]
        return value

    def content(self, family: str, value: Any) -> Any:
        """Apply the policy of ``family`` (prompts, tool_arguments, tool_results).

        ``keep`` scrubs and caps (:meth:`content_cut`); ``hash`` gives the sha256 of the
        scrubbed JSON text; ``drop`` gives None.
        """
        return self.content_cut(family, value)[0]

    def content_cut(self, family: str, value: Any) -> tuple[Any, bool]:
        """:meth:`content` and whether the cap cut something.

        A string is cut to ``max_chars``; a JSON tree is capped structurally
        (:func:`caps.cap_tree`): its long strings are shortened, its keys all stay.
        """
        mode = getattr(self.policy, family)
        if value is None or mode == "drop":
            return None, False
        value = self.scrub_tree(value)
        if mode == "hash":
            text = value if isinstance(value, str) else _json_text(value)
            return "sha256:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest(), False
        value, cut = cap_tree(value, self.policy.max_chars)
        if cut:
            self.counts["content_capped"] += 1
        return value, cut


def _json_text(value: Any) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()
