"""What an agent really uses, as seen on the wire and in the kernel: its runtime inventory.

The baseline (``models.profile``) keeps generalized values to judge novelty; an inventory
keeps the concrete things an auditor and a policy need: the models called and through
which endpoint, the SDKs and their versions from their own request headers (``User-Agent``,
``X-Stainless-Package-Version``), tools offered and called, MCP servers by endpoint,
executables run, data connectors by endpoint and protocol, network destinations (name,
addresses, port) and syscalls. Each item carries first/last seen (event time) and a count.

It sees every event at arrival, flagged or not (a BOM lists what ran; a policy export
keeps only what the baseline *learned*, see ``models.exports.facts``). Bounded per kind
(the least recently seen item is dropped, counted). Pure: no IO, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from models.features import canonical_exe, registrable_domain
from streams.events import Envelope

__all__ = ["CONNECTOR_PORTS", "KINDS", "Inventory", "parse_user_agent", "split_host"]

KINDS = ("model", "sdk", "tool", "mcp_server", "llm_endpoint", "executable", "connector",
         "destination", "syscall", "stainless")

# Well-known ports of data stores an agent reads or writes (databases, vector stores,
# caches, queues): a connection to one is a data connector in the BOM.
CONNECTOR_PORTS = {
    5432: "postgresql", 3306: "mysql", 1433: "mssql", 1521: "oracle", 6379: "redis",
    11211: "memcached", 27017: "mongodb", 9042: "cassandra", 7687: "neo4j", 8123: "clickhouse",
    9200: "elasticsearch", 6333: "qdrant", 6334: "qdrant", 19530: "milvus", 8529: "arangodb",
    5672: "amqp", 9092: "kafka", 4222: "nats",
}
# Hosted data services by registrable domain (or a host marker), reached over HTTPS.
CONNECTOR_DOMAINS = {
    "pinecone.io": "pinecone", "weaviate.network": "weaviate", "weaviate.cloud": "weaviate",
    "qdrant.io": "qdrant", "zilliz.com": "milvus", "supabase.co": "supabase",
    "snowflakecomputing.com": "snowflake", "mongodb.net": "mongodb",
    "elastic-cloud.com": "elasticsearch", "googleapis.com": "", "windows.net": "",
}
# Cloud API services whose calls are data access (object stores, databases, search).
CLOUD_CONNECTORS = {
    "s3": "s3", "dynamodb": "dynamodb", "rds-data": "rds-data", "redshift-data": "redshift",
    "kendra": "kendra", "opensearch": "opensearch", "es": "opensearch", "athena": "athena",
}
_UA_TOKEN = re.compile(r"([A-Za-z][\w.+-]*)/(?:(?:Python|JS|Node|Go|Java)\s+)?v?(\d[\w.+-]*)")
_MAX_LIST = 16  # addresses per destination, tools per MCP server


def parse_user_agent(ua: str) -> list[tuple[str, str]]:
    """``name/version`` products of a User-Agent, SDK first.

    >>> parse_user_agent("OpenAI/Python 3.57.0")
    [('OpenAI', '3.57.0')]
    >>> parse_user_agent("Boto3/1.44.8 md/Botocore#1.44.8 ua/2.1 os/linux#6.18 Botocore/1.44.8")
    [('Boto3', '1.44.8'), ('Botocore', '1.44.8')]
    """
    out: list[tuple[str, str]] = []
    for token in ua.split():
        if token.startswith(("md/", "ua/", "os/", "lang/", "cfg/", "m/", "api/", "exec-env/")):
            continue  # botocore's metadata fields, not products
        m = _UA_TOKEN.fullmatch(token)
        if m is None and out == [] and " " in ua:  # "OpenAI/Python 3.57.0": one product
            m = _UA_TOKEN.match(ua)
            if m is not None:
                return [(m.group(1), m.group(2))]
        if m is not None:
            out.append((m.group(1), m.group(2)))
    return out


def split_host(host: str) -> tuple[str, int | None]:
    """``name:port`` → (name, port); a bare name → (name, None)."""
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and "]" not in port:
        return name.strip("[]"), int(port)
    return host, None


class Inventory:
    """Items per kind: ``key → [first_ns, last_ns, count, props]``.

    Examples
    --------
    >>> from streams.events import Envelope
    >>> inv = Inventory()
    >>> inv.observe(Envelope("llm.request", 5, "n", "l7",
    ...                      {"provider": "openai", "model": "gpt-4o-mini",
    ...                       "host": "api.openai.com", "tools": ["query_db"]}))
    >>> sorted(inv.items["model"]), sorted(inv.items["tool"])
    (['openai:gpt-4o-mini'], ['query_db'])
    """

    __slots__ = ("evicted", "items", "max_items")

    def __init__(self, max_items: int = 256) -> None:
        self.max_items = max_items
        self.items: dict[str, dict[str, list[Any]]] = {}
        self.evicted: dict[str, int] = {}

    def _touch(self, kind: str, key: str, ts: int, n: int = 1) -> dict[str, Any]:
        """The item's props, its times and count updated (created if new)."""
        table = self.items.setdefault(kind, {})
        item = table.get(key)
        if item is None:
            if len(table) >= self.max_items:
                oldest = min(table, key=lambda k: table[k][1])
                del table[oldest]
                self.evicted[kind] = self.evicted.get(kind, 0) + 1
            item = table[key] = [ts, ts, 0, {}]
        item[0] = min(item[0], ts)
        item[1] = max(item[1], ts)
        item[2] += n
        props: dict[str, Any] = item[3]
        return props

    def observe(self, event: Envelope) -> None:
        """Add what the event shows; odd data yields less, never an error."""
        handler = _HANDLERS.get(event.kind)
        if handler is None:
            return
        try:
            handler(self, event, event.data)
        except (TypeError, AttributeError, ValueError):
            return

    # -- the event kinds -------------------------------------------------------------
    def _llm_request(self, e: Envelope, d: Mapping[str, Any]) -> None:
        provider, model = str(d.get("provider") or "?"), str(d.get("model") or "?")
        props = self._touch("model", f"{provider}:{model}", e.ts)
        props.update(provider=provider, model=model)
        if d.get("api"):
            props["api"] = str(d["api"])
        host = str(d.get("host") or "")
        st = self.items.get("stainless", {}).get(host) if host else None
        if st is not None:
            ver = str(st[3].get("version"))
            key = f"{provider}/{ver}"
            known = key in self.items.get("sdk", {})
            sdk = self._touch("sdk", key, e.ts, 0 if known else 1)
            sdk.setdefault("name", provider)
            sdk.update(version=ver, stainless_version=ver,
                       **{k: v for k, v in st[3].items() if k in ("lang", "runtime") and v})
            _evidence(sdk, "x-stainless-package-version")
            sdk.setdefault("hosts", [host] if host else [])
        if host:
            ep = self._touch("llm_endpoint", host, e.ts)
            ep.update(provider=provider, path=str(d.get("path") or ""))
            ep.setdefault("models", [])
            if model not in ep["models"] and len(ep["models"]) < _MAX_LIST:
                ep["models"].append(model)
        if e.kind == "llm.request":
            for name in (d.get("tools") or [])[:64]:
                t = self._touch("tool", str(name), e.ts, 0)
                t["offered"] = t.get("offered", 0) + 1

    def _tool_call(self, e: Envelope, d: Mapping[str, Any]) -> None:
        tool = str(d.get("tool") or "")
        if not tool:
            return
        props = self._touch("tool", tool, e.ts)  # count: calls; offers apart
        props["called"] = props.get("called", 0) + 1
        if d.get("mcp_server"):
            props["mcp_server"] = str(d["mcp_server"])
        if d.get("provider"):
            props["via"] = str(d["provider"])

    def _mcp(self, e: Envelope, d: Mapping[str, Any]) -> None:
        host = str(d.get("host") or "")
        if not host:
            return
        conn = d.get("conn")
        conn = conn if isinstance(conn, Mapping) else {}
        props = self._touch("mcp_server", host, e.ts, 1 if e.kind == "mcp.call" else 0)
        scheme = "https" if conn.get("tls") else "http"
        props["endpoint"] = f"{scheme}://{host}{d.get('path') or ''}"
        props.setdefault("tools", [])
        names = list(d.get("tools") or [])
        if d.get("method") == "tools/call" and d.get("tool"):
            names.append(d["tool"])
            t = self._touch("tool", str(d["tool"]), e.ts, 1 if e.kind == "mcp.call" else 0)
            t["mcp_server"] = host
            if e.kind == "mcp.call":
                t["mcp_calls"] = t.get("mcp_calls", 0) + 1
        for name in names:
            if str(name) not in props["tools"] and len(props["tools"]) < _MAX_LIST:
                props["tools"].append(str(name))
        info = d.get("server_info")
        if isinstance(info, Mapping):  # initialize result, when the collector passes it
            props.update({k: str(v) for k, v in info.items() if k in ("name", "version")})

    def _http_request(self, e: Envelope, d: Mapping[str, Any]) -> None:
        headers = d.get("headers")
        if not isinstance(headers, Mapping):
            return
        ua = str(headers.get("user-agent") or "")
        stainless = str(headers.get("x-stainless-package-version") or "")
        host = split_host(str(d.get("host") or ""))[0]
        for name, ver in parse_user_agent(ua):
            props = self._touch("sdk", f"{name.lower()}/{ver}", e.ts)
            props.update(name=name, version=ver)
            _evidence(props, "user-agent")
            hosts = props.setdefault("hosts", [])
            if host and host not in hosts and len(hosts) < _MAX_LIST:
                hosts.append(host)
        if stainless and d.get("host"):
            # Stainless-generated SDKs (openai, anthropic, …) send their own version even
            # when a framework replaces the User-Agent; which SDK it is, the LLM request on
            # the same host says (see _llm_request).
            st = self._touch("stainless", str(d["host"]), e.ts)
            st.update(version=stainless, lang=str(headers.get("x-stainless-lang") or ""))
            if headers.get("x-stainless-runtime-version"):
                st["runtime"] = (f"{headers.get('x-stainless-runtime') or ''} "
                                 f"{headers['x-stainless-runtime-version']}").strip()
        if host:
            dom = registrable_domain(host)
            service = CONNECTOR_DOMAINS.get(dom)
            if service is None and ".s3." in f".{host}" and dom == "amazonaws.com":
                service = "s3"
            elif host.endswith("storage.googleapis.com"):
                service = "gcs"
            elif host.endswith("blob.core.windows.net"):
                service = "azure-blob"
            if service:
                props = self._touch("connector", f"{service} https://{host}", e.ts)
                props.update(protocol=service, endpoint=f"https://{host}", via="l7")

    def _connect(self, e: Envelope, d: Mapping[str, Any]) -> None:
        if d.get("unix_path") or not d.get("dst_port"):
            return
        result = d.get("result", 0)
        if isinstance(result, int) and result < 0:
            return  # refused or failed: not something the agent uses
        proto, port = str(d.get("protocol") or "tcp"), int(d["dst_port"])
        addr = str(d.get("dst_addr") or "")
        domain = str(d.get("domain") or "").rstrip(".").lower()
        target = domain or addr
        if not target:
            return
        n = max(int(d.get("count") or 1), 1)
        props = self._touch("destination", f"{proto}/{target}:{port}", e.ts, n)
        props.update(protocol=proto, port=port)
        if domain:
            props["domain"] = domain
        addrs = props.setdefault("addrs", [])
        if addr and addr not in addrs and len(addrs) < _MAX_LIST:
            addrs.append(addr)
        service = CONNECTOR_PORTS.get(port)
        if service:
            c = self._touch("connector", f"{service} {target}:{port}", e.ts, n)
            c.update(protocol=service, endpoint=f"{service}://{target}:{port}", via="kernel")

    def _exec(self, e: Envelope, d: Mapping[str, Any]) -> None:
        exe = canonical_exe((e.proc.exe if e.proc else "") or str(d.get("filename") or ""))
        if exe:
            props = self._touch("executable", exe, e.ts)
            if d.get("parent_comm"):
                props["parent"] = str(d["parent_comm"])

    def _syscalls(self, e: Envelope, d: Mapping[str, Any]) -> None:
        calls = d.get("syscalls")
        if isinstance(calls, Mapping):
            for name, count in calls.items():
                self._touch("syscall", str(name), e.ts, int(count) if isinstance(count, int)
                            else 1)

    def _packages(self, e: Envelope, d: Mapping[str, Any]) -> None:
        """Installed distributions read from the process's root (collectors.packages)."""
        for pkg in (d.get("packages") or [])[:64]:
            if isinstance(pkg, Mapping) and pkg.get("name") and pkg.get("version"):
                name, ver = str(pkg["name"]), str(pkg["version"])
                props = self._touch("sdk", f"{name.lower()}/{ver}", e.ts)
                props.update(name=name, version=ver, lang="python")
                _evidence(props, "package metadata")
                if pkg.get("path"):
                    props["installed"] = str(pkg["path"])

    def _cloud(self, e: Envelope, d: Mapping[str, Any]) -> None:
        service, action = str(d.get("service") or ""), str(d.get("action") or "")
        for name, ver in parse_user_agent(str(d.get("user_agent") or ""))[:2]:
            props = self._touch("sdk", f"{name.lower()}/{ver}", e.ts)
            props.update(name=name, version=ver)
            _evidence(props, "cloudtrail user agent")
        if service.startswith("bedrock"):
            for model in _bedrock_models(d):
                props = self._touch("model", f"bedrock:{model}", e.ts)
                props.update(provider="bedrock", model=model, api=f"{service}:{action}",
                             via="cloudtrail")
        kind = CLOUD_CONNECTORS.get(service)
        if kind:
            for res in (d.get("resources") or [])[:8]:
                arn = str(res.get("arn") or "") if isinstance(res, Mapping) else ""
                if not arn:
                    continue
                name = arn.split(":", 5)[-1].split("/", 1)[0] if service == "s3" else arn
                props = self._touch("connector", f"{kind} {name}", e.ts)
                props.update(protocol=kind, endpoint=name, via="cloudtrail")
                actions = props.setdefault("actions", [])
                if action not in actions and len(actions) < _MAX_LIST:
                    actions.append(action)

    # -- state -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"items": self.items}
        if self.evicted:
            doc["evicted"] = self.evicted
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None, max_items: int = 256) -> Inventory:
        inv = cls(max_items)
        if doc:
            inv.items = {k: {kk: list(v) for kk, v in t.items()}
                         for k, t in (doc.get("items") or {}).items()}
            inv.evicted = dict(doc.get("evicted") or {})
        return inv


def _evidence(props: dict[str, Any], source: str) -> None:
    """Which observations named this item (header, metadata, CloudTrail)."""
    sources = props.setdefault("evidence", [])
    if source not in sources:
        sources.append(source)


def _bedrock_models(d: Mapping[str, Any]) -> list[str]:
    """Model ids of a Bedrock call: its foundation-model / inference-profile resources, or
    the modelId request parameter."""
    out = []
    for res in d.get("resources") or []:
        arn = str(res.get("arn") or "") if isinstance(res, Mapping) else ""
        if ":bedrock:" in arn and "/" in arn:
            out.append(arn.rsplit("/", 1)[1])
    params = d.get("params") or {}
    if not out and isinstance(params, Mapping) and params.get("modelId"):
        out.append(str(params["modelId"]).rsplit("/", 1)[-1])
    return out


_HANDLERS = {
    "llm.request": Inventory._llm_request, "llm.count_tokens": Inventory._llm_request,
    "llm.tool_call": Inventory._tool_call, "mcp.call": Inventory._mcp,
    "mcp.result": Inventory._mcp, "http.request": Inventory._http_request,
    "net.connect": Inventory._connect, "process.exec": Inventory._exec,
    "syscall.profile": Inventory._syscalls, "cloud.api": Inventory._cloud,
    "process.packages": Inventory._packages,
}
