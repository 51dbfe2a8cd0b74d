"""Synthetic agents that behave like real input-dependent ones, as wire envelopes.

Each agent is a seeded generator of ``Envelope`` objects in the shapes the collectors
emit (kernel ``process.exec``/``file.open``/``net.connect``/``net.dns``, L7
``llm.request``/``llm.tool_call``/``mcp.call``, CloudTrail ``cloud.api``), so the
profiles are exercised through ``models.features`` exactly as in production.

- ``research``: fetches pages from a Zipf(s) distribution over ``n_values`` registrable
  domains (new values keep coming: input-dependent), runs python3, reads its code, reads
  S3 objects at a steady rate.
- ``support``: a stable bot — three hosts, one model, two tools with SQL on ``orders``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from streams.events import Envelope, Pod, Proc

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
T0 = 1_790_000_000 * SECOND  # 2026-09-21, a fixed start: runs are reproducible

POD = Pod(uid="pod-1", namespace="shop", name="bot-1", agent="shop/Deployment/bot")


def exec_event(ts: int, exe: str, argv: list[str] | None = None, parent: str = "python3",
               pod: Pod = POD) -> Envelope:
    return Envelope("process.exec", ts, "node-1", "kernel",
                    {"argv": argv or [exe.rsplit("/", 1)[-1]], "filename": exe,
                     "parent_comm": parent},
                    pod=pod, proc=Proc(pid=100, ppid=1, exe=exe, start_ns=ts))


def open_event(ts: int, path: str, access: str = "read", sensitive: dict[str, str] | None = None,
               pod: Pod = POD) -> Envelope:
    data: dict[str, object] = {"path": path, "flags": ["O_RDONLY"], "access": access,
                               "create": False, "truncate": False, "result": 3, "count": 1}
    if sensitive:
        data["sensitive"] = sensitive
    return Envelope("file.open", ts, "node-1", "kernel", data, pod=pod, proc=Proc(pid=100))


def connect_event(ts: int, domain: str, addr: str = "203.0.113.7", port: int = 443,
                  pod: Pod = POD) -> Envelope:
    data: dict[str, object] = {"family": "inet", "protocol": "tcp", "result": 0, "count": 1,
                               "dst_addr": addr, "dst_port": port}
    if domain:
        data["domain"] = domain
    return Envelope("net.connect", ts, "node-1", "kernel", data, pod=pod, proc=Proc(pid=100))


def dns_event(ts: int, name: str, pod: Pod = POD) -> Envelope:
    return Envelope("net.dns", ts, "node-1", "kernel",
                    {"direction": "query", "id": 1, "questions": [{"name": name, "type": "A"}],
                     "length": 40}, pod=pod, proc=Proc(pid=100))


def llm_request(ts: int, model: str = "gpt-4o-mini", tools: tuple[str, ...] = ("get_order",),
                pod: Pod = POD) -> Envelope:
    return Envelope("llm.request", ts, "node-1", "l7",
                    {"provider": "openai", "api": "chat", "model": model, "stream": False,
                     "messages": [], "tools": list(tools), "host": "api.openai.com",
                     "system_prompt_hash": "a1b2c3d4e5f60718", "tools_hash": "0f1e2d3c4b5a6978",
                     "injection": {"score": 0.0, "indicators": [], "techniques": [],
                                   "flagged": False}},
                    pod=pod, proc=Proc(pid=100))


def tool_call(ts: int, tool: str, arguments: object, pod: Pod = POD) -> Envelope:
    return Envelope("llm.tool_call", ts, "node-1", "l7",
                    {"provider": "openai", "api": "chat", "model": "gpt-4o-mini", "tool": tool,
                     "arguments": arguments, "call_id": "call_1", "host": "api.openai.com"},
                    pod=pod, proc=Proc(pid=100))


def s3_get(ts: int, bucket: str = "shop-data", key: str = "orders/1.json",
           pod: Pod | None = POD) -> Envelope:
    return Envelope("cloud.api", ts, "cloudtrail", "cloud",
                    {"service": "s3", "action": "GetObject", "outcome": "success",
                     "principal": {"arn": "arn:aws:sts::123456789012:assumed-role/bot/x"},
                     "resources": [{"type": "AWS::S3::Object",
                                    "arn": f"arn:aws:s3:::{bucket}/{key}"}],
                     "params": {"bucket": bucket, "key": key}, "read_only": True,
                     "event_id": f"e-{ts}"},
                    pod=pod)


@dataclass
class Zipf:
    """Ranks 1..n with P(k) ∝ 1/k^s, drawn with a seeded numpy generator."""

    n: int
    s: float
    seed: int
    rng: np.random.Generator = field(init=False)
    cdf: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        weights = 1.0 / np.arange(1, self.n + 1) ** self.s
        self.cdf = np.cumsum(weights / weights.sum())

    def draw(self, k: int) -> list[int]:
        idx = np.searchsorted(self.cdf, self.rng.random(k), side="right")
        return [int(i) + 1 for i in np.minimum(idx, self.n - 1)]


def research_agent(start: int, end: int, *, n_values: int = 20_000, s: float = 1.0,
                   seed: int = 7, fetch_every: int = 30 * SECOND,
                   s3_per_minute: int = 5) -> Iterator[Envelope]:
    """Events of a research agent from ``start`` to ``end`` in event-time order."""
    zipf = Zipf(n_values, s, seed)
    rng = np.random.default_rng(seed + 1)
    fetches = (end - start) // fetch_every
    ranks = iter(zipf.draw(int(fetches) + 1))
    out: list[Envelope] = []
    for i in range(int(fetches)):
        ts = start + i * fetch_every
        domain = f"site{next(ranks)}.com"
        out.append(dns_event(ts, f"www.{domain}"))
        out.append(connect_event(ts + 1000, f"www.{domain}"))
        out.append(tool_call(ts + 2000, "fetch", {"url": f"https://www.{domain}/page"}))
        if i % 20 == 0:
            out.append(exec_event(ts + 3000, "/usr/bin/python3",
                                  ["python3", "/app/tools/summarize.py"]))
            out.append(llm_request(ts + 4000, tools=("fetch", "summarize")))
            for mod in ("/app/agent.py", "/app/tools/summarize.py", "/etc/ssl/certs/ca.pem"):
                out.append(open_event(ts + 5000, mod))
    minute = start - start % MINUTE
    while minute < end:
        for _ in range(s3_per_minute):
            ts = minute + int(rng.integers(0, MINUTE))
            if start <= ts < end:
                out.append(s3_get(ts, key=f"papers/{int(rng.integers(1, 10**6))}.pdf"))
        minute += MINUTE
    out.sort(key=lambda e: e.ts)
    yield from out


def support_agent(start: int, end: int, every: int = MINUTE) -> Iterator[Envelope]:
    """A stable bot: three hosts, one model, SQL on ``orders``, a python worker."""
    hosts = ("api.openai.com", "orders-db.shop.svc.cluster.local", "hooks.slack.com")
    ts = start
    i = 0
    while ts < end:
        yield llm_request(ts, tools=("get_order", "refund"))
        yield connect_event(ts + 1, hosts[i % 3], port=443 if i % 3 != 1 else 5432)
        yield tool_call(ts + 2, "get_order",
                        {"sql": f"SELECT * FROM orders WHERE id = {1000 + i}"})
        if i % 10 == 0:
            yield exec_event(ts + 3, "/usr/bin/python3", ["python3", "/app/worker.py"])
            yield open_event(ts + 4, "/app/worker.py")
        ts += every
        i += 1


def coder_agent(start: int, end: int, seed: int = 3,
                every: int = 20 * SECOND) -> Iterator[Envelope]:
    """A coding agent: shells, git, python, tests and compilers in a workspace whose files
    keep changing; package indexes and a code host; Anthropic as its model."""
    rng = np.random.default_rng(seed)
    tools = [("/bin/bash", ["bash", "-c", "pytest -q"]), ("/usr/bin/git", ["git", "status"]),
             ("/usr/bin/git", ["git", "commit", "-m", "x"]),
             ("/usr/bin/python3.11", ["python3", "-m", "pytest"]),
             ("/usr/bin/python3.11", ["python3", "/workspace/app/main.py"]),
             ("/usr/bin/gcc", ["gcc", "-O2", "x.c"]), ("/usr/bin/ls", ["ls", "-la"]),
             ("/usr/bin/cat", ["cat", "/workspace/README.md"])]
    hosts = ["github.com", "pypi.org", "files.pythonhosted.org", "api.anthropic.com"]
    modules = [f"/workspace/app/{m}.py" for m in ("main", "util", "db", "api", "models")]
    ts, i = start, 0
    while ts < end:
        exe, argv = tools[int(rng.integers(0, len(tools)))]
        yield exec_event(ts, exe, argv, parent="node")
        for _ in range(3):
            if rng.random() < 0.3:
                path = f"/workspace/app/gen_{int(rng.integers(0, 400))}_test.py"
            else:
                path = modules[int(rng.integers(0, len(modules)))]
            yield open_event(ts + 10, path, access="write" if rng.random() < 0.2 else "read")
        yield open_event(ts + 20, f"/usr/lib/python3.11/{['json', 'os', 'ssl', 're'][i % 4]}.py")
        host = hosts[int(rng.integers(0, len(hosts)))]
        yield dns_event(ts + 30, host)
        yield connect_event(ts + 40, host)
        if i % 3 == 0:
            yield Envelope("llm.request", ts + 50, "node-1", "l7",
                           {"provider": "anthropic", "model": "claude-sonnet-4-5",
                            "tools": ["bash", "edit", "read"], "host": "api.anthropic.com"},
                           pod=POD, proc=Proc(pid=100))
            yield tool_call(ts + 60, "bash", {"command": argv[0] + " " + " ".join(argv[1:])})
        ts += every
        i += 1


def etl_agent(start: int, end: int, seed: int = 5, every: int = 2 * SECOND) -> Iterator[Envelope]:
    """An ETL job: reads dated S3 objects and writes results, a few DynamoDB calls."""
    rng = np.random.default_rng(seed)
    ts = start
    while ts < end:
        day = (ts - T0) // DAY
        part = int(rng.integers(0, 999))
        yield s3_get(ts, bucket="raw-events", key=f"2026/09/{day:02d}/part-{part}.json")
        if rng.random() < 0.1:
            yield Envelope("cloud.api", ts + 1, "cloudtrail", "cloud",
                           {"service": "s3", "action": "PutObject", "read_only": False,
                            "resources": [{"type": "AWS::S3::Object",
                                           "arn": f"arn:aws:s3:::curated/out/{int(ts)}.parquet"}]},
                           pod=POD)
        if rng.random() < 0.05:
            yield Envelope("cloud.api", ts + 2, "cloudtrail", "cloud",
                           {"service": "dynamodb", "action": "UpdateItem",
                            "resources": [{"type": "AWS::DynamoDB::Table",
                                           "arn": "arn:aws:dynamodb:eu-west-1:1:table/jobs"}]},
                           pod=POD)
        ts += every
