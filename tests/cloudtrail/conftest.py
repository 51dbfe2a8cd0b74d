"""Pods of a small cluster, as manifests: two replicas of an IRSA agent sharing one
service account, an IRSA agent with one pod, and a Pod Identity agent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from moto.server import ThreadedMotoServer

from collectors.pods import PodIndex, PodInfo

SUPPORT_UID_A = "6f1c2a9e-0000-4000-8000-00000000000a"
SUPPORT_UID_B = "6f1c2a9e-0000-4000-8000-00000000000b"
RAG_UID = "9b7e4d21-0000-4000-8000-000000000001"
RESEARCH_UID = "3c5a7e90-0000-4000-8000-000000000001"

MANIFESTS = f"""
apiVersion: v1
kind: Pod
metadata:
  name: support-bot-7d9f8c-x2x4z
  namespace: support
  uid: {SUPPORT_UID_B}
  labels: {{app: support-bot, pod-template-hash: 7d9f8c}}
  ownerReferences:
  - {{apiVersion: apps/v1, kind: ReplicaSet, name: support-bot-7d9f8c, controller: true,
     uid: 11111111-2222-3333-4444-555555555555}}
spec:
  nodeName: node-a
  serviceAccountName: support-bot
  containers: [{{name: bot, image: support-bot:1.4}}]
status:
  containerStatuses:
  - {{name: bot, containerID: "containerd://{"b" * 64}"}}
---
apiVersion: v1
kind: Pod
metadata:
  name: support-bot-7d9f8c-q8w2n
  namespace: support
  uid: {SUPPORT_UID_A}
  labels: {{app: support-bot, pod-template-hash: 7d9f8c}}
  ownerReferences:
  - {{apiVersion: apps/v1, kind: ReplicaSet, name: support-bot-7d9f8c, controller: true,
     uid: 11111111-2222-3333-4444-555555555555}}
spec:
  nodeName: node-b
  serviceAccountName: support-bot
  containers: [{{name: bot, image: support-bot:1.4}}]
status:
  containerStatuses:
  - {{name: bot, containerID: "containerd://{"a" * 64}"}}
---
apiVersion: v1
kind: Pod
metadata:
  name: rag-indexer-5c6d7-abcde
  namespace: rag
  uid: {RAG_UID}
  labels: {{pod-template-hash: 5c6d7}}
  ownerReferences:
  - {{apiVersion: apps/v1, kind: ReplicaSet, name: rag-indexer-5c6d7, controller: true,
     uid: 66666666-2222-3333-4444-555555555555}}
spec:
  nodeName: node-a
  serviceAccountName: rag
  containers: [{{name: indexer, image: rag:2}}]
status:
  containerStatuses:
  - {{name: indexer, containerID: "containerd://{"c" * 64}"}}
---
apiVersion: v1
kind: Pod
metadata:
  name: research-agent-6b8d9-k2v7p
  namespace: research
  uid: {RESEARCH_UID}
  labels: {{pod-template-hash: 6b8d9}}
  ownerReferences:
  - {{apiVersion: apps/v1, kind: ReplicaSet, name: research-agent-6b8d9, controller: true,
     uid: 77777777-2222-3333-4444-555555555555}}
spec:
  nodeName: node-b
  serviceAccountName: research-agent
  containers: [{{name: agent, image: research:3}}]
status:
  podIP: 10.0.8.21
  podIPs: [{{ip: 10.0.8.21}}]
  containerStatuses:
  - {{name: agent, containerID: "containerd://{"d" * 64}"}}
"""


@pytest.fixture
def pod_index() -> PodIndex:
    index = PodIndex()
    for doc in yaml.safe_load_all(MANIFESTS):
        index.apply("ADDED", PodInfo.from_manifest(doc))
    return index


@pytest.fixture
def pods_file(tmp_path: Path) -> Path:
    path = tmp_path / "pods.yaml"
    path.write_text(MANIFESTS)
    return path


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A local AWS API endpoint (moto's server) on loopback: S3 and SQS wire protocol,
    boto3 unchanged."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
