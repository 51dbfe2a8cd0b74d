"""The runtime inventory: what each event kind adds, bounds, state round trip, odd data."""

from __future__ import annotations

from typing import Any

from models.exports.facts import policy_facts
from models.inventory import Inventory, parse_user_agent
from models.profile import AgentProfile
from streams.events import Envelope, Proc

T = 1_767_225_600 * 10**9


def ev(kind: str, data: dict[str, Any], ts: int = T, source: str = "l7",
       proc: Proc | None = None) -> Envelope:
    return Envelope(kind, ts, "n1", source, data, proc=proc)


def test_user_agents() -> None:
    assert parse_user_agent("Anthropic/Python 2.14.0") == [("Anthropic", "2.14.0")]
    assert parse_user_agent("python-httpx/0.28.1") == [("python-httpx", "0.28.1")]
    assert parse_user_agent("curl/8.5.0 extra") == [("curl", "8.5.0")]
    assert parse_user_agent("") == [] and parse_user_agent("Mozilla") == []


def test_sdk_from_stainless_header_behind_a_framework_user_agent() -> None:
    inv = Inventory()
    headers = {"user-agent": "pydantic-ai/1.2.0", "x-stainless-package-version": "1.99.1",
               "x-stainless-lang": "python", "x-stainless-runtime": "CPython",
               "x-stainless-runtime-version": "3.11.7"}
    inv.observe(ev("http.request", {"host": "llm.local:8443", "headers": headers}))
    inv.observe(ev("llm.request", {"provider": "openai", "model": "gpt-4o",
                                   "host": "llm.local:8443"}, T + 1))
    sdk = inv.items["sdk"]
    assert set(sdk) == {"pydantic-ai/1.2.0", "openai/1.99.1"}
    assert sdk["openai/1.99.1"][3]["runtime"] == "CPython 3.11.7"
    assert sdk["openai/1.99.1"][2] == 1


def test_connectors_destinations_bedrock_and_times() -> None:
    inv = Inventory()
    for i in range(3):
        inv.observe(ev("net.connect", {"dst_addr": "10.0.0.5", "dst_port": 5432,
                                       "protocol": "tcp", "domain": "pg.data.svc.cluster.local",
                                       "result": 0}, T + i, "kernel"))
    inv.observe(ev("net.connect", {"dst_addr": "10.0.0.9", "dst_port": 443, "result": -111},
                   T, "kernel"))  # refused: nothing used
    inv.observe(ev("cloud.api", {
        "service": "bedrock", "action": "InvokeModel", "user_agent": "Boto3/1.40.0 Botocore/1.40.0",
        "resources": [{"arn": "arn:aws:bedrock:us-east-1::foundation-model/"
                              "anthropic.claude-3-haiku-20240307-v1:0"}]}, T, "cloud"))
    first, last, count, props = inv.items["connector"]["postgresql pg.data.svc.cluster.local:5432"]
    assert (first, last, count, props["protocol"]) == (T, T + 2, 3, "postgresql")
    assert list(inv.items["destination"]) == ["tcp/pg.data.svc.cluster.local:5432"]
    assert "bedrock:anthropic.claude-3-haiku-20240307-v1:0" in inv.items["model"]
    assert "boto3/1.40.0" in inv.items["sdk"]


def test_bounded_and_round_trip() -> None:
    inv = Inventory(max_items=4)
    for i in range(10):
        inv.observe(ev("process.exec", {"filename": f"/usr/bin/tool{i}"}, T + i, "kernel",
                       Proc(pid=1)))
    assert len(inv.items["executable"]) == 4 and inv.evicted["executable"] == 6
    assert "/usr/bin/tool9" in inv.items["executable"]  # the least recently seen went
    again = Inventory.from_dict(inv.to_dict(), 4)
    assert again.items == inv.items and again.evicted == inv.evicted


def test_odd_data_yields_less_never_an_error() -> None:
    inv = Inventory()
    for kind, data in [("llm.request", {"tools": 5}), ("http.request", {"headers": "x"}),
                       ("net.connect", {"dst_port": "x"}), ("syscall.profile", {"syscalls": 3}),
                       ("mcp.call", {"host": 3, "tools": None}), ("cloud.api", {"resources": 1})]:
        inv.observe(ev(kind, data))
    assert "executable" not in inv.items


def test_policy_facts_keep_only_what_the_profile_learned() -> None:
    profile = AgentProfile("shop/Deployment/bot")
    inv = Inventory()
    learned = ev("net.connect", {"dst_addr": "10.0.0.5", "dst_port": 443, "result": 0,
                                 "domain": "api.openai.com"}, T, "kernel")
    new = ev("net.connect", {"dst_addr": "10.6.6.6", "dst_port": 443, "result": 0,
                             "domain": "evil.example"}, T + 1, "kernel")
    calls = ev("syscall.profile", {"syscalls": {"read": 3, "ptrace": 1}}, T, "kernel")
    profile.learn(learned)
    profile.learn(ev("syscall.profile", {"syscalls": {"read": 3}}, T, "kernel"))
    for e in (learned, new, calls):
        inv.observe(e)
    facts = policy_facts(profile, inv)
    assert facts["syscalls"] == ["read"]
    assert [d["domain"] for d in facts["destinations"]] == ["api.openai.com"]
    assert {x["what"] for x in facts["excluded"]} == {"syscall ptrace",
                                                     "tcp/evil.example:443"}
