"""An agent's runtime AI-BOM as CycloneDX 1.6, built and validated with cyclonedx-python-lib.

From the profile record's ``inventory`` (what was observed, not what an image declares):

- ``machine-learning-model`` components: each provider's model id the agent called
  (L7), Bedrock models (CloudTrail);
- ``library`` components: SDKs and HTTP clients by name and version, from their own request
  headers (``User-Agent``, ``X-Stainless-Package-Version``), with a ``pkg:pypi`` purl when the
  client says it is Python;
- ``application`` components: executables the agent ran (its tools' programs);
- services: LLM API endpoints, MCP servers (endpoint, their tools nested), tools the model
  was offered or called, data connectors (databases, vector and object stores) by endpoint
  and protocol.

Every component and service carries ``agentstory:first_seen`` / ``last_seen`` / ``count``
properties (event time). The serial number and timestamp derive from the agent and its
last event, so the same observations give the same BOM.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from cyclonedx.model import Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.service import Service
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

__all__ = ["InvalidBom", "bom_dict", "bom_json", "build_bom"]

# User-Agent product → PyPI distribution (lowercased product names).
PYPI_NAMES = {
    "openai": "openai", "anthropic": "anthropic", "boto3": "boto3", "botocore": "botocore",
    "python-httpx": "httpx", "python-requests": "requests", "aiohttp": "aiohttp",
    "google-genai": "google-genai", "mistralai": "mistralai", "cohere": "cohere",
    "groq": "groq", "langchain": "langchain", "litellm": "litellm", "pydantic-ai": "pydantic-ai",
}
_NS = uuid.UUID("5b0e1c43-52a4-4f5e-9c39-6a2f1f0a7d11")  # agentstory BOM serial namespace


class InvalidBom(ValueError):
    """The BOM failed the CycloneDX 1.6 JSON schema (a bug here, never the input's)."""


def _props(row: Mapping[str, Any], *extra: tuple[str, Any]) -> list[Property]:
    out = [Property(name="agentstory:first_seen", value=str(row["first_seen"])),
           Property(name="agentstory:last_seen", value=str(row["last_seen"])),
           Property(name="agentstory:count", value=str(row["count"]))]
    out += [Property(name=f"agentstory:{k}", value=str(v)) for k, v in extra
            if v not in (None, "", [])]
    return out


def _list(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value or "")


def _models(rows: Iterable[Mapping[str, Any]]) -> list[Component]:
    return [Component(type=ComponentType.MACHINE_LEARNING_MODEL, name=str(r["model"]),
                      group=str(r["provider"]), bom_ref=f"model:{r['key']}",
                      properties=_props(r, ("provider", r["provider"]), ("api", r.get("api")),
                                        ("via", r.get("via", "l7"))))
            for r in rows]


def _sdks(rows: Iterable[Mapping[str, Any]]) -> list[Component]:
    out = []
    for r in rows:
        name, version = str(r["name"]), str(r["version"])
        pypi = PYPI_NAMES.get(name.lower())
        python = r.get("lang") == "python" or pypi is not None
        purl = PackageURL("pypi", None, pypi or name.lower(), version) if python else None
        out.append(Component(
            type=ComponentType.LIBRARY, name=pypi or name, version=version, purl=purl,
            bom_ref=f"sdk:{r['key']}",
            properties=_props(r, ("evidence", _list(r.get("evidence"))),
                              ("x_stainless_package_version", r.get("stainless_version")),
                              ("runtime", r.get("runtime")),
                              ("installed", r.get("installed")),
                              ("hosts", _list(r.get("hosts"))))))
    return out


def _executables(rows: Iterable[Mapping[str, Any]]) -> list[Component]:
    return [Component(type=ComponentType.APPLICATION, name=str(r["key"]),
                      bom_ref=f"exe:{r['key']}", properties=_props(r, ("parent", r.get("parent"))))
            for r in rows]


def _endpoint(url: str) -> list[XsUri]:
    return [XsUri(url)] if url else []


def _services(inv: Mapping[str, list[dict[str, Any]]]) -> list[Service]:
    tools = {str(r["key"]): r for r in inv.get("tool", [])}
    out = []
    for r in inv.get("llm_endpoint", []):
        out.append(Service(name=str(r["key"]), group="llm-api", bom_ref=f"llm:{r['key']}",
                           endpoints=_endpoint(f"https://{r['key']}{r.get('path', '')}"),
                           properties=_props(r, ("provider", r.get("provider")),
                                             ("models", _list(r.get("models"))))))
    nested: set[str] = set()
    for r in inv.get("mcp_server", []):
        mine = [t for name, t in tools.items() if t.get("mcp_server") == r["key"]
                or name in (r.get("tools") or [])]
        nested.update(str(t["key"]) for t in mine)
        out.append(Service(name=str(r["key"]), group="mcp-server", version=r.get("version"),
                           bom_ref=f"mcp:{r['key']}", endpoints=_endpoint(r.get("endpoint", "")),
                           properties=_props(r, ("server_name", r.get("name"))),
                           services=[_tool(t, f"mcp:{r['key']}/") for t in mine]))
    out += [_tool(t, "") for name, t in tools.items() if name not in nested]
    for r in inv.get("connector", []):
        out.append(Service(name=str(r["key"]), group="data-connector", bom_ref=f"data:{r['key']}",
                           endpoints=_endpoint(str(r.get("endpoint", "")) if "://" in
                                               str(r.get("endpoint", "")) else ""),
                           properties=_props(r, ("protocol", r.get("protocol")),
                                             ("endpoint", r.get("endpoint")),
                                             ("evidence", r.get("via")),
                                             ("actions", _list(r.get("actions"))))))
    return out


def _tool(r: Mapping[str, Any], prefix: str) -> Service:
    return Service(name=str(r["key"]), group="tool", bom_ref=f"tool:{prefix}{r['key']}",
                   properties=_props(r, ("offered", r.get("offered", 0)),
                                     ("called", r.get("called", 0) + r.get("mcp_calls", 0)),
                                     ("via", r.get("via"))))


def build_bom(record: Mapping[str, Any]) -> Bom:
    """The CycloneDX model of one agent's profile record."""
    agent = str(record["agent"])
    inv: Mapping[str, list[dict[str, Any]]] = record.get("inventory") or {}
    last = str(record.get("last_seen") or "1970-01-01T00:00:00Z")
    root = Component(type=ComponentType.APPLICATION, name=agent, bom_ref=f"agent:{agent}",
                     properties=[Property(name="agentstory:phase", value=str(record.get("phase"))),
                                 Property(name="agentstory:first_seen",
                                          value=str(record.get("first_seen"))),
                                 Property(name="agentstory:last_seen", value=last)])
    components = (_models(inv.get("model", [])) + _sdks(inv.get("sdk", []))
                  + _executables(inv.get("executable", [])))
    services = _services(inv)
    bom = Bom(components=components, services=services,
              serial_number=uuid.uuid5(_NS, f"{agent}@{last}"),
              metadata=BomMetaData(component=root, timestamp=datetime.strptime(
                  last, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)))
    bom.register_dependency(root, components)
    return bom


def bom_json(record: Mapping[str, Any]) -> str:
    """CycloneDX 1.6 JSON, checked against the 1.6 schema (raises InvalidBom)."""
    text: str = JsonV1Dot6(build_bom(record)).output_as_string()
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise InvalidBom(str(error))
    return text


def bom_dict(record: Mapping[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(bom_json(record))
    return doc
