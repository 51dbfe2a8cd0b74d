"""Pure parts of the kernel collector, no kernel: records of every kind, DNS parsing,
sensitive paths, the repeat ledger, flags and names."""

from __future__ import annotations

import ctypes
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.kernel import decode as dec
from collectors.kernel.dedup import RepeatLedger
from collectors.kernel.dnsmsg import build_answer, build_query, parse_dns
from collectors.kernel.envelopes import (
    close_envelope,
    dns_envelope,
    net_envelope,
    open_envelope,
    open_flags,
    profile_envelope,
    resolved_addresses,
)
from collectors.kernel.sensitive import SensitivePaths
from collectors.kernel.syscall_names import parse_unistd
from streams.events import Envelope, Pod

POD = Pod(uid="0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", name="bot")


def _header(kind: int) -> dec.EventHeader:
    h = dec.EventHeader()
    h.kind, h.pid, h.tid, h.uid, h.count, h.ts, h.cgroup_id = kind, 9, 9, 0, 1, 100, 5
    h.comm = b"agent"
    return h


def _put(record: ctypes.Structure, field: str, data: bytes) -> None:
    ctypes.memmove(ctypes.addressof(record) + getattr(type(record), field).offset, data,
                   len(data))


def test_open_record_and_envelope() -> None:
    r = dec.OpenRecord()
    r.h = _header(dec.Kind.OPEN)
    r.ret, r.flags, r.dfd, r.window = -13, 0o2, -100, 7
    _put(r, "path", b"/home/a/.aws/credentials\0")
    ev = dec.decode(bytes(r))
    assert isinstance(ev, dec.OpenEvent)
    assert ev.path == "/home/a/.aws/credentials" and ev.window == 7
    env = open_envelope(ev, node="n", pod=POD, offset_ns=0,
                        sensitive=SensitivePaths.load())
    assert env.kind == "file.open" and env.data["access"] == "read_write"
    assert env.data["error"] == "EACCES"
    assert env.data["sensitive"]["rule"] == "cloud-credentials-file"
    assert Envelope.from_dict(env.to_dict()) == env


def test_net_records_connect_v4_v6_unix() -> None:
    r = dec.NetRecord()
    r.h = _header(dec.Kind.CONNECT)
    r.family, r.sotype, r.dport, r.ret = dec.AF_INET6, 1, 443, -115
    r.daddr[:] = list(ipaddress.IPv6Address("2001:db8::1").packed)
    ev = dec.decode(bytes(r))
    assert isinstance(ev, dec.NetEvent)
    env = net_envelope(ev, node="n", pod=POD, offset_ns=0, domain="api.example.com")
    assert env.data["dst_addr"] == "2001:db8::1" and env.data["dst_port"] == 443
    assert env.data["protocol"] == "tcp" and env.data["error"] == "EINPROGRESS"
    assert env.data["domain"] == "api.example.com"
    r.family, r.sotype = dec.AF_UNIX, 1
    _put(r, "unix_path", b"/var/run/docker.sock\0")
    env = net_envelope(dec.decode(bytes(r)), node="n", pod=POD, offset_ns=0)  # type: ignore[arg-type]
    assert env.data["unix_path"] == "/var/run/docker.sock"
    assert env.data["protocol"] == "unix_stream"
    r.h.kind = dec.Kind.LISTEN
    r.family, r.lport = dec.AF_INET, 8080
    env = net_envelope(dec.decode(bytes(r)), node="n", pod=POD, offset_ns=0)  # type: ignore[arg-type]
    assert env.kind == "net.listen" and env.data["local_port"] == 8080


def test_close_record() -> None:
    r = dec.CloseRecord()
    r.h = _header(dec.Kind.CLOSE)
    r.family, r.sport, r.dport, r.bytes_sent, r.bytes_received = dec.AF_INET, 5000, 443, 10, 20
    r.daddr[:4] = [93, 184, 216, 34]
    env = close_envelope(dec.decode(bytes(r)), node="n", pod=POD, offset_ns=0)  # type: ignore[arg-type]
    assert env.data["dst_addr"] == "93.184.216.34" and env.data["bytes_sent"] == 10


def test_dns_record_answer_and_resolved_addresses() -> None:
    query = build_query("llm.example.org", 1, ident=3)
    answer = build_answer(query, ["192.0.2.7", "2001:db8::7"])
    r = dec.DnsRecord()
    r.h = _header(dec.Kind.DNS)
    r.direction, r.len = 1, len(answer)
    _put(r, "payload", answer)
    ev = dec.decode(bytes(r))
    assert isinstance(ev, dec.DnsEvent) and ev.answer
    env = dns_envelope(ev, node="n", pod=POD, offset_ns=0)
    assert env.data["questions"] == [{"name": "llm.example.org", "type": "A"}]
    assert resolved_addresses(env) == [("192.0.2.7", "llm.example.org"),
                                       ("2001:db8::7", "llm.example.org")]


def test_dns_truncated_capture_is_partial_not_an_error() -> None:
    answer = build_answer(build_query("x.example.com", 28), ["2001:db8::1"])
    msg = parse_dns(answer[:-5])
    assert msg.questions == [("x.example.com", "AAAA")]
    assert msg.answers == [] and msg.error.startswith("truncated")
    assert parse_dns(b"\x00" * 5).error


def test_dns_compression_loop_is_rejected() -> None:
    evil = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    assert parse_dns(evil).error.startswith("malformed")


@given(st.binary(max_size=600))
def test_dns_parser_never_raises(raw: bytes) -> None:
    parse_dns(raw)


@given(st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,20}){0,4}", fullmatch=True),
       st.sampled_from([1, 28, 5, 16]), st.integers(0, 65535))
def test_dns_query_round_trip(name: str, qtype: int, ident: int) -> None:
    msg = parse_dns(build_query(name, qtype, ident=ident))
    assert msg.id == ident and msg.questions[0][0] == name and not msg.error


def test_sensitive_defaults_cover_the_issue_list() -> None:
    rules = SensitivePaths.load()
    expect = {
        "/var/run/secrets/kubernetes.io/serviceaccount/token": "k8s-service-account-token",
        "/root/.aws/credentials": "cloud-credentials-file",
        "/proc/1/environ": "process-environment",
        "/proc/self/environ": "process-environment",
        "/home/dev/.ssh/id_ed25519": "ssh-key",
        "/root/.kube/config": "kubeconfig",
        "/var/run/secrets/eks.amazonaws.com/serviceaccount/token":
            "cloud-workload-identity-token",
    }
    for path, rule in expect.items():
        found = rules.match(path)
        assert found is not None and found.rule == rule, path
    for path in ("/etc/hosts", "/proc/1/status", "/home/dev/.ssh/known_hosts"):
        assert rules.match(path) is None, path


def test_sensitive_rules_validate(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - patterns: [/x]\n")
    with pytest.raises(ValueError, match="without an id"):
        SensitivePaths.load(bad)
    custom = tmp_path / "ok.yaml"
    custom.write_text("rules:\n  - id: fake-token\n    level: high\n    patterns: [/tmp/*/token]\n")
    assert SensitivePaths.load(custom).match("/tmp/abc/token") is not None


def test_ledger_counts_and_bounds() -> None:
    ledger = RepeatLedger(max_entries=2)
    first = Envelope("file.open", 5, "n", "kernel", {"path": "/a", "count": 1})
    for i in range(3):
        ledger.opened(("k", i), first)
    assert len(ledger) == 2 and ledger.evicted == 1
    # evicted first envelope: the fallback stands in, marked
    fallback = Envelope("file.open", 1, "n", "kernel", {"path": "/a", "count": 1})
    out = ledger.closed(("k", 0), total=3, ts=50, fallback=fallback)
    assert out is not None and out.data["count"] == 2 and out.data["first_missing"]
    out = ledger.closed(("k", 1), total=4, ts=50)
    assert out is not None and out.ts == 50 and out.data["count"] == 3
    assert ledger.closed(("k", 2), total=1, ts=50) is None
    assert len(ledger) == 0


def test_flags_and_names() -> None:
    assert open_flags(0) == ["O_RDONLY"]
    assert open_flags(0o1102) == ["O_RDWR", "O_CREAT", "O_TRUNC"]
    assert parse_unistd("#define __NR_openat 257\nnoise\n") == {257: "openat"}


def test_profile_envelope() -> None:
    env = profile_envelope(5, {"read": 3, "openat": 1}, node="n", pod=POD, ts=1, window_ns=9)
    assert env.data["distinct"] == 2 and env.data["total"] == 4
    assert list(env.data["syscalls"]) == ["openat", "read"]


@pytest.mark.parametrize("module", [
    "collectors.kernel.decode", "collectors.kernel.dnsmsg", "collectors.kernel.sensitive",
    "collectors.kernel.dedup", "collectors.kernel.envelopes", "collectors.kernel.syscall_names",
    "collectors.kernel.paths", "collectors.kernel.dnsnames",
])
def test_doctests(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0


def test_stats_reporter_prometheus_and_envelope() -> None:
    from prometheus_client import generate_latest

    from collectors.kernel.metrics import StatsReporter
    from collectors.publish import FramePublisher

    class FakeCollector:
        stats = {"emitted": 7, "lost": 2, "deduplicated": 5, "pending_attribution": 1}

    publisher = FramePublisher("127.0.0.1:1")
    publisher.stats.published_events, publisher.stats.dropped_spool_full = 4, 1
    reporter = StatsReporter(FakeCollector(), publisher, node="n1")
    text = generate_latest(reporter.registry()).decode()
    assert "agentstory_kernel_collector_lost_total 2.0" in text
    assert "agentstory_kernel_collector_published_total 4.0" in text
    assert "agentstory_kernel_collector_failed_total 1.0" in text
    assert "agentstory_kernel_collector_pending_attribution 1.0" in text
    env = reporter.stats_envelope()
    assert env.kind == "collector.stats" and env.key == "node/n1"
    assert env.data["counters"]["deduplicated"] == 5
    assert Envelope.from_dict(env.to_dict()) == env


# -- paths, sensitive classes, file changes ----------------------------------------------
@pytest.mark.parametrize(("given", "expected"), [
    ("//etc//shadow", "/etc/shadow"),
    ("/etc/./ssh/../shadow", "/etc/shadow"),
    ("/proc/self/root/etc/shadow", "/etc/shadow"),
    ("/proc/thread-self/root/proc/1/root/etc/shadow", "/etc/shadow"),
    ("/proc/42/task/43/root//etc/shadow", "/etc/shadow"),
    ("/proc/self/rootfs/x", "/proc/self/rootfs/x"),
    ("/", "/"),
])
def test_normalize(given: str, expected: str) -> None:
    from collectors.kernel.paths import normalize

    assert normalize(given) == expected


def test_resolver_counts_and_proc_spellings() -> None:
    from collectors.kernel.paths import AT_FDCWD, PathResolver

    proc_cwd = {7: "/srv/app"}
    proc_fds = {(7, 3): "/home/u/.ssh"}
    r = PathResolver(cwd_of=lambda pid: proc_cwd.get(pid, ""),
                     fd_path_of=lambda pid, fd: proc_fds.get((pid, fd), ""))
    # unknown to the events: /proc, counted
    assert r.resolve(7, 1, AT_FDCWD, "a/../b") == "/srv/app/b"
    assert r.resolve(7, 1, 3, "id_rsa") == "/home/u/.ssh/id_rsa"
    assert r.counts["proc_fallback"] == 2
    # /proc/<pid>/cwd and /proc/self/fd/<n> spellings of another base
    r.chdir(9, 1, "/root")
    assert r.resolve(7, 1, AT_FDCWD, "/proc/9/cwd/.kube/config") == "/root/.kube/config"
    r.opened(7, 5, "/var/run/secrets/kubernetes.io/serviceaccount")
    assert (r.resolve(7, 1, AT_FDCWD, "/proc/self/fd/5/token")
            == "/var/run/secrets/kubernetes.io/serviceaccount/token")
    # fchdir to a known directory fd
    r.chdir(7, 1, "", 5)
    assert r.resolve(7, 1, AT_FDCWD, "ca.crt").endswith("serviceaccount/ca.crt")
    assert r.resolve(8, 0, AT_FDCWD, "x") is None and r.counts["unresolved"] == 1
    r.exited(7)
    assert r.cwd(7, 0) == "/srv/app"  # from /proc again


def test_sensitive_extended_list_read_and_write() -> None:
    rules = SensitivePaths.load()
    reads = {
        "/home/a/.netrc": ("credential-file", "credential"),
        "/root/.bash_history": ("shell-history", "history"),
        "/home/a/.git-credentials": ("credential-file", "credential"),
        "/proc/1/environ": ("process-environment", "environ"),
        "/etc/shadow": ("shadow", "system"),
        "/root/.ssh/id_ed25519": ("ssh-key", "ssh"),
    }
    for path, (rule, klass) in reads.items():
        found = rules.match(path)
        assert found is not None and (found.rule, found.category) == (rule, klass), path
    writes = ["/etc/cron.d/evil", "/etc/ld.so.preload", "/etc/systemd/system/x.service",
              "/root/.ssh/authorized_keys", "/home/a/.bashrc", "/etc/sudoers.d/x",
              "/var/spool/cron/crontabs/root"]
    for path in writes:
        assert rules.match(path) is None, path  # every process reads them
        found = rules.match(path, write=True)
        assert found is not None and found.category == "persistence", path
    with pytest.raises(ValueError, match="class"):
        SensitivePaths([{"id": "x", "class": "nope", "patterns": ["/x"]}])


def test_relative_open_envelope_and_write() -> None:
    from collectors.kernel.envelopes import write_envelope

    r = dec.OpenRecord()
    r.h = _header(dec.Kind.OPEN)
    r.ret, r.flags, r.dfd, r.mode = 3, 0o1101, -100, 0o644
    _put(r, "path", b"../etc/ld.so.preload\0")
    ev = dec.decode(bytes(r))
    assert isinstance(ev, dec.OpenEvent) and ev.mode == 0o644
    rules = SensitivePaths.load()
    env = open_envelope(ev, node="n", pod=POD, offset_ns=0, sensitive=rules,
                        path="/etc/ld.so.preload")
    assert env.data["path"] == "/etc/ld.so.preload"
    assert env.data["raw_path"] == "../etc/ld.so.preload" and env.data["mode"] == 0o644
    assert env.data["sensitive"]["class"] == "persistence"
    written = write_envelope(env)
    assert written is not None and written.kind == "file.write"
    assert written.data["path"] == "/etc/ld.so.preload"
    unresolved = open_envelope(ev, node="n", pod=POD, offset_ns=0, sensitive=rules)
    assert unresolved.data["path"] == "../etc/ld.so.preload"
    assert unresolved.data["path_unresolved"] is True
    assert "sensitive" not in unresolved.data and write_envelope(unresolved) is None


def test_fileop_record_and_envelopes() -> None:
    from collectors.kernel.envelopes import fileop_envelopes

    r = dec.FileOpRecord()
    r.h = _header(dec.Kind.FILEOP)
    r.op, r.ret, r.dfd, r.dfd2 = int(dec.FileOp.RENAME), 0, -100, -100
    _put(r, "path", b"/tmp/x\0")
    _put(r, "path2", b"/etc/cron.d/x\0")
    ev = dec.decode(bytes(r))
    assert isinstance(ev, dec.FileOpEvent) and ev.path2 == "/etc/cron.d/x"
    rename, write = fileop_envelopes(ev, node="n", pod=POD, offset_ns=0,
                                     sensitive=SensitivePaths.load(), path="/tmp/x",
                                     new_path="/etc/cron.d/x")
    assert rename.kind == "file.rename" and rename.data["new_path"] == "/etc/cron.d/x"
    assert rename.data["sensitive"]["rule"] == "scheduled-task"
    assert write.kind == "file.write" and write.data["via"] == "rename"
    chmod = dec.FileOpEvent(ev.header, int(dec.FileOp.CHMOD), 0, -100, "a", mode=0o100755)
    (env,) = fileop_envelopes(chmod, node="n", pod=POD, offset_ns=0, path="/w/a",
                              mode_before=0o644)
    assert env.data["mode_text"] == "0755" and env.data["exec_bit_added"] is True
    (env,) = fileop_envelopes(chmod, node="n", pod=POD, offset_ns=0, path="/w/a",
                              mode_before=0o700)
    assert env.data["exec_bit_added"] is False
    for e in (rename, write, env):
        assert Envelope.from_dict(e.to_dict()) == e


def test_dns_parsed_with_dnspython_cname_chain_and_ttl() -> None:
    import dns.message
    import dns.rrset

    query = dns.message.make_query("www.example.com", "A")
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text("www.example.com.", 300, "IN", "CNAME",
                                            "edge.cdn.example.net."))
    reply.answer.append(dns.rrset.from_text("edge.cdn.example.net.", 20, "IN", "A",
                                            "192.0.2.10", "192.0.2.11"))
    wire = reply.to_wire()
    msg = parse_dns(wire)
    assert msg.is_response and msg.rcode == "NOERROR" and not msg.error
    assert sorted(msg.answers) == [("edge.cdn.example.net", "A", "192.0.2.10", 20),
                                   ("edge.cdn.example.net", "A", "192.0.2.11", 20),
                                   ("www.example.com", "CNAME", "edge.cdn.example.net", 300)]
    again = parse_dns(b"\x12\x34" + wire[2:])  # memoised, with its own id
    assert again.id == 0x1234 and again.answers == msg.answers


def test_pod_dns_names_are_bounded_and_per_scope() -> None:
    from collectors.kernel.dnsnames import NS, PodDnsNames

    names = PodDnsNames(max_entries=2, grace_s=1)
    names.learn("p", "10.0.0.1", "a", ts=0, ttl_s=0)
    assert names.name_for("p", "10.0.0.1", ts=NS) == "a"  # within the grace
    assert names.name_for("p", "10.0.0.1", ts=2 * NS) == ""
    for i in range(3):
        names.learn("p", f"10.0.0.{i}", "x", ts=0, ttl_s=60)
    assert len(names) == 2 and names.counts["evicted"] == 1


def test_clock_offset_is_measured_again_and_drift_exported(monkeypatch) -> None:
    from collectors.cgroups import CgroupResolver
    from collectors.kernel import loader
    from collectors.pods import Attributor, PodIndex

    collector = loader.KernelCollector("n", Attributor(PodIndex(), CgroupResolver("/tmp")),
                                       lambda e: None, clock_interval_s=60)
    offsets = iter([1_000_000, 1_000_250, 999_900])
    monkeypatch.setattr(loader, "monotonic_to_epoch_offset", lambda: next(offsets))
    collector._offset_ns = 1_000_000
    assert collector.remeasure_clock() == 0
    assert collector.remeasure_clock() == 250
    assert collector.remeasure_clock() == -350
    stats = collector.stats
    assert stats["clock_offset_ns"] == 999_900 and stats["clock_drift_ns"] == -350
    assert stats["clock_drift_max_ns"] == 350 and stats["clock_measurements"] == 3


def test_exec_record_facts_decode() -> None:
    from collectors.kernel.envelopes import S_IFIFO, S_IFSOCK, exec_facts

    r = dec.ExecRecord()
    r.h = _header(dec.Kind.EXEC)
    r.flags = (dec.EXEC_HAS_INTERP | dec.EXEC_HAS_NS | dec.EXEC_HAS_STDIO
               | dec.EXEC_HAS_EXE_FILE)
    _put(r, "filename", b"/app/run.sh\0")
    _put(r, "interp", b"/bin/sh\0")
    r.ns.mnt, r.ns.pid, r.ns.net, r.ns.pid_children = 11, 12, 13, 12
    r.stdio[0].mode, r.stdio[0].family, r.stdio[0].protocol = S_IFSOCK, 10, 6
    r.stdio[0].dport = 443
    r.stdio[0].daddr[:] = list(bytes(15) + b"\x01")
    r.stdio[1].mode = S_IFIFO
    r.exe_nlink = 0
    _put(r, "exe_name", b"memfd:x\0")
    ev = dec.decode(bytes(r))
    assert isinstance(ev, dec.ExecEvent)
    assert ev.interpreter == "/bin/sh" and ev.namespaces == dec.Namespaces(11, 12, 13, 12)
    facts = exec_facts(ev)
    assert facts["interpreter"] == "/bin/sh" and facts["script"] == "/app/run.sh"
    assert facts["ns"] == {"mnt": 11, "pid": 12, "net": 13}
    assert facts["stdio"] == {"stdin": {"type": "socket", "protocol": "tcp",
                                        "peer": "[::1]:443"},
                              "stdout": {"type": "pipe"}}
    assert facts["exe_origin"] == "memfd"
    # without the optional facts (offsets missing): nothing is made up
    r.flags = 0
    bare = dec.decode(bytes(r))
    assert isinstance(bare, dec.ExecEvent) and exec_facts(bare) == {}


def test_nsop_envelope_left_pod_ns() -> None:
    from collectors.kernel.envelopes import nsop_envelope

    r = dec.NsOpRecord()
    r.h = _header(dec.Kind.NSOP)
    r.op, r.ret, r.flags, r.fd = int(dec.NsOp.SETNS), 0, 0x00020000, 3
    r.before.mnt, r.before.pid, r.before.net = 1, 2, 3
    r.after.mnt, r.after.pid, r.after.net = 9, 2, 3
    ev = dec.decode(bytes(r))
    assert isinstance(ev, dec.NsOpEvent)
    env = nsop_envelope(ev, node="n", pod=POD, offset_ns=0, pod_ns=ev.before, target_pid=1)
    assert env.kind == "process.setns" and env.data["nstype"] == "mnt"
    assert env.data["left_pod_ns"] is True and env.data["target_pid"] == 1
    assert env.data["ns_after"] == {"mnt": 9, "pid": 2, "net": 3}
    assert Envelope.from_dict(env.to_dict()) == env


def test_btf_reader_on_a_built_blob() -> None:
    import struct as st

    from collectors.kernel.btf import Btf, BtfError

    strings = b"\0task\0pid\0inner\0x\0int\0"
    off = {name: strings.index(name.encode() + b"\0") for name in
           ("task", "pid", "inner", "x", "int")}
    types = b""
    types += st.pack("<III", off["int"], 1 << 24, 4) + st.pack("<I", 32)         # 1: int
    types += st.pack("<III", off["inner"], (4 << 24) | 1, 4)                       # 2: struct
    types += st.pack("<III", off["x"], 1, 0)
    types += st.pack("<III", off["task"], (4 << 24) | 2, 16)                       # 3: struct
    types += st.pack("<III", off["pid"], 1, 32)                                    # pid @4
    types += st.pack("<III", 0, 2, 64)                                             # anon @8
    header = st.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    btf = Btf(header + types + strings)
    assert btf.offset("task", "pid") == 4 and btf.offset("task", "x") == 8
    assert btf.size("task") == 16
    with pytest.raises(BtfError):
        btf.offset("task", "nope")
    with pytest.raises(BtfError):
        Btf(b"\0" * 30)


def test_preflight_refuses_another_architecture(monkeypatch) -> None:
    """The exit probes read syscall arguments at x86_64's register offsets: elsewhere
    the collector says so instead of reporting wrong arguments."""
    import platform

    from collectors.kernel.loader import CollectorError, preflight

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    with pytest.raises(CollectorError, match="architecture aarch64"):
        preflight(mount_tracefs=False)


def test_ledger_forgets_swept_windows_only() -> None:
    """Entries of windows already swept can have no repeats left to report (their table
    entries are gone): they are dropped, the open windows' entries are kept."""
    from streams.events import Envelope

    ledger = RepeatLedger()
    for window, path in ((5, "/a"), (5, "/b"), (6, "/c"), (7, "/d")):
        ledger.opened(("open", 1, window, 0, 0, path.encode()),
                      Envelope("file.open", window, "n", "kernel", {"path": path, "count": 1}))
    assert ledger.forget_before(6, lambda key: key[2]) == 2
    assert len(ledger) == 2
    assert ("open", 1, 6, 0, 0, b"/c") in ledger and ("open", 1, 7, 0, 0, b"/d") in ledger
    repeats = ledger.closed(("open", 1, 6, 0, 0, b"/c"), total=3, ts=99)
    assert repeats is not None and repeats.data["count"] == 2
