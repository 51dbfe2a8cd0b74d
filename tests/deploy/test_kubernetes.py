"""deploy/kubernetes: schema-valid manifests whose commands, flags and env the CLI takes.

Schemas: kubernetes-validate's offline copies of the Kubernetes OpenAPI schemas, in
strict mode (unknown keys are errors), for the oldest version the manifests need (1.30:
securityContext.appArmorProfile) and the newest the package ships.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from streams.topics import PARTITIONS, RAW_TOPICS
from topologies.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
NAMESPACE = "agentstory"
IMAGE = "ghcr.io/agentstory/agentstory:0.1.0"
NODE_SENTINEL = "node-from-the-downward-api"
VERSIONS = ["1.30.0", latest_version()]


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((KUBE / name).read_text()) if d]


RESOURCES = [doc for name in KUSTOMIZATION["resources"] for doc in load(name)]


def one(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in RESOURCES if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


CONFIG = one("ConfigMap", "agentstory")["data"]
DAEMONSET = one("DaemonSet", "agentstory-node-collector")
WORKER = one("Deployment", "agentstory-worker")
CLOUDTRAIL = one("Deployment", "agentstory-cloudtrail")
WORKLOADS = [DAEMONSET, WORKER, CLOUDTRAIL]


def containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for workload in WORKLOADS:
        for container in workload["spec"]["template"]["spec"]["containers"]:
            yield workload, container


CONTAINERS = list(containers())
CONTAINER_IDS = [f"{w['metadata']['name']}/{c['name']}" for w, c in CONTAINERS]


def resolved_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet would set it."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        source = var["valueFrom"]
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            assert ref["name"] == "agentstory", ref
            env[var["name"]] = CONFIG[ref["key"]]
        elif "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "spec.nodeName"
            env[var["name"]] = NODE_SENTINEL
        else:
            raise AssertionError(f"unexpected env source {source}")
    return env


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion in args; an unknown $(VAR) would stay literal."""
    def sub(match: re.Match[str]) -> str:
        assert match.group(1) in env, f"$({match.group(1)}) is not in the container env"
        return env[match.group(1)]
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, arg)


def parse(container: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The container's command line through the real CLI parser, in its environment."""
    env = resolved_env(container)
    for name in [n for n in list(os.environ) if n.startswith("AGENTSTORY_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert container["command"] == ["agentstory"]
    return build_parser().parse_args([expand(a, env) for a in container["args"]])


# --- structure and schema ---------------------------------------------------------------

def test_the_kustomization_lists_every_manifest() -> None:
    files = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(KUSTOMIZATION["resources"]) == files
    assert KUSTOMIZATION["namespace"] == NAMESPACE


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("doc", RESOURCES,
                         ids=[f"{d['kind']}/{d['metadata']['name']}" for d in RESOURCES])
def test_every_resource_is_valid_kubernetes(doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_is_strict() -> None:
    doc = copy.deepcopy(DAEMONSET)
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privilegd"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, latest_version(), strict=True)


def test_namespaced_resources_are_in_the_agentstory_namespace() -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for doc in RESOURCES:
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]


def test_every_container_runs_the_placeholder_image() -> None:
    assert {c["image"] for _, c in CONTAINERS} == {IMAGE}
    [image] = KUSTOMIZATION["images"]
    assert f"{image['name']}:{image['newTag']}" == IMAGE


# --- the CLI takes what the manifests say -------------------------------------------------

@pytest.mark.parametrize(("workload", "container"), CONTAINERS, ids=CONTAINER_IDS)
def test_container_args_parse_with_the_cli(workload: dict[str, Any], container: dict[str, Any],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    args = parse(container, monkeypatch)
    assert args.bootstrap_servers == CONFIG["AGENTSTORY_BOOTSTRAP_SERVERS"]
    assert args.log_level == CONFIG["AGENTSTORY_LOG_LEVEL"]
    assert callable(args.func)


def option_strings(parser: argparse.ArgumentParser, words: list[str]) -> set[str]:
    """The exact option strings of the (sub)command that ``words`` selects."""
    options = {o for a in parser._actions for o in a.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = next(w for w in words if w in action.choices)
            rest = words[words.index(chosen) + 1:]
            return options | option_strings(action.choices[chosen], rest)
    return options


@pytest.mark.parametrize(("workload", "container"), CONTAINERS, ids=CONTAINER_IDS)
def test_flags_are_spelled_out(workload: dict[str, Any], container: dict[str, Any]) -> None:
    # argparse takes unambiguous prefixes (--min-event for --min-events); a manifest
    # must not lean on that: a new flag sharing the prefix would break it.
    known = option_strings(build_parser(), container["args"])
    flags = {a.split("=", 1)[0] for a in container["args"] if a.startswith("--")}
    assert flags and flags <= known


def test_the_daemonset_runs_the_kernel_and_l7_collectors(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pod = DAEMONSET["spec"]["template"]["spec"]
    parsed = {c["name"]: parse(c, monkeypatch) for c in pod["containers"]}
    assert {n: (a.command, a.collector) for n, a in parsed.items()} == {
        "kernel": ("collect", "kernel"), "l7": ("collect", "l7")}
    for args in parsed.values():
        assert args.node == NODE_SENTINEL  # spec.nodeName through the downward API
        assert args.pods_file is None  # the Kubernetes watch, not the embedded file
        assert args.cgroup_root == "/host/sys/fs/cgroup"
    # The collectors' real entry points, not the "cannot load" stub.
    assert all(a.func.__name__ == "cmd_collect" for a in parsed.values())


def test_the_metrics_port_is_served_where_prometheus_is_told(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pod = DAEMONSET["spec"]["template"]
    [kernel] = [c for c in pod["spec"]["containers"] if c["name"] == "kernel"]
    args = parse(kernel, monkeypatch)
    [port] = kernel["ports"]
    annotations = pod["metadata"]["annotations"]
    assert args.metrics_port == port["containerPort"] == int(annotations["prometheus.io/port"])
    assert annotations["prometheus.io/scrape"] == "true"
    assert not ipaddress.ip_address(args.metrics_addr).is_loopback
    assert kernel["readinessProbe"]["httpGet"]["path"] == annotations["prometheus.io/path"]


def test_the_worker_takes_its_tuning_from_the_configmap(monkeypatch: pytest.MonkeyPatch) -> None:
    [container] = WORKER["spec"]["template"]["spec"]["containers"]
    args = parse(container, monkeypatch)
    assert args.command == "worker"
    assert args.learning_seconds == float(CONFIG["AGENTSTORY_LEARNING_SECONDS"])
    assert args.min_events == int(CONFIG["AGENTSTORY_MIN_EVENTS"])


def test_the_cloudtrail_collector_follows_s3_with_a_persistent_checkpoint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pod = CLOUDTRAIL["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = parse(container, monkeypatch)
    assert (args.command, args.collector) == ("collect", "cloudtrail")
    assert args.s3 == CONFIG["AGENTSTORY_CLOUDTRAIL_S3"] and args.follow
    assert args.region == CONFIG["AGENTSTORY_CLOUDTRAIL_REGION"]
    [mount] = [m for m in container["volumeMounts"]
               if str(args.checkpoint).startswith(m["mountPath"] + "/")]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert one("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert not mount.get("readOnly")
    # One writer of the checkpoint and the RWO volume.
    assert CLOUDTRAIL["spec"]["replicas"] == 1
    assert CLOUDTRAIL["spec"]["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize(("workload", "container"), CONTAINERS, ids=CONTAINER_IDS)
def test_every_env_var_is_read_by_the_cli_or_expanded_in_args(
        workload: dict[str, Any], container: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    expanded = {m for a in container["args"] for m in re.findall(r"\$\(([A-Za-z0-9_]+)\)", a)}
    for var in container["env"]:
        name = var["name"]
        if name in expanded or name in LIBRARY_SETTINGS:  # the latter: test below
            continue
        # Read by the CLI: a sentinel value in the env shows up in the parsed arguments.
        baseline = vars(parse(container, monkeypatch))
        sentinel = f"sentinel-{name.lower()}"
        monkeypatch.setenv(name, sentinel)
        env = resolved_env(container)
        parsed = vars(build_parser().parse_args([expand(a, env) for a in container["args"]]))
        assert sentinel in parsed.values(), f"{name} is neither read by the CLI nor used"
        assert sentinel not in baseline.values()


# Read at import by the library every command shares, not parsed as arguments.
LIBRARY_SETTINGS = {"AGENTSTORY_PARTITIONS": ("streams.topics", "PARTITIONS"),
                    "AGENTSTORY_MAX_MESSAGE_BYTES": ("streams.limits",
                                                     "size_limits().message_bytes")}


@pytest.mark.parametrize(("workload", "container"), CONTAINERS, ids=CONTAINER_IDS)
def test_every_container_gets_the_partition_count_and_size_limit_it_reads(
        workload: dict[str, Any], container: dict[str, Any]) -> None:
    import subprocess
    import sys

    env = resolved_env(container)
    for name, (module, expr) in LIBRARY_SETTINGS.items():
        value = env[name]
        out = subprocess.run(
            [sys.executable, "-c", f"from {module} import *; import {module} as m; "
                                   f"print(m.{expr})"],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("AGENTSTORY_")},
                 name: value, "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, check=True).stdout.strip()
        assert out == value, (name, out)


def test_the_topics_manifest_has_the_configmap_partition_count() -> None:
    counts = {d["spec"]["partitions"] for d in yaml.safe_load_all(
        (ROOT / "deploy" / "kafka" / "topics.yaml").read_text()) if d}
    assert counts == {int(CONFIG["AGENTSTORY_PARTITIONS"])}


def test_every_configmap_key_is_used_and_every_reference_exists() -> None:
    refs = {var["valueFrom"]["configMapKeyRef"]["key"]
            for _, c in CONTAINERS for var in c["env"]
            if "configMapKeyRef" in var.get("valueFrom", {})}
    assert refs == set(CONFIG)


# --- the node collectors ---------------------------------------------------------------

def test_the_daemonset_runs_everywhere_first() -> None:
    spec = DAEMONSET["spec"]
    pod = spec["template"]["spec"]
    assert pod["hostPID"] is True
    assert pod["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in pod["tolerations"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate",
                                      "rollingUpdate": {"maxUnavailable": "10%"}}
    assert pod["serviceAccountName"] == "agentstory-node-collector"


HOST_PATHS_READ_ONLY = {"/sys/fs/cgroup", "/sys/kernel/debug", "/sys/kernel/tracing",
                        "/sys/kernel/btf", "/lib/modules", "/usr/src"}


def test_the_collectors_see_the_host_read_only() -> None:
    pod = DAEMONSET["spec"]["template"]["spec"]
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert set(host.values()) == HOST_PATHS_READ_ONLY
    for container in pod["containers"]:
        mounted = {host[m["name"]]: m for m in container["volumeMounts"] if m["name"] in host}
        assert set(mounted) == HOST_PATHS_READ_ONLY, container["name"]
        assert all(m["readOnly"] is True for m in mounted.values())
        # Headers at the host's own paths: /lib/modules/<release>/build links into /usr/src.
        for path in ("/lib/modules", "/usr/src", "/sys/kernel/btf"):
            assert mounted[path]["mountPath"] == path


def test_the_collectors_have_the_bpf_capabilities_without_privileged() -> None:
    for container in DAEMONSET["spec"]["template"]["spec"]["containers"]:
        sc = container["securityContext"]
        assert sc["privileged"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert {"BPF", "PERFMON", "SYS_RESOURCE"} <= set(sc["capabilities"]["add"])
        assert sc["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize(("workload", "container"), CONTAINERS, ids=CONTAINER_IDS)
def test_no_security_context_the_api_server_refuses(
        workload: dict[str, Any], container: dict[str, Any]) -> None:
    # API validation (not in the JSON schema): allowPrivilegeEscalation: false cannot go
    # with privileged: true nor with CAP_SYS_ADMIN added.
    sc = container.get("securityContext", {})
    if sc.get("allowPrivilegeEscalation") is False:
        added = {c.removeprefix("CAP_") for c in sc.get("capabilities", {}).get("add", [])}
        assert not sc.get("privileged") and "SYS_ADMIN" not in added


@pytest.mark.parametrize(("workload", "container"), CONTAINERS, ids=CONTAINER_IDS)
def test_every_container_has_requests_and_limits(
        workload: dict[str, Any], container: dict[str, Any]) -> None:
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}


# --- the worker and the CloudTrail collector: non-root, locked down -------------------------

@pytest.mark.parametrize("workload", [WORKER, CLOUDTRAIL], ids=lambda w: w["metadata"]["name"])
def test_restricted_workloads(workload: dict[str, Any]) -> None:
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts_ok = {v["name"] for v in pod["volumes"]}
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "capabilities": {"drop": ["ALL"]}}
        # What they write goes to volumes: /tmp, Faust's data dir, the checkpoint.
        writable = {m["mountPath"] for m in container["volumeMounts"]
                    if m["name"] in mounts_ok and not m.get("readOnly")}
        assert "/tmp" in writable
        if "workingDir" in container:
            assert container["workingDir"] in writable


def test_worker_replicas_never_exceed_the_raw_partitions() -> None:
    spec = WORKER["spec"]
    surge = spec["strategy"]["rollingUpdate"]["maxSurge"]
    assert isinstance(surge, int)
    assert spec["replicas"] + surge <= min(t.partitions for t in RAW_TOPICS) == PARTITIONS


def test_the_worker_needs_no_service_account_token() -> None:
    # Its probes are on its own metrics port (tests/deploy/test_monitoring.py).
    assert WORKER["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


# --- RBAC and IRSA ----------------------------------------------------------------------

def test_the_pod_reader_only_reads_pods() -> None:
    role = one("ClusterRole", "agentstory-pod-reader")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                              "verbs": ["get", "list", "watch"]}]
    bound = {b["subjects"][0]["name"] for b in RESOURCES if b["kind"] == "ClusterRoleBinding"
             and b["roleRef"]["name"] == "agentstory-pod-reader"}
    assert bound == {"agentstory-node-collector", "agentstory-cloudtrail"}


def test_the_cloudtrail_service_account_assumes_an_iam_role() -> None:
    account = one("ServiceAccount", "agentstory-cloudtrail")
    arn = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", arn)
    assert CLOUDTRAIL["spec"]["template"]["spec"]["serviceAccountName"] == "agentstory-cloudtrail"


# --- network policy ------------------------------------------------------------------------

POLICIES = [d for d in RESOURCES if d["kind"] == "NetworkPolicy"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def egress_ports(workload: dict[str, Any]) -> set[int]:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return {port["port"] for p in POLICIES if selects(p["spec"]["podSelector"], labels)
            for rule in p["spec"].get("egress", []) for port in rule.get("ports", [])}


def test_everything_is_denied_unless_allowed() -> None:
    deny = one("NetworkPolicy", "agentstory-default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for policy in POLICIES:
        for rule in policy["spec"].get("egress", []) + policy["spec"].get("ingress", []):
            assert rule.get("ports"), f"{policy['metadata']['name']}: a rule without ports"


def test_egress_is_dns_kafka_and_the_api_server_only() -> None:
    kafka_port = int(CONFIG["AGENTSTORY_BOOTSTRAP_SERVERS"].split(",")[0].rsplit(":", 1)[1])
    assert egress_ports(WORKER) == {53, kafka_port}
    assert egress_ports(DAEMONSET) == {53, kafka_port, 443, 6443}
    # Plus S3 and STS over HTTPS for the CloudTrail collector.
    assert egress_ports(CLOUDTRAIL) == {53, kafka_port, 443, 6443}


def test_only_prometheus_may_come_in_and_only_to_the_metrics_port() -> None:
    ingress = [(p, r) for p in POLICIES for r in p["spec"].get("ingress", [])]
    assert [(p["metadata"]["name"], [x["port"] for x in r["ports"]]) for p, r in ingress] == [
        ("agentstory-metrics", [9400]), ("agentstory-worker-metrics", [9401])]
    for (policy, _), workload in zip(ingress, [DAEMONSET, WORKER], strict=True):
        assert selects(policy["spec"]["podSelector"],
                       workload["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize(("workload", "container"), CONTAINERS, ids=CONTAINER_IDS)
def test_every_kafka_client_reads_its_connection_from_the_optional_secret(
        workload: dict[str, Any], container: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.kafka_config import security_from_args

    pod = workload["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "kafka-client"]
    assert volume["secret"] == {"secretName": "agentstory-kafka", "optional": True,
                                "defaultMode": 0o440}
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "kafka-client"]
    assert mount == {"name": "kafka-client", "mountPath": "/etc/agentstory/kafka",
                     "readOnly": True}
    assert security_from_args(parse(container, monkeypatch)).security_protocol == "PLAINTEXT"
    properties = tmp_path / "client.properties"  # as mounted from the Secret
    properties.write_text("security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
                          "sasl.username=agentstory\nsasl.password=s3cret\n")
    monkeypatch.setitem(CONFIG, "AGENTSTORY_KAFKA_COMMAND_CONFIG", str(properties))
    security = security_from_args(parse(container, monkeypatch))
    assert (security.security_protocol, security.sasl_mechanism) == ("SASL_SSL",
                                                                     "SCRAM-SHA-512")
