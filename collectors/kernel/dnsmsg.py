"""DNS wire-format parsing for net.dns (pure, RFC 1035): the question and, in replies,
the A/AAAA/CNAME answers, so an address can be reported with the name it was resolved
from. Only what the kernel captured (the first 512 bytes) is parsed; anything cut or
malformed gives a partial result with ``error`` set, never an exception.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["DnsMessage", "build_query", "parse_dns", "qtype_name"]

QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT",
          28: "AAAA", 33: "SRV", 65: "HTTPS", 255: "ANY"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def qtype_name(qtype: int) -> str:
    return QTYPES.get(qtype, f"TYPE{qtype}")


@dataclass
class DnsMessage:
    id: int = 0
    is_response: bool = False
    rcode: str = "NOERROR"
    questions: list[tuple[str, str]] = field(default_factory=list)  # (name, type)
    answers: list[tuple[str, str, str, int]] = field(default_factory=list)  # name,type,data,ttl
    error: str = ""


class _Truncated(ValueError):
    pass


def _name(buf: bytes, offset: int) -> tuple[str, int]:
    """A possibly compressed name at ``offset``; returns (name, offset after it)."""
    labels: list[str] = []
    end = -1
    jumps = 0
    while True:
        if offset >= len(buf):
            raise _Truncated("name runs past the capture")
        length = buf[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(buf):
                raise _Truncated("pointer runs past the capture")
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | buf[offset + 1]
            jumps += 1
            if jumps > 32:
                raise ValueError("compression loop")
            continue
        if length == 0:
            offset += 1
            break
        if offset + 1 + length > len(buf):
            raise _Truncated("label runs past the capture")
        labels.append(buf[offset + 1 : offset + 1 + length].decode("ascii", "backslashreplace"))
        offset += 1 + length
    return ".".join(labels), (end if end >= 0 else offset)


def parse_dns(buf: bytes) -> DnsMessage:
    """Parse a DNS message.

    >>> m = parse_dns(build_query("api.openai.com", 1, ident=7))
    >>> (m.id, m.is_response, m.questions)
    (7, False, [('api.openai.com', 'A')])
    """
    msg = DnsMessage()
    if len(buf) < 12:
        msg.error = "shorter than a DNS header"
        return msg
    msg.id = int.from_bytes(buf[0:2], "big")
    flags = int.from_bytes(buf[2:4], "big")
    msg.is_response = bool(flags & 0x8000)
    msg.rcode = RCODES.get(flags & 0xF, str(flags & 0xF))
    qd, an = int.from_bytes(buf[4:6], "big"), int.from_bytes(buf[6:8], "big")
    offset = 12
    try:
        for _ in range(min(qd, 16)):
            name, offset = _name(buf, offset)
            if offset + 4 > len(buf):
                raise _Truncated("question runs past the capture")
            qtype = int.from_bytes(buf[offset : offset + 2], "big")
            offset += 4
            msg.questions.append((name, qtype_name(qtype)))
        for _ in range(min(an, 64)):
            name, offset = _name(buf, offset)
            if offset + 10 > len(buf):
                raise _Truncated("answer runs past the capture")
            rtype = int.from_bytes(buf[offset : offset + 2], "big")
            ttl = int.from_bytes(buf[offset + 4 : offset + 8], "big")
            rdlen = int.from_bytes(buf[offset + 8 : offset + 10], "big")
            offset += 10
            if offset + rdlen > len(buf):
                raise _Truncated("answer data runs past the capture")
            rdata = buf[offset : offset + rdlen]
            if rtype == 1 and rdlen == 4:
                data = str(ipaddress.IPv4Address(rdata))
            elif rtype == 28 and rdlen == 16:
                data = str(ipaddress.IPv6Address(rdata))
            elif rtype in (5, 2, 12):
                data, _ = _name(buf, offset)
            else:
                data = rdata.hex()
            offset += rdlen
            msg.answers.append((name, qtype_name(rtype), data, ttl))
    except _Truncated as exc:
        msg.error = f"truncated: {exc}"
    except (ValueError, UnicodeError) as exc:
        msg.error = f"malformed: {exc}"
    return msg


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def build_query(name: str, qtype: int = 1, *, ident: int = 0) -> bytes:
    """A minimal recursive query (tests and the benchmark's resolver use it)."""
    header = ident.to_bytes(2, "big") + b"\x01\x00" + b"\x00\x01" + b"\x00" * 6
    return header + _encode_name(name) + qtype.to_bytes(2, "big") + b"\x00\x01"


def build_answer(query: bytes, addresses: list[str], *, ttl: int = 60) -> bytes:
    """A reply to ``query`` with A/AAAA records (pointer to the question name)."""
    parsed = parse_dns(query)
    head = query[:2] + b"\x81\x80" + b"\x00\x01" + len(addresses).to_bytes(2, "big") + b"\0" * 4
    qname_end = 12 + len(_encode_name(parsed.questions[0][0])) + 4 if parsed.questions else 12
    body = query[12:qname_end]
    for addr in addresses:
        ip = ipaddress.ip_address(addr)
        rtype = 1 if ip.version == 4 else 28
        body += b"\xc0\x0c" + rtype.to_bytes(2, "big") + b"\x00\x01" + ttl.to_bytes(4, "big")
        body += len(ip.packed).to_bytes(2, "big") + ip.packed
    return head + body
