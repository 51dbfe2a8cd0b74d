"""DNS messages for net.dns, parsed with dnspython: the question and, in replies, the
answers with their TTL, so an address can be reported with the name a pod resolved it
from. Only what the kernel captured (the first 512 bytes) is parsed; a cut or malformed
message gives a partial result (the question when it is whole) with ``error`` set,
never an exception.

dnspython costs about ten times the hand-written parser it replaced (tens of
microseconds per query, a couple of hundred per answer on the shared test machine), so
results are memoised on the message bytes without the 2-byte id: queries for the same
name repeat all day, and so do answers from a resolver that does not count TTLs down.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

__all__ = ["DnsMessage", "build_answer", "build_query", "parse_dns", "qtype_name"]


def qtype_name(qtype: int) -> str:
    return dns.rdatatype.to_text(qtype)  # type: ignore[arg-type]


@dataclass(frozen=True)
class DnsMessage:
    id: int = 0
    is_response: bool = False
    rcode: str = "NOERROR"
    questions: list[tuple[str, str]] = field(default_factory=list)  # (name, type)
    answers: list[tuple[str, str, str, int]] = field(default_factory=list)  # name,type,data,ttl
    error: str = ""


_MEMO_MAX = 4096
_memo: dict[bytes, DnsMessage] = {}


def _name(n: dns.name.Name) -> str:
    return n.to_text(omit_final_dot=True)


def _data(rdata: object) -> str:
    target = getattr(rdata, "target", None)  # CNAME, NS, PTR …: the name it points to
    if isinstance(target, dns.name.Name):
        return _name(target)
    return rdata.to_text()  # type: ignore[attr-defined,no-any-return]


def _parse(buf: bytes) -> DnsMessage:
    ident = int.from_bytes(buf[0:2], "big")
    flags = int.from_bytes(buf[2:4], "big")
    base = {"id": ident, "is_response": bool(flags & 0x8000),
            "rcode": dns.rcode.to_text(flags & 0xF)}  # type: ignore[arg-type]
    try:
        msg = dns.message.from_wire(buf, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError, UnicodeError) as exc:
        # dnspython does not tell a cut message from a bad one: when the question still
        # parses, the rest was cut (the capture holds the first 512 bytes)
        text = str(exc) or type(exc).__name__
        try:
            head = dns.message.from_wire(buf, question_only=True, ignore_trailing=True)
            questions = [(_name(q.name), qtype_name(q.rdtype)) for q in head.question]
        except (dns.exception.DNSException, ValueError, UnicodeError):
            return DnsMessage(**base, error=f"malformed: {text}")  # type: ignore[arg-type]
        return DnsMessage(**base, questions=questions,  # type: ignore[arg-type]
                          error=f"truncated: {text}")
    questions = [(_name(q.name), qtype_name(q.rdtype)) for q in msg.question]
    answers = [(_name(rrset.name), qtype_name(rrset.rdtype), _data(rdata), int(rrset.ttl))
               for rrset in msg.answer for rdata in rrset]
    return DnsMessage(**base, questions=questions, answers=answers)  # type: ignore[arg-type]


def parse_dns(buf: bytes) -> DnsMessage:
    """Parse a DNS message (memoised; the result is shared: do not change it).

    >>> m = parse_dns(build_query("api.openai.com", 1, ident=7))
    >>> (m.id, m.is_response, m.questions)
    (7, False, [('api.openai.com', 'A')])
    >>> parse_dns(b"\\x00" * 5).error
    'shorter than a DNS header'
    """
    if len(buf) < 12:
        return DnsMessage(error="shorter than a DNS header")
    key = buf[2:]
    found = _memo.get(key)
    ident = int.from_bytes(buf[0:2], "big")
    if found is None:
        found = _parse(buf)
        if len(_memo) >= _MEMO_MAX:
            _memo.clear()
        _memo[key] = found
    if found.id != ident:
        found = DnsMessage(ident, found.is_response, found.rcode, found.questions,
                           found.answers, found.error)
    return found


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
