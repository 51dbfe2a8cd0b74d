"""Where CloudTrail log files come from: an S3 trail bucket or a local directory (IO).

A source lists the files not yet done, reads one file's bytes, and keeps the state that
says which files are done. That state goes into the checkpoint file together with the
attributor's state, and is only advanced after the records of those files were
published (see :mod:`collectors.cloudtrail.collector`), so a restart neither re-reads
nor skips a file.

S3 layout (CloudTrail's own): ``<prefix>/AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/
<account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<unique>.json.gz``; organization trails
put ``<org-id>/`` before the account. Keys sort chronologically within one region
prefix, so each prefix is listed with ``StartAfter`` = its checkpoint floor. CloudTrail
delivers late now and then, so the floor trails the newest done key by
``lookback_days`` and the keys done since are remembered: a late file within the
lookback is still read, once.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

import orjson

__all__ = [
    "Checkpoint",
    "DirSource",
    "LogFile",
    "LogSource",
    "MultiSource",
    "S3Source",
    "SqsSource",
    "parse_s3_uri",
]

log = logging.getLogger(__name__)

# What a directory may hold: CloudTrail files, exports (JSON lines), logs shipped by
# other tools (.log, .txt, .json.txt), each possibly gzipped; the content decides how
# it is parsed (see pipeline.read_file), so the suffix only says "this is a log".
DIR_SUFFIXES = tuple(
    base + gz for base in (".json", ".jsonl", ".ndjson", ".log", ".txt", ".json.txt")
    for gz in ("", ".gz"))
# CloudTrail's integrity digests and the like sit beside the logs: not event records.
_NOT_LOGS = re.compile(r"_CloudTrail-Digest_|-Digest/|/CloudTrail-Digest/")
S3_SUFFIXES = (".json.gz", ".json")
_ACCOUNT = re.compile(r"^\d{12}$")
_ORG = re.compile(r"^o-[a-z0-9]{10,32}$")
_REGION_PREFIX = re.compile(r"/CloudTrail/[a-z0-9-]+/$")
_DAY = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/")
_FILE_TIME = re.compile(r"_(\d{8}T\d{4}Z)_")


@dataclass(frozen=True, slots=True)
class LogFile:
    """One log file. ``name`` identifies it in the checkpoint; ``uri`` is for humans
    and dead letters; ``group`` is the S3 region prefix ("" for a directory)."""

    uri: str
    name: str
    group: str = ""
    size: int = 0
    order: str = ""  # sort key across groups (delivery time from the file name)
    transient: bool = False  # its state lives elsewhere (an SQS message: the queue)


class LogSource(Protocol):
    uri: str

    def list_new(self) -> list[LogFile]: ...
    def read(self, item: LogFile) -> bytes: ...
    def mark_done(self, items: Iterable[LogFile]) -> None: ...
    def state(self) -> dict[str, Any]: ...
    def restore(self, state: dict[str, Any]) -> None: ...


class Checkpoint:
    """A JSON file replaced atomically (write, fsync, rename, fsync the folder), so a
    crash leaves either the old or the new checkpoint, never half of one."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        doc = orjson.loads(raw)
        if not isinstance(doc, dict) or doc.get("v") != 1:
            raise ValueError(f"{self.path}: not an agentstory cloudtrail checkpoint (v1)")
        return doc

    def save(self, doc: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            fh.write(orjson.dumps(doc))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class DirSource:
    """Log files under a directory (recursively), in path order.

    Files changed less than ``settle_s`` ago may still be being written: in follow
    mode they are left for the next poll; with ``wait_fresh`` (one-shot runs) the
    listing waits for them to settle instead of skipping them. Files this collector
    will not read are reported once per suffix (log warning and ``skipped``)."""

    def __init__(self, root: str | Path, *, settle_s: float = 1.0,
                 wait_fresh: bool = False) -> None:
        self.root = Path(root)
        self.uri = str(self.root.resolve())
        self.settle_s = settle_s
        self.wait_fresh = wait_fresh
        self._done: dict[str, int] = {}
        self.skipped: dict[str, int] = {}  # suffix → files not read
        self._reported: set[str] = set()
        self._seen_skipped: set[str] = set()

    def _skip(self, name: str, rel: str, why: str) -> None:
        """Count a file not read; warn once per suffix and reason."""
        if rel in self._seen_skipped:
            return
        self._seen_skipped.add(rel)
        suffix = "".join(Path(name).suffixes[-2:]) or name
        self.skipped[suffix] = self.skipped.get(suffix, 0) + 1
        key = f"{why}:{suffix}"
        if key not in self._reported:
            self._reported.add(key)
            log.warning("%s: not reading %s (%s); reported once per suffix",
                        self.root, rel, why)

    def _scan(self, now: float) -> tuple[list[LogFile], int]:
        out: list[LogFile] = []
        fresh = 0
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = Path(folder) / name
                rel = path.relative_to(self.root).as_posix()
                if rel in self._done:
                    continue
                if not name.lower().endswith(DIR_SUFFIXES):
                    self._skip(name, rel, "not a log suffix: "
                               f"{' '.join(DIR_SUFFIXES)}")
                    continue
                if _NOT_LOGS.search(rel):
                    self._skip(name, rel, "a CloudTrail digest file, not event records")
                    continue
                st = path.stat()
                if now - st.st_mtime < self.settle_s:
                    fresh += 1
                    continue
                out.append(LogFile(uri=str(path), name=rel, size=st.st_size, order=rel))
        out.sort(key=lambda f: f.order)
        return out, fresh

    def list_new(self) -> list[LogFile]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such directory")
        out, fresh = self._scan(time.time())
        if fresh and self.wait_fresh:
            log.info("%s: %d file(s) changed in the last %.1fs; waiting for them to settle",
                     self.root, fresh, self.settle_s)
            time.sleep(self.settle_s)
            # one-shot: read them now even if something still touches them
            out, _ = self._scan(time.time() + self.settle_s)
        elif fresh:
            log.debug("%s: %d file(s) still settling; next poll", self.root, fresh)
        return out

    def read(self, item: LogFile) -> bytes:
        return (self.root / item.name).read_bytes()

    def mark_done(self, items: Iterable[LogFile]) -> None:
        for item in items:
            self._done[item.name] = item.size

    def state(self) -> dict[str, Any]:
        return {"done": self._done}

    def restore(self, state: dict[str, Any]) -> None:
        self._done = dict(state.get("done", {}))


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → ``(bucket, prefix)``.

    >>> parse_s3_uri("s3://trail-logs/org/")
    ('trail-logs', 'org/')
    """
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket")
    return bucket, prefix


@dataclass
class _Group:
    floor: str = ""
    done: set[str] | None = None


class S3Source:
    """CloudTrail files in an S3 bucket, listed incrementally per region prefix.

    ``client`` is a boto3 S3 client (``endpoint_url`` makes it any S3-compatible store).
    ``since`` bounds the first listing of a prefix to that day onwards.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "", *,
                 since: date | None = None, lookback_days: int = 1,
                 max_keys_per_poll: int = 5000) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.uri = f"s3://{bucket}/{self.prefix}"
        self.since = since
        self.lookback_days = lookback_days
        self.max_keys_per_poll = max_keys_per_poll
        self._groups: dict[str, _Group] = {}
        self.requests = 0  # list calls made, for tests and stats

    # -- discovery ------------------------------------------------------------------------
    def _children(self, prefix: str) -> list[str]:
        out: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.client.list_objects_v2(**kwargs)
            self.requests += 1
            out.extend(cp["Prefix"] for cp in page.get("CommonPrefixes", []))
            token = page.get("NextContinuationToken")
            if not token:
                return out

    def discover(self) -> list[str]:
        """Every ``…/CloudTrail/<region>/`` prefix under the trail prefix."""
        start = self.prefix if "AWSLogs/" in self.prefix else self.prefix + "AWSLogs/"
        frontier = [start]
        groups: list[str] = []
        while frontier:
            prefix = frontier.pop()
            if _REGION_PREFIX.search(prefix):
                groups.append(prefix)
                continue
            for child in self._children(prefix):
                last = child[len(prefix):-1]
                if prefix.endswith("/CloudTrail/"):
                    groups.append(child)
                elif (last in ("AWSLogs", "CloudTrail") or _ACCOUNT.match(last)
                      or _ORG.match(last)):
                    frontier.append(child)
        return sorted(groups)

    # -- listing ----------------------------------------------------------------------------
    def _start_after(self, group: str, state: _Group) -> str:
        start = state.floor
        if self.since is not None:
            since_key = f"{group}{self.since:%Y/%m/%d}/"
            start = max(start, since_key)
        return start

    def list_new(self) -> list[LogFile]:
        out: list[LogFile] = []
        for group in self.discover():
            state = self._groups.setdefault(group, _Group(done=set()))
            done = state.done or set()
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": group}
            start_after = self._start_after(group, state)
            if start_after:
                kwargs["StartAfter"] = start_after
            listed = 0
            while listed < self.max_keys_per_poll:
                page = self.client.list_objects_v2(**kwargs)
                self.requests += 1
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key in done or not key.endswith(S3_SUFFIXES):
                        continue
                    match = _FILE_TIME.search(key.rpartition("/")[2])
                    order = (match.group(1) if match else "") + key
                    out.append(LogFile(uri=f"s3://{self.bucket}/{key}", name=key, group=group,
                                       size=int(obj.get("Size", 0)), order=order))
                    listed += 1
                token = page.get("NextContinuationToken")
                if not token:
                    break
                kwargs["ContinuationToken"] = token
        # Across regions, process by delivery time: the assume event (often in one
        # region's STS) then comes before the calls it explains in another.
        out.sort(key=lambda f: f.order)
        return out

    def read(self, item: LogFile) -> bytes:
        body = self.client.get_object(Bucket=self.bucket, Key=item.name)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    # -- state --------------------------------------------------------------------------------
    def mark_done(self, items: Iterable[LogFile]) -> None:
        touched: set[str] = set()
        for item in items:
            state = self._groups.setdefault(item.group, _Group(done=set()))
            assert state.done is not None
            state.done.add(item.name)
            touched.add(item.group)
        for group in touched:
            self._compact(group, self._groups[group])

    def _compact(self, group: str, state: _Group) -> None:
        """Advance the floor to keys older than (newest done day - lookback)."""
        assert state.done is not None
        newest = max(state.done, default="")
        day = _DAY.match(newest[len(group):])
        if day is None:
            return
        cutoff_day = date(*map(int, day.groups())) - timedelta(days=self.lookback_days)
        cutoff = f"{group}{cutoff_day:%Y/%m/%d}/"
        old = {k for k in state.done if k < cutoff}
        if old:
            state.floor = max(state.floor, max(old))
            state.done -= old

    def state(self) -> dict[str, Any]:
        return {"groups": {
            g: {"floor": s.floor, "done": sorted(s.done or ())} for g, s in self._groups.items()
        }}

    def restore(self, state: dict[str, Any]) -> None:
        self._groups = {
            g: _Group(floor=s.get("floor", ""), done=set(s.get("done", ())))
            for g, s in state.get("groups", {}).items()
        }


class SqsSource:
    """CloudTrail events a few seconds after the call: an EventBridge rule on the
    default bus sends them to an SQS queue, and this source long-polls it.

    Each message (an EventBridge event whose ``detail`` is the CloudTrail record) is
    one item; :meth:`mark_done` — called only once the envelopes it produced were
    acked by Kafka — deletes it. A message not deleted (crash, broker away) comes back
    after the queue's visibility timeout and is read again (at-least-once; the
    pipeline drops repeats by ``eventID``); after the redrive policy's
    ``maxReceiveCount`` receives SQS moves it to the queue's own dead-letter queue.

    The EventBridge rule must be in state ``ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS``
    or read-only calls (``GetSecretValue``, ``AssumeRole*``, ``List*``) never arrive, and
    EventBridge carries only management events (S3 object reads, Lambda invokes and
    other data events only reach the trail's S3 files).
    """

    drain_when_once = True

    def __init__(self, client: Any, queue_url: str, *, wait_s: int = 20,
                 max_messages: int = 100, visibility_timeout_s: int | None = None) -> None:
        self.client = client
        self.queue_url = queue_url
        self.uri = queue_url
        self.wait_s = wait_s
        self.max_messages = max_messages
        self.visibility_timeout_s = visibility_timeout_s
        self._bodies: dict[str, bytes] = {}  # receipt handle → body
        self.counts: dict[str, int] = {"received": 0, "deleted": 0, "delete_failed": 0,
                                       "receives": 0}
        self.lag_s: list[float] = []  # SentTimestamp → received, last poll's messages

    def _receive(self, wait_s: int) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "QueueUrl": self.queue_url, "MaxNumberOfMessages": 10,
            "WaitTimeSeconds": wait_s, "MessageSystemAttributeNames": ["SentTimestamp"],
        }
        if self.visibility_timeout_s is not None:
            kwargs["VisibilityTimeout"] = self.visibility_timeout_s
        self.counts["receives"] += 1
        return list(self.client.receive_message(**kwargs).get("Messages", []))

    def list_new(self) -> list[LogFile]:
        """Long-poll once (up to ``wait_s``), then drain what is ready without waiting,
        up to ``max_messages``."""
        out: list[LogFile] = []
        self.lag_s = []
        self._bodies.clear()  # the last poll's messages were deleted or abandoned
        wait = self.wait_s
        while len(out) < self.max_messages:
            messages = self._receive(wait)
            now = time.time()
            for msg in messages:
                handle = msg["ReceiptHandle"]
                body = msg.get("Body") or ""
                self._bodies[handle] = body.encode() if isinstance(body, str) else body
                sent = (msg.get("Attributes") or {}).get("SentTimestamp")
                if sent is not None:
                    self.lag_s.append(max(0.0, now - int(sent) / 1000))
                out.append(LogFile(uri=f"{self.queue_url}#{msg.get('MessageId', '')}",
                                   name=handle, size=len(self._bodies[handle]),
                                   transient=True))
            self.counts["received"] += len(messages)
            if len(messages) < 10:
                break
            wait = 0
        return out

    def read(self, item: LogFile) -> bytes:
        return self._bodies[item.name]

    def mark_done(self, items: Iterable[LogFile]) -> None:
        handles = [item.name for item in items]
        for start in range(0, len(handles), 10):
            chunk = handles[start:start + 10]
            response = self.client.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk)])
            failed = response.get("Failed") or []
            self.counts["deleted"] += len(chunk) - len(failed)
            self.counts["delete_failed"] += len(failed)
            for failure in failed:  # it comes back after the visibility timeout
                log.warning("sqs: delete failed (%s); the message will be read again",
                            failure.get("Message") or failure.get("Code"))
            for h in chunk:
                self._bodies.pop(h, None)

    def state(self) -> dict[str, Any]:
        return {}  # the queue is the state: what is not deleted comes back

    def restore(self, state: dict[str, Any]) -> None:
        return None


class MultiSource:
    """A file source (S3 or a directory) and the SQS source in one collector, so one
    attributor and one ``eventID`` de-duplication see both. SQS is polled every time
    (its long poll is the wait); the file source at most every ``file_poll_s``. The
    checkpoint is the file source's (the SQS state lives in the queue), so adding
    ``--sqs`` to a running ``--s3`` deployment keeps its checkpoint."""

    drain_when_once = True

    def __init__(self, files: LogSource, sqs: SqsSource, *, file_poll_s: float = 30.0,
                 clock: Any = time.monotonic) -> None:
        self.files = files
        self.sqs = sqs
        self.uri = files.uri
        self.file_poll_s = file_poll_s
        self._clock = clock
        self._next_files = 0.0
        self._owner: dict[LogFile, LogSource] = {}

    @property
    def skipped(self) -> dict[str, int]:
        return dict(getattr(self.files, "skipped", {}))

    def list_new(self) -> list[LogFile]:
        out: list[LogFile] = []
        self._owner.clear()  # the last poll's items were committed or abandoned
        now = self._clock()
        if now >= self._next_files:
            self._next_files = now + self.file_poll_s
            for item in self.files.list_new():
                self._owner[item] = self.files
                out.append(item)
        for item in self.sqs.list_new():
            self._owner[item] = self.sqs
            out.append(item)
        return out

    def read(self, item: LogFile) -> bytes:
        return self._owner[item].read(item)

    def mark_done(self, items: Iterable[LogFile]) -> None:
        by: dict[int, tuple[LogSource, list[LogFile]]] = {}
        for item in items:
            owner = self._owner.pop(item, self.files)
            by.setdefault(id(owner), (owner, []))[1].append(item)
        for owner, batch in by.values():
            owner.mark_done(batch)

    def state(self) -> dict[str, Any]:
        return self.files.state()

    def restore(self, state: dict[str, Any]) -> None:
        self.files.restore(state)
