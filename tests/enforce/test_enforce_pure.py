"""Policies as data (schema, addresses, names), the derivation from a profile record,
and records → envelopes: pure, no kernel."""

from __future__ import annotations

import ctypes
import ipaddress
from pathlib import Path

import pytest

from collectors.enforce.decode import RawEvent, decode
from collectors.enforce.envelopes import record_envelope
from collectors.enforce.policy import (
    PolicyError,
    always_allowed,
    load_policies,
    map_entries,
    parse_policy,
    policy_from_profile,
    wire_name,
)
from streams.events import Envelope

BASE = {"apiVersion": "agentstory/v1", "kind": "EnforcePolicy",
        "agent": "support/Deployment/support-bot", "mode": "audit"}


def test_policy_parses_rules_and_adds_loopback_unless_told() -> None:
    p = parse_policy({**BASE, "egress": {
        "domains": ["API.OpenAI.com", {"name": "*.s3.amazonaws.com", "ports": [443, 443]}],
        "cidrs": ["10.0.0.0/8", {"cidr": "fd00::/64", "ports": [5432]}]}})
    assert [(d.name, d.wildcard, d.ports) for d in p.domains] == [
        ("api.openai.com", False, ()), ("s3.amazonaws.com", True, (443,))]
    assert [str(c.network) for c in p.cidrs] == ["10.0.0.0/8", "fd00::/64", "127.0.0.0/8",
                                                  "::1/128"]
    assert p.egress and not p.exec_
    q = parse_policy({**BASE, "egress": {"loopback": False}})
    assert q.egress and q.cidrs == ()


@pytest.mark.parametrize(("change", "message"), [
    ({"mode": "block"}, "mode"),
    ({"agent": "support-bot"}, "agent"),
    ({"egress": {"cidrs": ["10.0.0.300/8"]}}, "egress/cidrs/0"),
    ({"egress": {"domains": [{"name": "a.b", "ports": list(range(1, 10))}]}}, "egress/domains/0"),
    ({"exec": {"allowed": ["python3"]}}, "exec/allowed/0"),
    ({"exec": {}}, "allowed"),
    ({"egress": {"domains": ["a..b"]}}, "label"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_policies_are_refused_saying_where(change: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy({**BASE, **change})


def test_wire_names_and_map_entries_match_the_kernel_layout() -> None:
    assert wire_name("a.B.c.") == b"\x01a\x01b\x01c"
    p = parse_policy({**BASE, "mode": "enforce", "egress": {
        "domains": [{"name": "*.example.com", "ports": [443]}], "cidrs": ["10.1.0.0/16"],
        "loopback": False}, "exec": {"allowed": ["/usr/bin/python3"]}})
    e = map_entries(p)
    assert (e.mode, e.flags) == (2, 3)
    assert e.domains == [(True, b"\x07example\x03com", (443,))]
    assert e.cidrs == [(32 + 96 + 16, b"\0" * 10 + b"\xff\xff" + bytes([10, 1, 0, 0]), ())]
    # the merged-/usr spellings the kernel may see as exec'd are allowed with it
    assert e.executables == [b"/usr/bin/python3", b"/bin/python3", b"/sbin/python3",
                             b"/usr/sbin/python3"]
    slot0 = always_allowed(["10.255.255.53"], ["fd00::2"], dns_port=53)
    assert slot0 == [(160, b"\0" * 10 + b"\xff\xff" + bytes([10, 255, 255, 53]), (53,)),
                     (160, ipaddress.ip_address("fd00::2").packed, ())]


def test_load_policies_refuses_two_for_one_agent(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("apiVersion: agentstory/v1\nkind: EnforcePolicy\nagent: a/B/c\nmode: audit\n"
                 "---\napiVersion: agentstory/v1\nkind: EnforcePolicy\nagent: a/B/c\n"
                 "mode: enforce\n")
    with pytest.raises(PolicyError, match="second policy for a/B/c"):
        load_policies([f])
    f.write_text("- {apiVersion: agentstory/v1, kind: EnforcePolicy, agent: a/B/c, mode: off}\n"
                 "- {apiVersion: agentstory/v1, kind: EnforcePolicy, agent: a/B/d, mode: audit}\n")
    assert [p.agent for p in load_policies([f])] == ["a/B/c", "a/B/d"]
    f.write_text("agent: [\n")
    with pytest.raises(PolicyError, match=r"p\.yaml"):
        load_policies([f])


def _summary(**extra: object) -> dict[str, object]:
    def dim(*values: str, distinct: int | None = None) -> dict[str, object]:
        return {"distinct": distinct or len(values),
                "top": [{"value": v, "count": 3} for v in values]}

    doc: dict[str, object] = {
        "agent": "support/Deployment/support-bot", "phase": "enforce-ready",
        "events_learned": 500, "first_seen": "2026-11-30T00:00:00Z",
        "last_seen": "2026-11-30T01:36:00Z",
        "dimensions": {"process.exe": dim("/usr/bin/python3", "/bin/sh", distinct=12),
                       "net.domain": dim("openai.com"), "net.port": dim("tcp/443"),
                       "net.ip_prefix": dim("10.1.2.0/24")}}
    doc.update(extra)
    return doc


def test_policy_from_profile_uses_learned_dimensions() -> None:
    doc = policy_from_profile(_summary())
    assert doc["mode"] == "audit"
    assert doc["egress"] == {
        "domains": [{"name": "*.openai.com", "ports": [443]},
                    {"name": "openai.com", "ports": [443]}],
        "cidrs": [{"cidr": "10.1.2.0/24", "ports": [443]}]}
    assert doc["exec"] == {"allowed": ["/bin/sh", "/usr/bin/python3"]}
    assert any("learned 12 values and its summary lists 2" in n for n in doc["notes"])
    assert parse_policy(doc).agent == "support/Deployment/support-bot"


def test_policy_from_profile_prefers_the_learned_policy_facts() -> None:
    facts = {"destinations": [
        {"domain": "api.openai.com", "addrs": ["10.1.2.3"], "port": 443, "protocol": "tcp"},
        {"domain": "", "addrs": ["10.9.9.9"], "port": 5432, "protocol": "tcp"}],
        "excluded": [{"what": "telemetry-sync.io:443", "why": "domain not learned"}]}
    doc = policy_from_profile(_summary(policy=facts), mode="enforce")
    assert doc["mode"] == "enforce"
    assert doc["egress"] == {"domains": [{"name": "api.openai.com", "ports": [443]}],
                             "cidrs": [{"cidr": "10.9.9.9/32", "ports": [5432]}]}
    assert "telemetry-sync.io" not in str(doc["egress"])


def _raw(**fields: object) -> bytes:
    ev = RawEvent()
    for name, value in fields.items():
        if name == "addr":
            ctypes.memmove(ev.addr, value, 16)  # type: ignore[arg-type]
        else:
            setattr(ev, name, value)
    return bytes(ev)


def test_records_become_envelopes_of_the_contract() -> None:
    addr = b"\0" * 10 + b"\xff\xff" + bytes([203, 0, 113, 50])
    rec = decode(_raw(kind=1, mode=2, pid=42, tid=43, ts=5, cgroup_id=7, policy=1,
                      family=2, port=443, protocol=6, addr=addr, comm=b"python3"))
    env = record_envelope(rec, node="n", pod=None, agent="a/B/c", offset_ns=100)
    assert env.kind == "enforce.blocked" and env.ts == 105
    assert env.data == {"op": "connect", "mode": "enforce", "policy_agent": "a/B/c",
                        "response": "EPERM", "reason": "destination not allowed by the "
                        "agent's policy", "cgroup_id": 7, "dst_addr": "203.0.113.50",
                        "dst_port": 443, "protocol": "tcp"}
    assert Envelope.from_dict(env.to_dict()) == env  # valid under streams/events.py
    rec = decode(_raw(kind=2, mode=1, pid=9, path=b"/usr/bin/curl", suppressed=4))
    env = record_envelope(rec, node="n", pod=None, agent="a/B/c", offset_ns=0)
    assert (env.kind, env.data["filename"], env.data["response"], env.data["suppressed_before"]
            ) == ("enforce.would_block", "/usr/bin/curl", "none (audit)", 4)
    with pytest.raises(ValueError, match="bytes"):
        decode(b"\0" * 8)
    with pytest.raises(ValueError, match="unknown"):
        decode(_raw(kind=9, mode=1))


def test_the_shipped_example_policy_validates() -> None:
    root = Path(__file__).resolve().parents[2]
    [p] = load_policies([root / "deploy" / "enforce" / "support-bot.yaml"])
    assert (p.agent, p.mode, p.egress, p.exec_) == (
        "support/Deployment/support-bot", "audit", True, False)
    assert "telemetry-sync.io" not in {d.name for d in p.domains}  # the demo's exfil host


def test_cli_check_says_what_a_policy_enforces_or_why_it_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from topologies.cli import main

    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("apiVersion: agentstory/v1\nkind: EnforcePolicy\nagent: a/Deployment/b\n"
                    "mode: enforce\negress: {domains: ['*.openai.com'], loopback: false}\n")
    bad.write_text("apiVersion: agentstory/v1\nkind: EnforcePolicy\nagent: a/Deployment/b\n"
                   "mode: block\n")
    assert main(["enforce", "check", str(good)]) == 0
    assert capsys.readouterr().out == (
        "a/Deployment/b: enforce, egress 1 domains, 0 networks, exec unrestricted\n")
    assert main(["enforce", "check", str(bad)]) == 2
    assert "mode: 'block' is not one of" in capsys.readouterr().err


def test_resolvers_come_from_resolv_conf(tmp_path: Path) -> None:
    from collectors.enforce.loader import detect_resolvers

    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch svc.cluster.local\nnameserver 10.96.0.10\n"
                    "nameserver fe80::1%eth0\nnameserver not-an-ip\noptions ndots:5\n")
    assert detect_resolvers(str(conf)) == ["10.96.0.10", "fe80::1"]
    assert detect_resolvers(str(tmp_path / "missing")) == []


def test_policy_from_the_demo_bots_real_profile_record() -> None:
    """The profile record the worker publishes (models.exports.facts, the demo's dev
    recording replayed) gives a valid policy whose egress lists what the bot learned and
    not the exfiltration host it met once."""
    from tests.models.demo_records import replay_records
    from topologies.scenarios.demo import EXFIL_HOST

    record = replay_records()["support/Deployment/support-bot"]
    doc = policy_from_profile(record)
    policy = parse_policy(doc)
    names = {d.name for d in policy.domains}
    assert "api.openai.com" in names and EXFIL_HOST not in names
    assert all(d.ports for d in policy.domains)  # each with the ports it used
    assert policy.mode == "audit"
