"""A recorded pod's Python resolves names only through the recording's DNS server: with
that server unreachable, a name does not resolve (no fallback to the host's resolver, so
no recorded agent can reach a real host by name)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import topologies.scenarios

PODSITE = Path(topologies.scenarios.__file__).parent / "podsite"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _resolve(name: str, dns: str) -> subprocess.CompletedProcess[str]:
    code = (f"import socket\ntry:\n    print(socket.getaddrinfo({name!r}, 443)[0][4][0])\n"
            "except Exception as exc:\n    print('failed', type(exc).__name__)")
    env = {**os.environ, "PYTHONPATH": str(PODSITE), "AGENTSTORY_POD_DNS": dns}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)


def test_no_fallback_to_the_host_resolver() -> None:
    out = _resolve("pypi.org", f"127.0.0.1:{_free_udp_port()}").stdout
    assert out.startswith("failed"), out


def test_addresses_and_localhost_pass_through() -> None:
    port = f"127.0.0.1:{_free_udp_port()}"
    assert _resolve("127.0.0.1", port).stdout.strip() == "127.0.0.1"
    assert _resolve("localhost", port).stdout.strip() in ("127.0.0.1", "::1")
