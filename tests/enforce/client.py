"""A small client the enforcer tests run inside a pod cgroup: each step prints one JSON
line with what the kernel answered (errno name or "ok"). Only loopback addresses.

    client.py DNS_PORT connect:127.0.0.55:9 send:127.0.0.66:9 resolve:api.allowed.test
    (connect6:/send6: an IPv6 socket, e.g. connect6:::1:9 or connect6:::ffff:127.0.0.77:9)
"""

from __future__ import annotations

import errno
import json
import socket
import sys

from collectors.kernel.dnsmsg import build_query, parse_dns


def _result(exc: OSError | None) -> str:
    if exc is None:
        return "ok"
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def main(argv: list[str]) -> None:
    dns_port = int(argv[0])
    for step in argv[1:]:
        op, _, rest = step.partition(":")
        out: dict[str, object] = {"step": step}
        if op == "resolve":
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(2)
            try:
                sock.sendto(build_query(rest, 1, ident=0x4242), ("127.0.0.1", dns_port))
                answer = parse_dns(sock.recv(512))
                out.update(result="ok", addrs=[a[2] for a in answer.answers])
            except OSError as exc:
                out["result"] = _result(exc)
            finally:
                sock.close()
        else:
            addr, _, port = rest.rpartition(":")
            kind = socket.SOCK_STREAM if op.startswith("connect") else socket.SOCK_DGRAM
            family = socket.AF_INET6 if op.endswith("6") else socket.AF_INET
            sock = socket.socket(family, kind)
            sock.settimeout(2)
            try:
                if op.startswith("connect"):
                    sock.connect((addr, int(port)))
                else:
                    sock.sendto(b"x", (addr, int(port)))
                out["result"] = "ok"
            except OSError as exc:
                out["result"] = _result(exc)
            finally:
                sock.close()
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
