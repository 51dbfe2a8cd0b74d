"""cgroup id → cgroup path → (pod uid, container id).

In the kernel, ``bpf_get_current_cgroup_id()`` is the inode number of the process's
cgroup v2 folder. User space maps that id back to a path by walking the v2 hierarchy,
and the path names the pod and container in the shapes kubelet and the runtimes use:

- systemd driver: ``…/kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope``
  (``crio-<id>.scope``, ``docker-<id>.scope``)
- cgroupfs driver: ``…/kubepods/burstable/pod<uid>/<id>``

The parsing is pure; :class:`CgroupResolver` does the filesystem walk.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CgroupRef",
    "CgroupResolver",
    "find_cgroup2_mount",
    "parse_cgroup_path",
]

_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_POD = re.compile(rf"pod({_UID})(?:\.slice)?(?:/|$)")
_CONTAINER = re.compile(
    r"(?:(?:cri-containerd|crio|docker|cri-o|containerd)-)?([0-9a-f]{64})(?:\.scope)?$"
)


@dataclass(frozen=True, slots=True)
class CgroupRef:
    pod_uid: str
    container_id: str  # "" for the pod-level cgroup itself


def parse_cgroup_path(path: str) -> CgroupRef | None:
    """Pod uid and container id named by a kubelet-shaped cgroup path, else None.

    >>> parse_cgroup_path("/kubepods.slice/kubepods-besteffort.slice/"
    ...     "kubepods-besteffort-pod0b1c2d3e_4f50_6172_8394_a5b6c7d8e9f0.slice/"
    ...     "cri-containerd-" + "ab" * 32 + ".scope").pod_uid
    '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0'
    >>> parse_cgroup_path("/system.slice/sshd.service") is None
    True
    """
    match = _POD.search(path)
    if match is None:
        return None
    uid = match.group(1).replace("_", "-")
    rest = path[match.end() :].strip("/")
    container = ""
    if rest:
        leaf = rest.split("/", 1)[0]
        cmatch = _CONTAINER.match(leaf)
        if cmatch is not None:
            container = cmatch.group(1)
    return CgroupRef(uid, container)


def find_cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> Path:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup`` on most nodes,
    ``/sys/fs/cgroup/unified`` on hybrid hosts)."""
    with open(mountinfo) as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            if right.split(" ", 1)[0] == "cgroup2":
                return Path(left.split(" ")[4])
    raise FileNotFoundError("no cgroup2 hierarchy mounted (see /proc/self/mountinfo)")


class CgroupResolver:
    """Maps cgroup ids to paths relative to the v2 mount, with a bounded cache.

    A miss rescans the hierarchy, at most once per ``rescan_interval_s``, because new
    containers appear all the time and a stale miss must heal quickly.
    """

    def __init__(
        self, root: Path | None = None, *, max_entries: int = 65_536,
        rescan_interval_s: float = 0.2,
    ) -> None:
        self.root = root or find_cgroup2_mount()
        self.max_entries = max_entries
        self.rescan_interval_s = rescan_interval_s
        self._paths: OrderedDict[int, str] = OrderedDict()
        self._last_scan = 0.0
        self._lock = threading.Lock()
        self.evictions = 0
        self.scans = 0

    def scan(self, only_kubepods: bool = True) -> dict[int, str]:
        """Walk the hierarchy; returns {cgroup id: path} of what was found."""
        found: dict[int, str] = {}
        root = str(self.root)
        for dirpath, _dirs, _files in os.walk(root):
            rel = dirpath[len(root) :] or "/"
            if only_kubepods and "kubepods" not in rel:
                continue
            try:
                found[os.stat(dirpath).st_ino] = rel
            except FileNotFoundError:
                continue
        with self._lock:
            for cgid, rel in found.items():
                self._remember(cgid, rel)
            self._last_scan = time.monotonic()
            self.scans += 1
        return found

    def path_of(self, cgroup_id: int) -> str | None:
        with self._lock:
            path = self._paths.get(cgroup_id)
            if path is not None:
                self._paths.move_to_end(cgroup_id)
                return path
            stale = time.monotonic() - self._last_scan >= self.rescan_interval_s
        if not stale:
            return None
        return self.scan().get(cgroup_id)

    def remember(self, cgroup_id: int, path: str) -> None:
        """Record a path learnt elsewhere (the kernel collector's cgroup_mkdir events),
        so attribution of a new container needs no rescan of the hierarchy."""
        with self._lock:
            self._remember(cgroup_id, path)

    def _remember(self, cgroup_id: int, path: str) -> None:
        self._paths[cgroup_id] = path
        self._paths.move_to_end(cgroup_id)
        while len(self._paths) > self.max_entries:
            self._paths.popitem(last=False)
            self.evictions += 1
