"""Size caps that keep structure: values are cut, keys and shape are kept.

A tool call ``{"file_path": "/etc/passwd", "content": <5 KB>}`` must still say which
file it wrote after capping, and a request body cut at 1 MiB must still say which model
and which tools, so detection never reads a sorted-and-sliced JSON string.

- :func:`cap_tree` fits a JSON value into a character budget by shortening its longest
  strings first (water-filling) and, only when the bare skeleton is itself too large,
  the tails of long lists. Dict keys are never cut or dropped.
- :func:`complete_json` closes a JSON text cut anywhere (open strings, containers,
  a key waiting for its value), so the complete part of a cut body parses.

Examples
--------
>>> value, cut = cap_tree({"file_path": "/etc/hosts", "content": "x" * 5000}, 64)
>>> sorted(value), value["file_path"], cut
(['content', 'file_path'], '/etc/hosts', True)
>>> complete_json('{"model": "gpt-4o", "messages": [{"role": "user", "content": "hel')
'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hel"}]}'
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["cap_tree", "complete_json", "json_size", "key_paths"]


def json_size(value: Any) -> int:
    """Length of the compact JSON text of ``value``."""
    return len(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))


def _strings(value: Any, out: list[int]) -> None:
    """Lengths of every string *value* (not key) in the tree, depth first."""
    if isinstance(value, str):
        out.append(len(value))
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list | tuple):
        for v in value:
            _strings(v, out)


def _cut(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, dict):
        return {k: _cut(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_cut(v, limit) for v in value]
    return value


def _water_level(lengths: list[int], budget: int) -> int:
    """Largest per-string limit L with sum(min(n, L)) <= budget."""
    if sum(lengths) <= budget:
        return max(lengths, default=0)
    ordered = sorted(lengths)
    remaining, count = budget, len(ordered)
    for i, n in enumerate(ordered):
        share = remaining // (count - i)
        if n > share:
            return share
        remaining -= n
    return ordered[-1]


def key_paths(value: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every key of a tree as its path from the root (list positions written ``[]``)."""
    out: set[tuple[str, ...]] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            path = (*prefix, str(k))
            out.add(path)
            out |= key_paths(v, path)
    elif isinstance(value, list | tuple):
        for v in value:
            out |= key_paths(v, (*prefix, "[]"))
    return out


def _trim_lists(value: Any, keep: int, prefix: tuple[str, ...] = ()) -> Any:
    """The first ``keep`` items of every list, plus any later item that shows a key the
    kept ones do not (the last resort of cap_tree, which never drops a key)."""
    if isinstance(value, dict):
        return {k: _trim_lists(v, keep, (*prefix, str(k))) for k, v in value.items()}
    if not isinstance(value, list | tuple):
        return value
    path = (*prefix, "[]")
    kept: list[Any] = []
    seen: set[tuple[str, ...]] = set()
    for i, item in enumerate(value):
        paths = key_paths(item, path)
        if i < keep or not paths <= seen:
            kept.append(_trim_lists(item, keep, path))
            seen |= paths
    return kept


def cap_tree(value: Any, max_chars: int) -> tuple[Any, bool]:
    """Fit ``value`` into about ``max_chars`` of JSON; returns (value, cut).

    Strings (values only) are shortened longest first until the tree fits; keys, numbers,
    booleans and nesting stay. If the skeleton without any string content is still
    larger than ``max_chars``, list tails are dropped, except items that carry a key no
    kept item shows: keys win over the budget (:func:`key_paths` of the result equal
    those of the input).
    """
    if isinstance(value, str):
        return (value[:max_chars], True) if len(value) > max_chars else (value, False)
    size = json_size(value)
    if size <= max_chars:
        return value, False
    lengths: list[int] = []
    _strings(value, lengths)
    skeleton = size - sum(_escaped_extra(value)) - sum(lengths)
    if skeleton > max_chars:
        keep = 64
        while keep > 1 and json_size(_cut(_trim_lists(value, keep), 0)) > max_chars:
            keep //= 2
        value = _trim_lists(value, keep)
        lengths = []
        _strings(value, lengths)
        skeleton = json_size(_cut(value, 0))
    level = _water_level(lengths, max(max_chars - skeleton, 0))
    value = _cut(value, level)
    # Escapes make JSON longer than the characters counted: shrink until it fits.
    while level > 0 and json_size(value) > max_chars:
        level = level * 3 // 4
        value = _cut(value, level)
    return value, True


def _escaped_extra(value: Any) -> list[int]:
    """JSON escaping overhead of each string value (quotes and backslashes)."""
    out: list[int] = []
    if isinstance(value, str):
        out.append(json_size(value) - 2 - len(value))
    elif isinstance(value, dict):
        for v in value.values():
            out += _escaped_extra(v)
    elif isinstance(value, list | tuple):
        for v in value:
            out += _escaped_extra(v)
    return out


# -- completing a cut JSON text ---------------------------------------------------------

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[{}\[\],:]|[^\s{}\[\],:"]+')
_SCALAR = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null")


def complete_json(text: str) -> str:
    """Close a JSON text cut anywhere so that it parses; the complete part is unchanged.

    A string cut in the middle is closed (a half escape dropped), a key without its
    value gets ``null``, a dangling comma goes, open arrays and objects are closed. A
    key cut in its middle is dropped: it never finished arriving. Nothing complete
    gives ``null``.
    """
    stack: list[list[str]] = []  # [opener, expecting] ; expecting: key|colon|value|comma
    out_end = 0  # end of the text kept so far
    pending = ""  # text to add at out_end before the closers
    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        top = stack[-1] if stack else None
        if tok in "{[":
            stack.append([tok, "key" if tok == "{" else "value"])
            out_end, pending = m.end(), ""
            continue
        if tok in "}]":
            if stack:
                stack.pop()
            _after_value(stack)
            out_end, pending = m.end(), ""
            continue
        if tok == ":":
            if top is not None and top[1] == "colon":
                top[1] = "value"
                out_end, pending = m.end(), "null"
            continue
        if tok == ",":
            if top is not None:
                top[1] = "key" if top[0] == "{" else "value"
            # A comma is kept only once what follows it is complete.
            continue
        closed = tok.startswith('"') and len(tok) > 1 and tok.endswith('"') and not _odd_tail(tok)
        if tok.startswith('"') and not closed:  # cut inside a string: the text ends here
            if top is not None and top[1] == "key":
                break  # half a key: drop it
            # Capture gaps are filled with spaces; a half escape at the cut is dropped.
            body = _drop_half_escape(tok.rstrip())
            out_end, pending = m.start(), body + '"'
            _after_value(stack)
            break
        if not tok.startswith('"') and (
            not _SCALAR.fullmatch(tok) or (stack and m.end() == len(text))
        ):
            break  # a literal that is garbage, or may be cut (12 of 123): stop before it
        if top is not None and top[0] == "{" and top[1] == "key":
            top[1] = "colon"
            out_end, pending = m.end(), ":null"
            continue
        _after_value(stack)
        out_end, pending = m.end(), ""
    closers = "".join("}" if s[0] == "{" else "]" for s in reversed(stack))
    head = text[:out_end]
    if not pending:
        head = head.rstrip().rstrip(",")
    return (head + pending + closers) or "null"


_ESCAPE_TAIL = re.compile(r"(\\+)(u[0-9a-fA-F]{0,3})?$")


def _drop_half_escape(tok: str) -> str:
    """An open string's text without an escape cut in half (``\\`` or ``\\u12``)."""
    m = _ESCAPE_TAIL.search(tok)
    if m is None or len(m.group(1)) % 2 == 0:
        return tok
    return tok[: m.start()] + m.group(1)[:-1]


def _odd_tail(tok: str) -> bool:
    """A token ending in ``\\"`` is a string still open (the quote is escaped)."""
    run = len(tok) - 1 - len(tok[:-1].rstrip("\\"))
    return run % 2 == 1


def _after_value(stack: list[list[str]]) -> None:
    if stack:
        stack[-1][1] = "comma"
