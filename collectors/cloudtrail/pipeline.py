"""One CloudTrail log file (bytes) → attributed ``cloud.api`` envelopes + dead letters.

Pure: the sources hand in bytes, this returns what to publish. Damage stays local: a
truncated gzip, a bad line or a record we refuse is one dead letter with its reason,
and the rest of the file (and the next files) still flows.

Accepted shapes: CloudTrail's ``{"Records": [...]}`` (gzip or plain), one record per
line (``jsonl`` exports), a JSON array of records, and ``lookup-events`` output whose
items carry the record as a ``CloudTrailEvent`` string.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.events import Envelope, Rejected, dead_letter

from .attribute import Attributed, CloudAttributor
from .normalize import KIND, RecordError, normalize

__all__ = [
    "MAX_ORIGINAL",
    "CloudTrailPipeline",
    "FileResult",
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
    """``lookup-events`` items carry the record as a JSON string."""
    if isinstance(item, dict) and isinstance(item.get("CloudTrailEvent"), str):
        return orjson.loads(item["CloudTrailEvent"])
    return item


def _lines(text: bytes, *, last_complete: bool) -> Iterator[tuple[int, bytes]]:
    lines = text.split(b"\n")
    if not last_complete:
        lines = lines[:-1]  # the cut-off tail of a truncated file
    for number, line in enumerate(lines):
        line = line.strip()
        if line:
            yield number, line


def read_records(name: str, raw: bytes) -> tuple[list[Any], list[Rejected]]:
    """Decode one log file into raw records and rejections (never raises on input).

    Record indexes in rejections count records (or lines, for line exports)."""
    rejected: list[Rejected] = []
    text = raw
    complete = True
    if raw[:2] == _GZIP_MAGIC:
        text, problem = _gunzip(raw)
        if problem:
            original, note = _cap(raw)
            rejected.append(Rejected(f"{name}: {problem}{note}", "file", original))
            complete = False
    try:
        doc: Any = orjson.loads(text) if complete else None
    except orjson.JSONDecodeError:
        doc = None
    items: list[Any]
    if isinstance(doc, dict):
        if isinstance(doc.get("Records"), list):
            items = doc["Records"]
        elif isinstance(doc.get("Events"), list):
            items = doc["Events"]
        else:
            items = [doc]
    elif isinstance(doc, list):
        items = doc
    else:
        items = []
        parsed_any = False
        bad: list[Rejected] = []
        for number, line in _lines(text, last_complete=complete):
            try:
                items.append(orjson.loads(line))
                parsed_any = True
            except orjson.JSONDecodeError as exc:
                original, note = _cap(line)
                bad.append(Rejected(f"{name}: line {number + 1} is not JSON: {exc}{note}",
                                    "line", original, number))
        if not parsed_any and complete and text.strip():
            original, note = _cap(raw)
            return [], [Rejected(f"{name}: not a CloudTrail log (neither JSON nor JSON lines)"
                                 f"{note}", "file", original)]
        rejected.extend(bad)
    records: list[Any] = []
    for index, item in enumerate(items):
        try:
            records.append(_unwrap(item))
        except orjson.JSONDecodeError as exc:
            rejected.append(Rejected(f"{name}: record {index}: CloudTrailEvent is not JSON: "
                                     f"{exc}", "CloudTrailEvent", orjson.dumps(item), index))
    return records, rejected


class CloudTrailPipeline:
    """Read → normalize → attribute → envelopes, with counters for every outcome."""

    def __init__(self, attributor: CloudAttributor, node: str) -> None:
        self.attributor = attributor
        self.node = node
        self.counts: dict[str, int] = {
            "files": 0, "records": 0, "envelopes": 0, "rejected_read": 0,
            "rejected_record": 0, "rejected_internal": 0,
        }

    def _envelope(self, item: Attributed) -> Envelope:
        return Envelope(kind=KIND, ts=item.ts, node=self.node, source="cloud",
                        data=item.data, pod=item.pod)

    def process_file(self, name: str, raw: bytes) -> FileResult:
        """``name`` (a path or s3:// URI) is where dead letters say they came from."""
        result = FileResult()
        key = name.encode()
        records, rejected = read_records(name, raw)
        self.counts["files"] += 1
        for rej in rejected:
            self.counts["rejected_read"] += 1
            result.dead_letters.append((key, dead_letter(rej, stage=STAGE_READ, key=key)))
        envelopes = result.envelopes
        process = self.attributor.process
        for index, record in enumerate(records):
            try:
                ts, data = normalize(record)
                attributed = process(ts, data)
            except RecordError as exc:
                self.counts["rejected_record"] += 1
                rej = Rejected(f"{name}: record {index}: {exc}", exc.field,
                               _dump(record), index)
                result.dead_letters.append(
                    (key, dead_letter(rej, stage=STAGE_NORMALIZE, key=key)))
                continue
            except Exception as exc:  # a shape nobody foresaw: never stop the file for it
                self.counts["rejected_internal"] += 1
                log.exception("%s: record %d broke the pipeline", name, index)
                rej = Rejected(f"{name}: record {index}: internal error {exc!r}", "record",
                               _dump(record), index)
                result.dead_letters.append(
                    (key, dead_letter(rej, stage=STAGE_NORMALIZE, key=key)))
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
