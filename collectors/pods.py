"""Pod metadata for attribution: who runs in a cgroup, which agent a pod belongs to.

Pods come from a *pod source*: the Kubernetes API (a watch restricted to this node) on a
real cluster, or a YAML file of Pod manifests in the embedded mode. Both feed the same
:class:`PodIndex`, which the collectors query. The agent (the unit a baseline belongs
to) is derived from owner references so that it survives restarts and rollouts.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from collectors.cgroups import CgroupResolver, parse_cgroup_path
from streams.events import Pod

__all__ = [
    "Attributor",
    "FilePodSource",
    "KubernetesPodSource",
    "PodIndex",
    "PodInfo",
    "PodSource",
    "agent_of",
    "make_pod_source",
]

log = logging.getLogger(__name__)

_CRONJOB_JOB = re.compile(r"^(.+)-\d{8,}$")  # CronJob names its Jobs <cronjob>-<minutes>


def agent_of(manifest: Mapping[str, Any]) -> str:
    """``namespace/kind/name`` of the workload that owns a pod.

    ReplicaSet → Deployment (strip the ``pod-template-hash``), Job → CronJob when the Job
    name has the CronJob shape, StatefulSet/DaemonSet/Job as is; a bare pod is its own
    agent (``namespace/Pod/name``).

    >>> agent_of({"metadata": {"namespace": "support", "name": "bot-7d9f-abc",
    ...   "labels": {"pod-template-hash": "7d9f"},
    ...   "ownerReferences": [{"kind": "ReplicaSet", "name": "bot-7d9f", "controller": True}]}})
    'support/Deployment/bot'
    """
    meta = manifest.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    owners = meta.get("ownerReferences") or []
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if owner is None:
        return f"{namespace}/Pod/{meta.get('name', '')}"
    kind, name = owner.get("kind", ""), owner.get("name", "")
    if kind == "ReplicaSet":
        pod_hash = (meta.get("labels") or {}).get("pod-template-hash")
        if pod_hash and name.endswith(f"-{pod_hash}"):
            return f"{namespace}/Deployment/{name[: -len(pod_hash) - 1]}"
    if kind == "Job":
        match = _CRONJOB_JOB.match(name)
        if match is not None:
            return f"{namespace}/CronJob/{match.group(1)}"
    return f"{namespace}/{kind}/{name}"


def _strip_runtime(container_id: str) -> str:
    """``containerd://abc…`` → ``abc…`` (status.containerStatuses[].containerID)."""
    return container_id.partition("://")[2] or container_id


@dataclass(frozen=True, slots=True)
class PodInfo:
    uid: str
    namespace: str
    name: str
    node: str
    service_account: str
    agent: str
    containers: Mapping[str, str] = field(default_factory=dict)  # container id → name
    ips: tuple[str, ...] = ()  # status.podIPs: settles which pod a cloud call came from

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> PodInfo:
        meta = manifest.get("metadata") or {}
        spec = manifest.get("spec") or {}
        status = manifest.get("status") or {}
        uid = meta.get("uid")
        if not uid:
            raise ValueError(f"pod {meta.get('name')!r} has no metadata.uid")
        containers = {
            _strip_runtime(s["containerID"]): s.get("name", "")
            for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")
            for s in status.get(key) or []
            if s.get("containerID")
        }
        return cls(
            uid=uid,
            namespace=meta.get("namespace") or "default",
            name=meta.get("name", ""),
            node=spec.get("nodeName", ""),
            service_account=spec.get("serviceAccountName") or "default",
            agent=agent_of(manifest),
            containers=containers,
            ips=tuple(ip for ip in (
                [p.get("ip") for p in status.get("podIPs") or [] if isinstance(p, dict)]
                or [status.get("podIP")]) if isinstance(ip, str) and ip),
        )

    def to_pod(self, container_id: str = "") -> Pod:
        container = self.containers.get(container_id, "")
        if not container and len(self.containers) == 1 and not container_id:
            container = next(iter(self.containers.values()))
        return Pod(
            uid=self.uid, namespace=self.namespace, name=self.name, agent=self.agent,
            service_account=self.service_account, container=container,
            container_id=container_id,
        )


class PodIndex:
    """Thread-safe view of the pods on this node, fed by a pod source."""

    def __init__(self) -> None:
        self._by_uid: dict[str, PodInfo] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[str, PodInfo], None]] = []

    def on_change(self, listener: Callable[[str, PodInfo], None]) -> None:
        self._listeners.append(listener)

    def apply(self, change: str, pod: PodInfo) -> None:
        """``change`` is the watch event type: ADDED, MODIFIED or DELETED."""
        with self._lock:
            if change == "DELETED":
                self._by_uid.pop(pod.uid, None)
            else:
                self._by_uid[pod.uid] = pod
        for listener in self._listeners:
            listener(change, pod)

    def get(self, uid: str) -> PodInfo | None:
        with self._lock:
            return self._by_uid.get(uid)

    def by_service_account(self, namespace: str, service_account: str) -> list[PodInfo]:
        with self._lock:
            return [
                p for p in self._by_uid.values()
                if p.namespace == namespace and p.service_account == service_account
            ]

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_uid)


class PodSource(Protocol):
    """Feeds a :class:`PodIndex`. ``run`` blocks (call it in a thread) until ``stop``."""

    def load(self, index: PodIndex) -> None: ...
    def run(self, index: PodIndex) -> None: ...
    def stop(self) -> None: ...


def _pods_in(docs: Iterable[Any]) -> Iterator[Mapping[str, Any]]:
    for doc in docs:
        if not isinstance(doc, Mapping):
            continue
        if doc.get("kind") == "List" or "items" in doc:
            yield from _pods_in(doc.get("items") or [])
        elif doc.get("kind", "Pod") == "Pod":
            yield doc


class FilePodSource:
    """Pod manifests from a YAML file (multi-document or a ``List``): the embedded mode's
    stand-in for the API server. Reloaded when the file changes."""

    def __init__(self, path: str | Path, *, poll_s: float = 0.5) -> None:
        self.path = Path(path)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._mtime = 0.0
        self._known: dict[str, PodInfo] = {}

    def load(self, index: PodIndex) -> None:
        self._mtime = self.path.stat().st_mtime
        with self.path.open() as fh:
            pods = {p.uid: p for p in map(PodInfo.from_manifest, _pods_in(yaml.safe_load_all(fh)))}
        for uid, pod in pods.items():
            index.apply("MODIFIED" if uid in self._known else "ADDED", pod)
        for uid in self._known.keys() - pods.keys():
            index.apply("DELETED", self._known[uid])
        self._known = pods

    def run(self, index: PodIndex) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                if self.path.stat().st_mtime != self._mtime:
                    self.load(index)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                log.warning("pod file %s: %s", self.path, exc)

    def stop(self) -> None:
        self._stop.set()


class KubernetesPodSource:
    """List-then-watch pods through the API server, resuming from the last resourceVersion
    and relisting on 410. Node collectors pass their node (field selector
    ``spec.nodeName``); a collector beside the account (CloudTrail) passes None for all."""

    def __init__(self, node_name: str | None, *, api: Any = None, timeout_s: int = 300) -> None:
        self.node_name = node_name
        self.timeout_s = timeout_s
        self._api = api
        self._stop = threading.Event()
        self._watch: Any = None
        self._resource_version = ""
        self._known: set[str] = set()

    def _core(self) -> Any:
        if self._api is None:
            from kubernetes import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            self._api = client.CoreV1Api()
        return self._api

    def _selector(self) -> str:
        return f"spec.nodeName={self.node_name}" if self.node_name else ""

    def load(self, index: PodIndex) -> None:
        """List the pods; on a relist, pods that vanished meanwhile are deleted."""
        api = self._core()
        listed = api.list_pod_for_all_namespaces(field_selector=self._selector())
        serialize = api.api_client.sanitize_for_serialization
        pods = {p.uid: p for p in (PodInfo.from_manifest(serialize(i)) for i in listed.items)}
        for uid, pod in pods.items():
            index.apply("MODIFIED" if uid in self._known else "ADDED", pod)
        for uid in self._known - pods.keys():
            gone = index.get(uid)
            if gone is not None:
                index.apply("DELETED", gone)
        self._known = set(pods)
        self._resource_version = listed.metadata.resource_version

    def run(self, index: PodIndex) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        api = self._core()
        serialize = api.api_client.sanitize_for_serialization
        while not self._stop.is_set():
            self._watch = watch.Watch()
            try:
                for event in self._watch.stream(
                    api.list_pod_for_all_namespaces, field_selector=self._selector(),
                    resource_version=self._resource_version, timeout_seconds=self.timeout_s,
                ):
                    obj = serialize(event["object"])
                    self._resource_version = (obj.get("metadata") or {}).get(
                        "resourceVersion", self._resource_version)
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        pod = PodInfo.from_manifest(obj)
                        index.apply(event["type"], pod)
                        if event["type"] == "DELETED":
                            self._known.discard(pod.uid)
                        else:
                            self._known.add(pod.uid)
            except ApiException as exc:
                if exc.status != 410:
                    raise
                log.info("pod watch expired (410); relisting")
                self.load(index)

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()


class Attributor:
    """cgroup id → :class:`~streams.events.Pod`, counting why attribution failed."""

    def __init__(self, index: PodIndex, resolver: CgroupResolver) -> None:
        self.index = index
        self.resolver = resolver
        self.counts: dict[str, int] = {
            "attributed": 0, "no_cgroup_path": 0, "not_a_pod": 0, "pod_unknown": 0,
        }

    def pod_for_cgroup(self, cgroup_id: int) -> Pod | None:
        path = self.resolver.path_of(cgroup_id)
        if path is None:
            self.counts["no_cgroup_path"] += 1
            return None
        ref = parse_cgroup_path(path)
        if ref is None:
            self.counts["not_a_pod"] += 1
            return None
        info = self.index.get(ref.pod_uid)
        if info is None:
            # The uid alone still keys the event correctly; metadata may come later.
            self.counts["pod_unknown"] += 1
            return Pod(uid=ref.pod_uid, container_id=ref.container_id)
        self.counts["attributed"] += 1
        return info.to_pod(ref.container_id)


def make_pod_source(pods_file: str | None, node: str | None) -> PodSource:
    """The embedded mode's file source when a file is given, else the API server (pods of
    ``node``, or of every node when it is None)."""
    if pods_file:
        return FilePodSource(pods_file)
    return KubernetesPodSource(node)
