"""Attribution from cgroup paths and pod manifests, without a kernel or an API server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from collectors.cgroups import CgroupResolver, parse_cgroup_path
from collectors.pods import Attributor, FilePodSource, PodIndex, PodInfo, agent_of

UID = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
CID = "ab" * 32


@pytest.mark.parametrize("path", [
    f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}"
    f".slice/cri-containerd-{CID}.scope",
    f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{CID}.scope",
    f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
    f"{UID.replace('-', '_')}.slice/docker-{CID}.scope",
    f"/kubepods/burstable/pod{UID}/{CID}",
    f"/kubepods/pod{UID}/{CID}",
    f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
    f"kubelet-kubepods-besteffort-pod{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope",
])
def test_kubelet_cgroup_shapes(path: str) -> None:
    ref = parse_cgroup_path(path)
    assert ref is not None
    assert (ref.pod_uid, ref.container_id) == (UID, CID)


def test_pod_level_and_foreign_paths() -> None:
    ref = parse_cgroup_path(f"/kubepods/besteffort/pod{UID}")
    assert ref is not None and ref.container_id == ""
    assert parse_cgroup_path("/system.slice/containerd.service") is None
    assert parse_cgroup_path("/user.slice/user-0.slice/session-1.scope") is None


def manifest(name: str, owner: tuple[str, str] | None = None,
             labels: dict[str, str] | None = None) -> dict[str, object]:
    meta: dict[str, object] = {"name": name, "namespace": "support", "uid": UID,
                               "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    return {"kind": "Pod", "metadata": meta,
            "spec": {"nodeName": "node-a", "serviceAccountName": "bot"},
            "status": {"containerStatuses": [{"name": "agent",
                                              "containerID": f"containerd://{CID}"}]}}


@pytest.mark.parametrize(("owner", "labels", "agent"), [
    (("ReplicaSet", "bot-7d9f8"), {"pod-template-hash": "7d9f8"}, "support/Deployment/bot"),
    (("ReplicaSet", "bot-7d9f8"), {}, "support/ReplicaSet/bot-7d9f8"),
    (("Job", "nightly-29012345"), {}, "support/CronJob/nightly"),
    (("Job", "migrate"), {}, "support/Job/migrate"),
    (("StatefulSet", "rag"), {}, "support/StatefulSet/rag"),
    (None, {}, "support/Pod/bot-7d9f8-x"),
])
def test_agent_identity_from_owners(owner: tuple[str, str] | None, labels: dict[str, str],
                                    agent: str) -> None:
    assert agent_of(manifest("bot-7d9f8-x", owner, labels)) == agent


def test_file_source_loads_reloads_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "pods.yaml"
    path.write_text(yaml.safe_dump_all([manifest("bot-1")]))
    index = PodIndex()
    changes: list[tuple[str, str]] = []
    index.on_change(lambda change, pod: changes.append((change, pod.name)))
    source = FilePodSource(path)
    source.load(index)
    info = index.get(UID)
    assert info is not None and info.containers == {CID: "agent"}
    assert index.by_service_account("support", "bot") == [info]
    path.write_text(yaml.safe_dump({"kind": "List", "items": []}))
    source.load(index)
    assert index.get(UID) is None
    assert changes == [("ADDED", "bot-1"), ("DELETED", "bot-1")]


def test_attributor_walks_the_real_cgroup_tree(tmp_path: Path) -> None:
    folder = tmp_path / "kubepods.slice" / f"kubepods-pod{UID.replace('-', '_')}.slice"
    container = folder / f"cri-containerd-{CID}.scope"
    container.mkdir(parents=True)
    (tmp_path / "system.slice").mkdir()
    index = PodIndex()
    attributor = Attributor(index, CgroupResolver(tmp_path, rescan_interval_s=0))
    cgroup_id = container.stat().st_ino
    partial = attributor.pod_for_cgroup(cgroup_id)
    assert partial is not None and partial.uid == UID and partial.agent == ""
    index.apply("ADDED", PodInfo.from_manifest(manifest("bot-1")))
    pod = attributor.pod_for_cgroup(cgroup_id)
    assert pod is not None and (pod.name, pod.container, pod.container_id) == \
        ("bot-1", "agent", CID)
    assert attributor.pod_for_cgroup((tmp_path / "system.slice").stat().st_ino) is None
    assert attributor.counts["pod_unknown"] == 1 and attributor.counts["attributed"] == 1
