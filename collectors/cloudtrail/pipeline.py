"""One CloudTrail log file (bytes) → attributed ``cloud.api`` envelopes + dead letters.

Pure: the sources hand in bytes, this returns what to publish. Damage stays local: a
truncated gzip, a bad line or a record we refuse is one dead letter with its reason,
and the rest of the file (and the next files) still flows.

Accepted shapes: CloudTrail's ``{"Records": [...]}`` (gzip or plain, one or several
gzip members), several such documents one after the other (what ``zcat *.json.gz``
gives), one record per line (``jsonl`` exports), a JSON array of records, and
``lookup-events`` output whose items carry the record as a ``CloudTrailEvent`` string.
A damaged document (a syntax error in a pretty-printed file, a cut-off tail) still
yields every record that parses, plus one dead letter for the file naming the byte
offset, the reason and how many records were lost.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.events import Envelope, Rejected
from streams.limits import bounded_dead_letter, size_limits

from .attribute import Attributed, CloudAttributor
from .dedup import EventIdDedup
from .normalize import KIND, RecordError, normalize

__all__ = [
    "MAX_ORIGINAL",
    "CloudTrailPipeline",
    "FileResult",
    "ReadResult",
    "read_file",
    "read_records",
]

log = logging.getLogger(__name__)

MAX_ORIGINAL = 256 * 1024  # bytes of a broken file kept in its dead letter
STAGE_READ = "cloudtrail.read"
STAGE_NORMALIZE = "cloudtrail.normalize"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class FileResult:
    """What one file produced. ``dead_letters`` are (kafka key, message) pairs."""

    envelopes: list[Envelope] = field(default_factory=list)
    dead_letters: list[tuple[bytes, bytes]] = field(default_factory=list)
    records: int = 0
    lost: int = 0  # records in damaged spans (in the file's one dead letter)


def _cap(raw: bytes) -> tuple[bytes, str]:
    if len(raw) <= MAX_ORIGINAL:
        return raw, ""
    return raw[:MAX_ORIGINAL], f" (original cut to {MAX_ORIGINAL} of {len(raw)} bytes)"


def _gunzip(raw: bytes) -> tuple[bytes, str]:
    """Decompress every gzip member; on damage return what came out and why."""
    out: list[bytes] = []
    data = raw
    while data:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            out.append(inflater.decompress(data))
        except zlib.error as exc:
            return b"".join(out), f"corrupt gzip: {exc}"
        if not inflater.eof:
            return b"".join(out), "truncated gzip (end of stream missing)"
        data = inflater.unused_data
        if data and not data.startswith(_GZIP_MAGIC):
            break  # trailing garbage after the last member: ignore like gzip(1) does
    return b"".join(out), ""


def _unwrap(item: Any) -> Any:
    """The CloudTrail record inside its carriers: ``lookup-events`` items (the record
    as a ``CloudTrailEvent`` string), EventBridge events (``detail-type`` "… via
    CloudTrail", the record in ``detail``), and SNS notifications (``Message``)."""
    if not isinstance(item, dict):
        return item
    if isinstance(item.get("CloudTrailEvent"), str):
        return orjson.loads(item["CloudTrailEvent"])
    if isinstance(item.get("detail"), dict) and "detail-type" in item:
        return item["detail"]
    if item.get("Type") == "Notification" and isinstance(item.get("Message"), str):
        return _unwrap(orjson.loads(item["Message"]))
    return item


def _items_of(doc: Any) -> list[Any]:
    """The records one JSON document holds: ``{"Records": [...]}``, ``{"Events": [...]}``
    (lookup-events), an array of records, or one record."""
    if isinstance(doc, dict):
        for name in ("Records", "Events"):
            items = doc.get(name)
            if isinstance(items, list):
                return items
        return [doc]
    if isinstance(doc, list):
        return doc
    return [doc]


def _first_line(text: bytes) -> bytes:
    for line in text.split(b"\n", 8):
        line = line.strip()
        if line:
            return line
    return b""


def _looks_like_lines(text: bytes) -> bool:
    """JSON lines: the first non-empty line is a whole JSON object by itself (a
    pretty-printed document starts with a lone ``{``)."""
    try:
        return isinstance(orjson.loads(_first_line(text)), dict)
    except orjson.JSONDecodeError:
        return False


def _lines(text: bytes, *, last_complete: bool) -> Iterator[tuple[int, bytes]]:
    lines = text.split(b"\n")
    if not last_complete:
        lines = lines[:-1]  # the cut-off tail of a truncated file
    for number, line in enumerate(lines):
        line = line.strip()
        if line:
            yield number, line


# where a record or a document may start again after damage
_RECORD_START = re.compile(r'\{\s*"eventVersion"\s*:')
_DOC_START = re.compile(r'\{\s*"(?:Records|Events)"\s*:\s*\[')
_VERSION_KEY = re.compile(r'"eventVersion"\s*:')
_NEXT_ITEM = re.compile(r',\s*\{')
_WS = frozenset(" \t\r\n")
_DECODER = json.JSONDecoder()


@dataclass
class _Damage:
    """Damaged spans of one file: where the first one starts, why, how many records
    were lost (record starts inside the spans, at least one per span)."""

    spans: list[tuple[int, int]] = field(default_factory=list)
    first_reason: str = ""
    lost: int = 0


class _Stream:
    """Successive JSON documents in one text (``zcat *.json.gz`` concatenates them, a
    pretty-printed file is one), salvaging the records around a syntax error."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.records: list[Any] = []
        self.damage = _Damage()

    def _skip(self, pos: int, extra: str = "") -> int:
        text, n = self.text, len(self.text)
        while pos < n and (text[pos] in _WS or text[pos] in extra):
            pos += 1
        return pos

    def run(self) -> None:
        pos = self._skip(0)
        while pos < len(self.text):
            try:
                doc, end = _DECODER.raw_decode(self.text, pos)
            except json.JSONDecodeError:
                pos = self._salvage(pos)
            else:
                self.records.extend(_items_of(doc))
                pos = end
            pos = self._skip(pos)

    def _salvage(self, pos: int) -> int:
        """A document that does not parse: read its records one by one, skipping the
        damaged ones; returns where the next document may start."""
        text = self.text
        head = _DOC_START.match(text, pos)
        if head is not None:
            i = head.end()
        elif text.startswith("[", pos):
            i = pos + 1
        else:
            i = pos
        while True:
            i = self._skip(i, ",")
            if i >= len(text):
                return i
            if text[i] == "]":  # end of the records array, then of the document
                i = self._skip(i + 1)
                return i + 1 if text.startswith("}", i) else i
            if head is not None and _DOC_START.match(text, i):
                return i  # the next document began before this one closed
            try:
                item, end = _DECODER.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                i = self._damaged(i, exc)
                if head is None and not _RECORD_START.match(text, i):
                    return i
                continue
            if isinstance(item, dict) and ("Records" in item or "Events" in item):
                self.records.extend(_items_of(item))
            else:
                self.records.append(item)
            i = end

    def _damaged(self, start: int, exc: json.JSONDecodeError) -> int:
        """Skip the damaged item at ``start`` to the next record or document start."""
        text = self.text
        line_start = text.rfind("\n", 0, start) + 1
        indent = text[line_start:start]
        candidates = [m.start() for m in (_RECORD_START.search(text, start + 1),
                                          _DOC_START.search(text, start + 1)) if m]
        if indent and not indent.strip():  # pretty-printed: the next "{" at this indent
            found = text.find("\n" + indent + "{", start + 1)
            if found >= 0:
                candidates.append(found + 1 + len(indent))
        end = min(candidates, default=len(text))
        probe = self._probe(start + 1, end)
        if probe is not None:
            end = probe
        damage = self.damage
        if not damage.spans:
            damage.first_reason = exc.msg
        damage.spans.append((start, end))
        damage.lost += max(len(_VERSION_KEY.findall(text, start, end)), 1)
        return end

    def _probe(self, start: int, end: int) -> int | None:
        """The first ``, {`` before ``end`` where a whole record (an object with an
        ``eventVersion``) parses: the resync point when records do not start with
        ``eventVersion`` and are not indented (``jq -S -c``)."""
        text = self.text
        for match in _NEXT_ITEM.finditer(text, start, end):
            at = match.end() - 1
            try:
                item, _ = _DECODER.raw_decode(text, at)
            except json.JSONDecodeError:
                continue
            if isinstance(item, dict) and "eventVersion" in item:
                return at
        return None


def _byte_offset(text: str, pos: int) -> int:
    return len(text[:pos].encode("utf-8", "surrogateescape"))


@dataclass
class ReadResult:
    """Records of one file, what was rejected, and how many records were lost in
    damaged spans (counted, not individually dead-lettered)."""

    records: list[Any] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    lost: int = 0


def read_file(name: str, raw: bytes) -> ReadResult:
    """Decode one log file into raw records and rejections (never raises on input).

    Whole JSON documents go through orjson; JSON lines line by line (a bad line is one
    rejection); anything else as a stream of documents with damaged spans skipped and
    reported in one rejection for the file (its byte offset, reason, records lost)."""
    out = ReadResult()
    text = raw
    complete = True
    problems: list[str] = []
    if raw[:2] == _GZIP_MAGIC:
        text, problem = _gunzip(raw)
        if problem:
            problems.append(problem)
            complete = False
    doc: Any = None
    parsed = False
    if complete:
        try:
            doc = orjson.loads(text)
            parsed = True
        except orjson.JSONDecodeError:
            pass
    if parsed:
        items = _items_of(doc)
    elif _looks_like_lines(text):
        items = []
        for number, line in _lines(text, last_complete=complete):
            try:
                items.extend(_items_of(orjson.loads(line)))
            except orjson.JSONDecodeError as exc:
                # a damaged line may still hold whole records (a Records document)
                stream = _Stream(line.decode("utf-8", "surrogateescape"))
                stream.run()
                items.extend(stream.records)
                if not stream.damage.spans:
                    continue
                out.lost += stream.damage.lost
                salvaged = (f"; {len(stream.records)} record(s) recovered from it"
                            if stream.records else "")
                original, note = _cap(line)
                out.rejected.append(Rejected(
                    f"{name}: line {number + 1} is not JSON: {exc}{salvaged}{note}", "line",
                    original, number))
    else:
        decoded = text.decode("utf-8", "surrogateescape")
        stream = _Stream(decoded)
        stream.run()
        items = stream.records
        damage = stream.damage
        if damage.spans and not items and not _VERSION_KEY.search(decoded):
            original, note = _cap(raw)
            out.rejected.append(Rejected(
                f"{name}: not a CloudTrail log (neither JSON nor JSON lines): "
                f"{damage.first_reason} at byte {_byte_offset(decoded, damage.spans[0][0])}"
                f"{note}", "file", original))
            out.lost = 0
            return out
        if damage.spans:
            first, _ = damage.spans[0]
            at = _byte_offset(decoded, first)
            problems.append(
                f"JSON damaged at byte {at} ({damage.first_reason}); "
                f"{len(damage.spans)} damaged span(s), about {damage.lost} record(s) lost, "
                f"{len(items)} recovered")
            out.lost += damage.lost
    if problems:
        original, note = _cap(raw)
        out.rejected.insert(0, Rejected(f"{name}: {'; '.join(problems)}{note}", "file",
                                        original))
    for index, item in enumerate(items):
        try:
            out.records.append(_unwrap(item))
        except orjson.JSONDecodeError as exc:
            out.rejected.append(Rejected(
                f"{name}: record {index}: CloudTrailEvent is not JSON: {exc}",
                "CloudTrailEvent", orjson.dumps(item), index))
    return out


def read_records(name: str, raw: bytes) -> tuple[list[Any], list[Rejected]]:
    """:func:`read_file` as ``(records, rejections)``."""
    result = read_file(name, raw)
    return result.records, result.rejected


class CloudTrailPipeline:
    """Read → normalize → attribute → envelopes, with counters for every outcome."""

    def __init__(self, attributor: CloudAttributor, node: str, *,
                 dedup: EventIdDedup | None = None) -> None:
        self.attributor = attributor
        self.node = node
        self.dedup = dedup
        self.counts: dict[str, int] = {
            "files": 0, "records": 0, "envelopes": 0, "rejected_read": 0,
            "rejected_record": 0, "rejected_internal": 0, "records_lost": 0,
            "duplicates": 0,
        }

    def _envelope(self, item: Attributed) -> Envelope:
        return Envelope(kind=KIND, ts=item.ts, node=self.node, source="cloud",
                        data=item.data, pod=item.pod)

    def process_file(self, name: str, raw: bytes) -> FileResult:
        """``name`` (a path or s3:// URI) is where dead letters say they came from."""
        result = FileResult()
        key = name.encode()
        read = read_file(name, raw)
        records, rejected = read.records, read.rejected
        self.counts["files"] += 1
        self.counts["records_lost"] += read.lost
        result.lost = read.lost
        for rej in rejected:
            self.counts["rejected_read"] += 1
            result.dead_letters.append((key, _letter(rej, stage=STAGE_READ, key=key)))
        envelopes = result.envelopes
        process = self.attributor.process
        dedup = self.dedup
        for index, record in enumerate(records):
            try:
                ts, data = normalize(record)
                if dedup is not None and not dedup.first(data["event_id"], ts):
                    self.counts["duplicates"] += 1
                    continue
                attributed = process(ts, data)
            except RecordError as exc:
                self.counts["rejected_record"] += 1
                rej = Rejected(f"{name}: record {index}: {exc}", exc.field,
                               _dump(record), index)
                result.dead_letters.append(
                    (key, _letter(rej, stage=STAGE_NORMALIZE, key=key)))
                continue
            except Exception as exc:  # a shape nobody foresaw: never stop the file for it
                self.counts["rejected_internal"] += 1
                log.exception("%s: record %d broke the pipeline", name, index)
                rej = Rejected(f"{name}: record {index}: internal error {exc!r}", "record",
                               _dump(record), index)
                result.dead_letters.append(
                    (key, _letter(rej, stage=STAGE_NORMALIZE, key=key)))
                continue
            for item in attributed:
                envelopes.append(self._envelope(item))
        result.records = len(records)
        self.counts["records"] += len(records)
        self.counts["envelopes"] += len(envelopes)
        return result

    def drain(self) -> list[Envelope]:
        """End of input: what the attributor still holds, released unattributed."""
        out = [self._envelope(item) for item in self.attributor.drain()]
        self.counts["envelopes"] += len(out)
        return out


def _dump(record: Any) -> bytes:
    try:
        return orjson.dumps(record)
    except TypeError:
        return repr(record).encode()


def _letter(rejected: Rejected, *, stage: str, key: bytes) -> bytes:
    """A dead letter under the message size limit (a damaged file's rest is cut, hashed)."""
    return bounded_dead_letter(rejected, size_limits().value_bytes, stage=stage, key=key)
