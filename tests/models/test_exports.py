"""Issue 17: policies and the AI-BOM from a learned profile, checked against the published
schemas (stored offline in tests/models/schemas/, see its README) and on the demo's
recording (tests/recordings/dev/demo-support-injection) replayed through the engine.
"""

from __future__ import annotations

import copy
import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from models.exports import FORMATS, ExportOptions, NotEnforceReady, export
from models.exports.bom import bom_json
from tests.models.demo_records import DEMO, replay_records
from topologies.profiles_cli import render

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).parent / "schemas"
BOT = "support/Deployment/support-bot"
RESEARCH = "research/Deployment/research-agent"
FORCE = ExportOptions(force=True)


def _schema(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return doc


def strict(schema: Any) -> Any:
    """The schema with unknown keys refused where it lists properties (what kubectl's
    strict field validation does; the CRDs' structural schemas would prune them silently),
    except in metadata, which the CRD schemas leave open."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and out.get("type") == "object":
        out["additionalProperties"] = False
    return out


def crd_validator(name: str) -> jsonschema.protocols.Validator:
    schema = strict(_schema(name))
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


SECCOMP_FILE = jsonschema.Draft4Validator(_schema("oci-seccomp.schema.json"))
SPO = crd_validator("spo-seccompprofile-v1beta1.schema.json")
CILIUM = crd_validator("cilium-networkpolicy-v2.schema.json")


def errors(validator: jsonschema.protocols.Validator, doc: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def netpol_errors(doc: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [str(exc)]
    return []


@pytest.fixture(scope="module")
def records() -> dict[str, dict[str, Any]]:
    """The profile records of the demo's agents after a replay of its recording."""
    return replay_records(DEMO)


def test_the_validators_refuse_what_the_schemas_refuse(records: dict[str, Any]) -> None:
    """Each stored schema rejects a typical mistake (so a pass below means something)."""
    good = export(records[BOT], "cilium", FORCE)
    bad = copy.deepcopy(good)
    bad["spec"]["egress"][2]["toFQDN"] = bad["spec"]["egress"][2].pop("toFQDNs")
    assert errors(CILIUM, bad)
    bad = copy.deepcopy(good)
    bad["spec"]["egress"][0]["toPorts"][0]["ports"][0]["protocol"] = "TCPX"
    assert errors(CILIUM, bad)
    sp = export(records[BOT], "seccomp", FORCE)
    sp["spec"]["defaultAction"] = "SCMP_ACT_DENY"
    assert errors(SPO, sp)
    sj = export(records[BOT], "seccomp-json", FORCE)
    sj["syscalls"][0]["action"] = "ALLOW"
    assert errors(SECCOMP_FILE, sj)
    np = export(records[BOT], "networkpolicy", FORCE)
    np["spec"]["egress"][0]["ports"][0]["port"] = [53]
    assert netpol_errors(np)


@pytest.mark.parametrize("agent", [BOT, RESEARCH])
def test_exports_validate_against_their_published_schemas(records: dict[str, Any],
                                                          agent: str) -> None:
    record = records[agent]
    assert errors(SECCOMP_FILE, export(record, "seccomp-json", FORCE)) == []
    assert errors(SPO, export(record, "seccomp", FORCE)) == []
    assert netpol_errors(export(record, "networkpolicy", FORCE)) == []
    assert errors(CILIUM, export(record, "cilium", FORCE)) == []


def test_not_enforce_ready_is_refused_unless_forced(records: dict[str, Any]) -> None:
    record = records[BOT]
    assert record["phase"] != "enforce-ready"
    for fmt in set(FORMATS) - {"agentstory"}:  # the enforcer's policy comes in audit mode
        with pytest.raises(NotEnforceReady, match=r"--force"):
            export(record, fmt)
    forced = export(record, "cilium", FORCE)["metadata"]["annotations"]
    assert forced["agentstory.io/phase"] == record["phase"]
    assert forced["agentstory.io/forced"].startswith("true")
    ready = {**record, "phase": "enforce-ready"}
    annotations = export(ready, "networkpolicy")["metadata"]["annotations"]
    assert "agentstory.io/forced" not in annotations
    assert annotations["agentstory.io/learned-from"] == record["first_seen"]
    assert annotations["agentstory.io/learned-until"] == record["last_seen"]


def test_policies_hold_what_the_bot_learned_and_not_the_attack(records: dict[str, Any]
                                                               ) -> None:
    """The exfiltration domain of the attack was seen (it is in the BOM's inventory) but
    never learned: no export allows it; the learned API, MCP server and DNS are allowed."""
    record = records[BOT]
    seen = {r["key"] for r in record["inventory"]["destination"]}
    assert "tcp/telemetry-sync.io:443" in seen
    cilium = export(record, "cilium", FORCE)
    text = json.dumps(cilium["spec"])
    assert "telemetry-sync.io" not in text
    assert "telemetry-sync.io" in cilium["metadata"]["annotations"][
        "agentstory.io/seen-not-learned"]
    rules = cilium["spec"]["egress"]
    assert rules[0]["toPorts"][0]["rules"]["dns"] == [{"matchPattern": "*"}]
    fqdns = {(f["matchName"], r["toPorts"][0]["ports"][0]["port"])
             for r in rules for f in r.get("toFQDNs", [])}
    assert ("api.openai.com", "443") in fqdns and ("helpdesk.acme.example", "443") in fqdns
    assert {"toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "support"}}],
            "toPorts": [{"ports": [{"port": "8000", "protocol": "TCP"}]}]} in rules
    assert cilium["spec"]["endpointSelector"] == {"matchLabels": {"app": "support-bot"}}

    netpol = export(record, "networkpolicy", FORCE)
    exfil = next(d["addrs"] for d in record["inventory"]["destination"]
             if d["key"] == "tcp/telemetry-sync.io:443")
    cidrs = {p["ipBlock"]["cidr"] for r in netpol["spec"]["egress"] for p in r["to"]
             if "ipBlock" in p}
    openai = next(d["addrs"] for d in record["inventory"]["destination"]
              if d.get("domain") == "api.openai.com")
    assert f"{openai[0]}/32" in cidrs and not {f"{a}/32" for a in exfil} & cidrs
    assert netpol["spec"]["egress"][0]["ports"] == [{"protocol": "UDP", "port": 53},
                                                    {"protocol": "TCP", "port": 53}]

    seccomp = export(record, "seccomp", FORCE)
    names = seccomp["spec"]["syscalls"][0]["names"]
    assert {"connect", "execve", "openat"} <= set(names)
    assert "nr_335" not in names  # unnamed: listed, not written
    assert seccomp["metadata"]["annotations"]["agentstory.io/omitted-syscalls"] == "nr_335"
    audit = export(record, "seccomp-json", ExportOptions(force=True,
                                                         seccomp_default="SCMP_ACT_LOG"))
    assert audit["defaultAction"] == "SCMP_ACT_LOG"


def test_bom_of_the_support_bot(records: dict[str, Any]) -> None:
    record = records[BOT]
    text = bom_json(record)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["specVersion"] == "1.6"
    comps = {(c["type"], c["name"], c.get("version")): c for c in bom["components"]}
    model = comps[("machine-learning-model", "gpt-4o-mini", None)]
    assert model["group"] == "openai"
    sdk = comps[("library", "openai", "3.57.0")]  # the version its headers sent
    assert sdk["purl"] == "pkg:pypi/openai@3.57.0"
    assert ("library", "boto3", "1.44.8") in comps
    assert ("application", "/usr/bin/sh", None) in comps
    props = {p["name"]: p["value"] for p in model["properties"]}
    assert props["agentstory:first_seen"] <= props["agentstory:last_seen"]
    assert int(props["agentstory:count"]) > 100
    services = {s["name"]: s for s in bom["services"]}
    mcp = services["crm-mcp.support.svc.cluster.local:8000"]
    assert mcp["endpoints"] == ["http://crm-mcp.support.svc.cluster.local:8000/mcp"]
    assert {"lookup_customer", "reply_ticket"} <= {s["name"] for s in mcp["services"]}
    assert services["api.openai.com"]["group"] == "llm-api"
    assert services["query_db"]["group"] == "tool"
    connectors = [s for s in bom["services"] if s.get("group") == "data-connector"]
    assert any("acme-ticket-attachments" in s["name"] for s in connectors)
    # the profiles topic carries the same BOM, and the same record gives the same BOM
    assert record["bom"] == bom
    assert json.loads(bom_json(record))["serialNumber"] == bom["serialNumber"]


def test_cli_render(records: dict[str, Any]) -> None:
    record = records[BOT]
    assert render(record, "export", "networkpolicy", force=True).startswith(
        "apiVersion: networking.k8s.io/v1")
    assert json.loads(render(record, "export", "seccomp-json", force=True))["syscalls"]
    sel = render(record, "export", "cilium", force=True, selector={"app": "bot", "tier": "a"})
    assert "tier: a" in sel
    assert json.loads(render(record, "bom", None))["metadata"]["component"]["name"] == BOT
    with pytest.raises(NotEnforceReady):
        render(record, "export", "cilium")
    with pytest.raises(KeyError, match="unknown format"):
        export(record, "kyverno", FORCE)
    assert version("cyclonedx-python-lib").startswith("11.")


def test_the_enforcers_policy_is_an_export_format_in_audit_mode(records: dict[str, Any]
                                                                ) -> None:
    """``profiles export AGENT --format agentstory``: what ``agentstory enforce`` applies,
    parsed by the enforcer itself; audit mode, so no enforce-ready check."""
    from collectors.enforce.policy import parse_policy

    policy = parse_policy(export(records[BOT], "agentstory"))
    assert policy.mode == "audit"
    assert "api.openai.com" in {d.name for d in policy.domains}
