"""Loaded by every Python process of a recorded pod (``PYTHONPATH``): names resolve
through the recording's DNS server (``AGENTSTORY_POD_DNS``), as a pod resolves through
its cluster DNS. Nothing ever falls back to the host's resolver, so no recorded agent can
reach a real network host by name."""

import ipaddress
import os
import socket

_DNS = os.environ.get("AGENTSTORY_POD_DNS")
if _DNS:
    _original = socket.getaddrinfo

    def _getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name is None or name == "localhost":
            return _original(host, port, family, type, proto, flags)
        try:
            ipaddress.ip_address(name)
            return _original(host, port, family, type, proto, flags)
        except ValueError:
            pass
        import dns.message
        import dns.query
        import dns.rdatatype

        server, _, dport = _DNS.partition(":")
        reply = dns.query.udp(dns.message.make_query(name, "A"), server,
                              port=int(dport or 53), timeout=3)
        addresses = [rr.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A
                     for rr in rrset]
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if isinstance(port, str) and not port.isdigit():
            port = socket.getservbyname(port)
        kinds = [type] if type else [socket.SOCK_STREAM]
        return [(socket.AF_INET, k, proto or (6 if k == socket.SOCK_STREAM else 17), "",
                 (a, int(port or 0))) for a in addresses for k in kinds]

    socket.getaddrinfo = _getaddrinfo
