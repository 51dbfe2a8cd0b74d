"""Absolute, normalized paths for file events (pure bookkeeping; /proc only through
injected callables).

A syscall names a file relative to the working directory or to a directory fd, and
through spellings that hide what it is (``//``, ``/./``, ``..``, ``/proc/self/root/…``,
``/proc/<pid>/cwd/…``, ``/proc/self/fd/<n>/…``). Sensitive-path rules and baselines
need one spelling. The kernel events carry what is needed to resolve most of them:
each process's ``chdir``/``fchdir`` and its successful opens with their fd (directory
opens are never folded by the de-duplication, so a dirfd is always known), plus the
parent pid of every event (a forked child starts in its parent's directory).
:class:`PathResolver` keeps that state per process; what it does not know it asks
``/proc`` for (``cwd_of``/``fd_path_of``), counted as ``proc_fallback``; what neither
knows stays relative, counted as ``unresolved``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["AT_FDCWD", "PathResolver", "normalize"]

AT_FDCWD = -100

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_PROC_ROOT = re.compile(r"^/proc/(?:self|thread-self|\d+)(?:/task/\d+)?/root(?=/|$)")
_PROC_REL = re.compile(r"^/proc/(self|thread-self|\d+)(?:/task/\d+)?/(cwd|fd/(\d+))(?=/|$)")


def normalize(path: str) -> str:
    """Collapse ``//``, ``/./`` and ``..`` of an absolute path and strip the
    ``/proc/<pid>/root`` prefix (the same file system from inside the pod).

    Lexical, as the kernel does not tell symlinks apart here: ``a/link/..`` is taken
    as ``a``.

    >>> normalize("//var/run/./secrets//kubernetes.io/serviceaccount/../serviceaccount/token")
    '/var/run/secrets/kubernetes.io/serviceaccount/token'
    >>> normalize("/proc/self/root/root/.aws/credentials")
    '/root/.aws/credentials'
    >>> normalize("/proc/1234/root")
    '/'
    >>> normalize("/../etc/shadow")
    '/etc/shadow'
    """
    if not path.startswith("/"):
        raise ValueError(f"not an absolute path: {path!r}")
    if ("//" not in path and "/." not in path and not path.startswith("/proc/")
            and (path == "/" or not path.endswith("/"))):
        return path  # already normal: the common case, on the per-event path
    for _ in range(8):  # /proc/self/root/proc/self/root/… nests
        stripped = _PROC_ROOT.sub("", _lexical(path), count=1)
        if stripped == path:
            break
        path = stripped or "/"
    return _lexical(path)


def _lexical(path: str) -> str:
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def _join(base: str, rel: str) -> str:
    return normalize(base.rstrip("/") + "/" + rel) if rel else normalize(base)


class _Lru(OrderedDict[K, V], Generic[K, V]):
    def __init__(self, max_entries: int) -> None:
        super().__init__()
        self.max_entries = max_entries

    def put(self, key: K, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.max_entries:
            self.popitem(last=False)


class PathResolver:
    """Per-process working directories and directory fds, from the kernel's events.

    >>> r = PathResolver(cwd_of=lambda pid: "", fd_path_of=lambda pid, fd: "")
    >>> r.chdir(10, 1, "/home/agent")
    >>> r.resolve(10, 1, AT_FDCWD, ".aws/credentials")
    '/home/agent/.aws/credentials'
    >>> r.opened(10, 7, "/var/run/secrets/kubernetes.io/serviceaccount")
    >>> r.resolve(10, 1, 7, "token")
    '/var/run/secrets/kubernetes.io/serviceaccount/token'
    >>> r.resolve(11, 10, AT_FDCWD, "notes.txt")   # a forked child: its parent's cwd
    '/home/agent/notes.txt'
    >>> r.resolve(12, 99, AT_FDCWD, "x") is None   # nothing known, /proc knows nothing
    True
    """

    def __init__(self, *, cwd_of: Callable[[int], str],
                 fd_path_of: Callable[[int, int], str], max_procs: int = 65_536,
                 max_fds: int = 65_536) -> None:
        self.cwd_of = cwd_of
        self.fd_path_of = fd_path_of
        self._cwd: _Lru[int, str] = _Lru(max_procs)
        self._fd_paths: dict[tuple[int, int], str] = {}
        self.max_fds = max_fds
        self.counts = {"from_events": 0, "inherited": 0, "proc_fallback": 0,
                       "unresolved": 0}

    # -- what the events say ------------------------------------------------------------
    def set_cwd(self, pid: int, cwd: str) -> None:
        if cwd.startswith("/"):
            self._cwd.put(pid, normalize(cwd))

    def chdir(self, pid: int, ppid: int, path: str, fd: int = AT_FDCWD) -> None:
        """A successful chdir(path) (or fchdir(fd) with an empty path)."""
        target = (self.resolve_fd(pid, fd) if not path
                  else self.resolve(pid, ppid, AT_FDCWD, path))
        if target is not None:
            self._cwd.put(pid, target)

    def opened(self, pid: int, fd: int, path: str) -> None:
        """A successful open of ``path`` (absolute) returned ``fd``. On every open: a
        plain dict, the oldest insertion dropped when full (not strict LRU)."""
        if fd >= 0:
            fds = self._fd_paths
            fds[(pid, fd)] = path
            if len(fds) > self.max_fds:
                del fds[next(iter(fds))]

    def exited(self, pid: int) -> None:
        """Forget the working directory (its fds age out of the bounded table)."""
        self._cwd.pop(pid, None)

    # -- resolution ---------------------------------------------------------------------
    def cwd(self, pid: int, ppid: int) -> str | None:
        known = self._cwd.get(pid)
        if known is not None:
            self.counts["from_events"] += 1
            return known
        parent = self._cwd.get(ppid) if ppid else None
        if parent is not None:
            self.counts["inherited"] += 1
            self._cwd.put(pid, parent)
            return parent
        found = self.cwd_of(pid)
        if found.startswith("/"):
            self.counts["proc_fallback"] += 1
            found = normalize(found)
            self._cwd.put(pid, found)
            return found
        return None

    def resolve_fd(self, pid: int, fd: int) -> str | None:
        known = self._fd_paths.get((pid, fd))
        if known is not None:
            self.counts["from_events"] += 1
            return known
        found = self.fd_path_of(pid, fd)
        if found.startswith("/"):
            self.counts["proc_fallback"] += 1
            return normalize(found)
        return None

    def resolve(self, pid: int, ppid: int, dfd: int, path: str) -> str | None:
        """The absolute normalized path, or None when the base is unknown (counted)."""
        if path.startswith("/"):
            out = normalize(path)
            proc = _PROC_REL.match(out) if out.startswith("/proc/") else None
            if proc is None:
                return out
            who = pid if proc.group(1) in ("self", "thread-self") else int(proc.group(1))
            rest = out[proc.end():].lstrip("/")
            if proc.group(3) is not None:
                base = self.resolve_fd(who, int(proc.group(3)))
            else:
                base = self.cwd(who, ppid if who == pid else 0)
            if base is None:
                return out  # the /proc spelling itself is absolute: keep it
            return _join(base, rest)
        base = self.cwd(pid, ppid) if dfd == AT_FDCWD else self.resolve_fd(pid, dfd)
        if base is None:
            self.counts["unresolved"] += 1
            return None
        return _join(base, path)
