"""Fixtures of the enforcer tests: a started enforcer (real bcc, root) over a pod index,
kubelet-shaped pod cgroups, a loopback DNS resolver on a free port, and a small client
run inside a pod that reports what the kernel answered."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.cgroups import CgroupResolver
from collectors.kernel.dnsmsg import build_answer, parse_dns
from collectors.kernel.sandbox import FakePod
from collectors.pods import Attributor, PodIndex, PodInfo
from streams.events import Envelope

CLIENT = str(Path(__file__).with_name("client.py"))
# names the test resolver knows; everything is loopback, nothing leaves the machine
ZONE = {"api.allowed.test": "127.0.0.55", "cdn.allowed.test": "127.0.0.56",
        "evil.test": "127.0.0.66"}


def enforcer_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "not root: loading BPF programs needs root"
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        return f"bcc not importable: {exc}"
    return None


@pytest.fixture(scope="session")
def enforce_ok() -> None:
    reason = enforcer_unavailable()
    if reason:
        pytest.skip(f"enforcer cannot load here: {reason}")


@pytest.fixture(scope="session")
def dns_server(enforce_ok: None) -> Iterator[int]:
    """A UDP resolver on 127.0.0.1:<free port> answering ZONE names (others: no answer
    records)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                query, addr = sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            msg = parse_dns(query)
            name = msg.questions[0][0].lower() if msg.questions else ""
            sock.sendto(build_answer(query, [ZONE[name]] if name in ZONE else []), addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        sock.close()


class Env:
    """The enforcer, its envelopes, and pods removed at the end of each test."""

    def __init__(self, enforcer: Any, index: PodIndex, out: list[Envelope], dns_port: int,
                 kill_switch: Path) -> None:
        self.enforcer = enforcer
        self.index = index
        self.out = out
        self.dns_port = dns_port
        self.kill_switch = kill_switch
        self.created: list[FakePod] = []

    def pod(self, name: str, namespace: str = "agents", *, known: bool = True) -> FakePod:
        pod = FakePod(name, namespace)
        self.created.append(pod)
        pod.create()
        if known:
            self.index.apply("ADDED", PodInfo.from_manifest(
                pod.manifest(owner=("Deployment", name))))
        self.enforcer.sync_pods(force=True)
        return pod

    def cleanup(self) -> None:
        for pod in reversed(self.created):
            self.index.apply("DELETED", PodInfo.from_manifest(pod.manifest()))
            pod.remove()
        self.created.clear()
        self.enforcer.sync_pods(force=True)

    def client(self, pod: FakePod | None, *steps: str) -> list[dict[str, Any]]:
        """Run tests/enforce/client.py (in the pod, or on the host) with these steps
        (connect:ADDR:PORT, send:ADDR:PORT, resolve:NAME); its per-step results."""
        argv = [sys.executable, CLIENT, str(self.dns_port), *steps]
        if pod is None:
            import subprocess

            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
        else:
            proc = pod.run(argv, capture_output=True, text=True)
        return [json.loads(line) for line in proc.stdout.splitlines()]

    def events(self, kind: str | None = None) -> list[Envelope]:
        while self.enforcer.poll(20):
            pass
        return [e for e in self.out if kind is None or e.kind == kind]


def make_env(dns_port: int, tmp: Path, *, node_addresses: tuple[str, ...] = (),
             **kwargs: Any) -> Env:
    from collectors.enforce.loader import Enforcer

    index = PodIndex()
    out: list[Envelope] = []
    kill = tmp / "enforce.off"
    enforcer = Enforcer("test-node", Attributor(index, CgroupResolver()), out.append,
                        resolvers=["127.0.0.1"], node_addresses=list(node_addresses),
                        dns_port=dns_port,
                        kill_switch_path=kill, **kwargs)
    enforcer.start()
    return Env(enforcer, index, out, dns_port, kill)


@pytest.fixture(scope="module")
def shared_env(dns_server: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    env = make_env(dns_server, tmp_path_factory.mktemp("enforce"))
    try:
        yield env
    finally:
        env.cleanup()
        env.enforcer.close()


@pytest.fixture
def env(shared_env: Env) -> Iterator[Env]:
    shared_env.events()
    shared_env.out.clear()
    try:
        yield shared_env
    finally:
        shared_env.cleanup()
        shared_env.enforcer.set_policies([])
        shared_env.out.clear()
