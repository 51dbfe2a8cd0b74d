"""deploy/monitoring: the ServiceMonitor finds the worker's metrics port, the PodMonitor the
kernel collector's, and every alert names metrics and labels the worker really exports."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.events import Envelope
from tests.deploy.test_kubernetes import DAEMONSET, WORKER, one, parse, selects
from topologies.metrics import WorkerMetrics

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((MONITORING / name).read_text()) if d]


def exported() -> dict[str, set[str]]:
    """Sample name → label names, from a registry that saw one of everything."""
    m = WorkerMetrics()
    m.frame("agentstory.raw.kernel.v1", [Envelope("process.exec", 1, "node-a", "kernel")])
    m.dead_letter("decode", "not JSON: x", "frame")
    m.story("High")
    m.latency.labels("route").observe(0.01)
    m.rebalance_started()
    m.rebalance_done()
    m.lag = {("agentstory.raw.kernel.v1", 0): 3}
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(m.registry).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def test_the_service_monitor_scrapes_the_worker_metrics_port(
        monkeypatch: pytest.MonkeyPatch) -> None:
    [monitor, pod_monitor] = docs("servicemonitor.yaml")
    service = one("Service", "agentstory-worker-metrics")
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert selects(service["spec"]["selector"], WORKER["spec"]["template"]["metadata"]["labels"])
    [endpoint] = monitor["spec"]["endpoints"]
    [port] = service["spec"]["ports"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"
    [container] = WORKER["spec"]["template"]["spec"]["containers"]
    [cport] = container["ports"]
    assert port["targetPort"] == cport["name"] == "metrics"
    args = parse(container, monkeypatch)
    assert args.metrics_port == cport["containerPort"] == port["port"]
    assert args.metrics_addr == "0.0.0.0"
    # The kernel collector's port, by name.
    assert selects(pod_monitor["spec"]["selector"],
                   DAEMONSET["spec"]["template"]["metadata"]["labels"])
    names = {p["name"] for c in DAEMONSET["spec"]["template"]["spec"]["containers"]
             for p in c.get("ports", [])}
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] in names


def test_every_alert_uses_exported_metrics_and_labels() -> None:
    [rule] = docs("prometheusrule.yaml")
    metrics = exported()
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {"AgentstoryWorkerLagGrowing", "AgentstoryDeadLetters",
                           "AgentstoryNoEventsFromNode", "AgentstoryWorkerNotReady"}
    for name, alert in alerts.items():
        expr = alert["expr"]
        used = set(re.findall(r"\bagentstory_\w+", expr))
        assert used and used <= set(metrics), (name, used - set(metrics))
        labels = set().union(*(metrics[u] for u in used)) | {"pod"}  # pod: added by scrape
        for group in re.findall(r"by \(([^)]*)\)", expr):
            assert {x.strip() for x in group.split(",")} <= labels, (name, group)
        for label in re.findall(r"\{(\w+)=~?\"", expr):
            assert label in labels, (name, label)
        assert expr.count("(") == expr.count(")")
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["summary"]


def test_the_worker_probes_readiness_on_healthz(monkeypatch: pytest.MonkeyPatch) -> None:
    [container] = WORKER["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert SimpleNamespace(**container["startupProbe"]["httpGet"]).port == "metrics"
