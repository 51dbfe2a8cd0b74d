"""Kubelet-shaped cgroups on this machine, standing in for pods (tests, bench, demo).

A :class:`FakePod` makes ``kubepods.slice/kubepods-besteffort.slice/
kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope`` under the cgroup v2 mount
(or the CRI-O / Docker scope names, or the cgroupfs driver's ``kubepods/<qos>/pod<uid>/<id>``),
writes the matching Pod manifest for a :class:`~collectors.pods.FilePodSource`, and runs
commands inside it (``sh -c 'echo $$ > cgroup.procs; exec …'``, so even the first exec
happens in the pod). :meth:`FakePod.remove` moves any remaining process back to the
root cgroup and removes the folders, also after a failure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collectors.cgroups import find_cgroup2_mount

__all__ = ["FakePod", "pod_manifest"]


def pod_manifest(uid: str, name: str, namespace: str, container_id: str, *,
                 node: str = "node-a", container: str = "main",
                 service_account: str = "default", scheme: str = "containerd",
                 owner: tuple[str, str] | None = None,
                 labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Pod manifest with the fields attribution reads (metadata, spec.nodeName,
    status.containerStatuses[].containerID)."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid}
    if labels:
        meta["labels"] = dict(labels)
    if owner is not None:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"nodeName": node, "serviceAccountName": service_account,
                 "containers": [{"name": container, "image": "busybox"}]},
        "status": {"containerStatuses": [
            {"name": container, "containerID": f"{scheme}://{container_id}"}]},
    }


class FakePod:
    """One pod with one container, as cgroup folders; remove() cleans up."""

    # runtime → (scope name prefix, runtime:// scheme of status.containerStatuses)
    RUNTIMES = {
        "containerd": ("cri-containerd-", "containerd"),
        "crio": ("crio-", "cri-o"),
        "docker": ("docker-", "docker"),
    }

    def __init__(self, name: str = "agent", namespace: str = "agents", *,
                 root: Path | None = None, qos: str = "besteffort",
                 uid: str | None = None, container_id: str | None = None,
                 runtime: str = "containerd", driver: str = "systemd") -> None:
        """``driver`` is kubelet's cgroup driver: ``systemd`` (…/kubepods-<qos>-pod<uid>
        .slice/<runtime>-<id>.scope) or ``cgroupfs`` (…/kubepods/<qos>/pod<uid>/<id>)."""
        self.name = name
        self.namespace = namespace
        self.uid = uid or str(uuid.uuid4())
        self.container_id = container_id or secrets.token_hex(32)
        self.root = root or find_cgroup2_mount()
        self.runtime = runtime
        prefix, self.scheme = self.RUNTIMES[runtime]
        if driver == "systemd":
            slice_ = f"kubepods-{qos}-pod{self.uid.replace('-', '_')}.slice"
            top = self.root / "kubepods.slice"
            self._levels = [top, top / f"kubepods-{qos}.slice",
                            top / f"kubepods-{qos}.slice" / slice_]
            self.path = self._levels[-1] / f"{prefix}{self.container_id}.scope"
        elif driver == "cgroupfs":
            top = self.root / "kubepods"
            self._levels = [top, top / qos, top / qos / f"pod{self.uid}"]
            self.path = self._levels[-1] / self.container_id
        else:
            raise ValueError(f"unknown cgroup driver {driver!r}")
        self._created: list[Path] = []

    def manifest(self, **kwargs: Any) -> dict[str, Any]:
        return pod_manifest(self.uid, self.name, self.namespace, self.container_id,
                            scheme=self.scheme, **kwargs)

    def create(self) -> FakePod:
        for folder in [*self._levels, self.path]:
            if not folder.exists():
                folder.mkdir()
                self._created.append(folder)
        return self

    @property
    def cgroup_id(self) -> int:
        return os.stat(self.path).st_ino

    def command(self, argv: Sequence[str] | str) -> list[str]:
        """argv that joins this pod's cgroup, then execs ``argv`` (a list or a shell line)."""
        line = argv if isinstance(argv, str) else shlex.join(argv)
        procs = shlex.quote(str(self.path / "cgroup.procs"))
        return ["/bin/sh", "-c", f"echo $$ > {procs} && exec {line}"]

    def run(self, argv: Sequence[str] | str, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        kwargs.setdefault("check", True)
        kwargs.setdefault("timeout", 60)
        return subprocess.run(self.command(argv), **kwargs)

    def popen(self, argv: Sequence[str] | str, **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.command(argv), **kwargs)

    def add(self, pid: int) -> None:
        """Move a running process into this pod's container cgroup."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def remove(self) -> None:
        """Move leftovers to the root cgroup and remove the folders this pod made."""
        for folder in reversed(self._created):
            for _ in range(50):
                with contextlib.suppress(OSError):
                    for pid in (folder / "cgroup.procs").read_text().split():
                        with contextlib.suppress(OSError):
                            (self.root / "cgroup.procs").write_text(pid)
                if any(child.is_dir() for child in folder.iterdir()):
                    break  # another pod still lives under this slice
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)  # a just-exited task can linger a moment
        self._created.clear()

    def __enter__(self) -> FakePod:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.remove()
