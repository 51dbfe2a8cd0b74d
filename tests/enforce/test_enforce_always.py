"""What no policy can refuse (root): the node's own addresses on any port and the
resolvers on the DNS port, even for an enforced pod whose policy allows nothing."""

from __future__ import annotations

from pathlib import Path

from collectors.enforce.policy import parse_policy

from .conftest import make_env


def test_node_addresses_and_resolvers_always_pass(dns_server: int, tmp_path: Path) -> None:
    env = make_env(dns_server, tmp_path, node_addresses=("127.0.0.79",))
    try:
        env.enforcer.set_policies([parse_policy({
            "apiVersion": "agentstory/v1", "kind": "EnforcePolicy", "mode": "enforce",
            "agent": "agents/Deployment/walled", "egress": {"loopback": False}})])
        pod = env.pod("walled")
        results = env.client(pod, "connect:127.0.0.79:9", "connect:127.0.0.79:8080",
                             "resolve:evil.test", f"send:127.0.0.1:{dns_server}",
                             "send:127.0.0.1:54", "connect:127.0.0.80:9")
        assert [r["result"] for r in results] == [
            "ECONNREFUSED", "ECONNREFUSED",  # the node's address, any port
            "ok", "ok",                      # the resolver, on its port
            "EPERM", "EPERM"]                # the resolver on another port; anything else
        assert [(e.data["dst_addr"], e.data["dst_port"]) for e in env.events("enforce.blocked")
                ] == [("127.0.0.1", 54), ("127.0.0.80", 9)]
    finally:
        env.cleanup()
        env.enforcer.close()
