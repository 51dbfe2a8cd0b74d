"""The CloudTrail collector loop: list → read → pipeline → publish → checkpoint.

The order is the guarantee. Envelopes and dead letters of a batch of files are flushed
to Kafka (acks=all) *before* the checkpoint records those files as done, and the
checkpoint also stores the attributor's key map and held calls. A crash between the two
re-reads at most that batch (at-least-once; ``data["event_id"]`` identifies repeats);
a restart never skips a file and keeps attributing keys issued before it.

Kafka sits behind :class:`Sink`, with :class:`MemorySink` as its in-memory twin for
tests (the httpx ``MockTransport`` pattern).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from streams.events import Envelope
from streams.limits import size_limits

from .pipeline import CloudTrailPipeline
from .sources import Checkpoint, LogFile, LogSource

__all__ = ["CloudTrailCollector", "KafkaSink", "MemorySink", "Sink"]

log = logging.getLogger(__name__)


class Sink(Protocol):
    def submit(self, envelope: Envelope) -> None: ...
    def dead_letter(self, key: bytes, message: bytes) -> None: ...
    async def flush(self) -> None: ...  # raises when the broker did not take it all
    async def close(self) -> None: ...


@dataclass
class MemorySink:
    """Keeps what was flushed; ``fail_next`` makes the next flushes raise, as a broker
    outage would."""

    envelopes: list[Envelope] = field(default_factory=list)
    dead_letters: list[tuple[bytes, bytes]] = field(default_factory=list)
    pending: list[Envelope] = field(default_factory=list)
    pending_dead: list[tuple[bytes, bytes]] = field(default_factory=list)
    fail_next: int = 0
    flushes: int = 0

    def submit(self, envelope: Envelope) -> None:
        self.pending.append(envelope)

    def dead_letter(self, key: bytes, message: bytes) -> None:
        self.pending_dead.append((key, message))

    async def flush(self) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker unreachable (test)")
        self.envelopes.extend(self.pending)
        self.dead_letters.extend(self.pending_dead)
        self.pending.clear()
        self.pending_dead.clear()
        self.flushes += 1

    async def close(self) -> None:
        return None


class KafkaSink:
    """Envelopes through :class:`~collectors.publish.FramePublisher` (frames per key on
    the raw cloud topic); dead letters through a plain producer to the dead-letter topic.
    Nothing runs in the background: ``flush`` sends and waits for the acks, which is
    what lets the checkpoint follow it."""

    def __init__(self, bootstrap_servers: str, *, client_id: str = "agentstory-cloudtrail",
                 deadletter_topic: str | None = None, security: Any = None) -> None:
        from collectors.publish import FramePublisher
        from streams.kafka_config import PLAINTEXT
        from streams.topics import DEADLETTER

        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.deadletter_topic = deadletter_topic or DEADLETTER.name
        self.security = security or PLAINTEXT
        self.publisher = FramePublisher(bootstrap_servers, client_id=client_id,
                                        security=self.security)
        self._dlq: Any = None
        self._dead: list[tuple[bytes, bytes]] = []
        self.dead_letters_sent = 0

    def submit(self, envelope: Envelope) -> None:
        if not self.publisher.submit(envelope):
            raise RuntimeError("publisher spool full; lower --batch-records")

    def dead_letter(self, key: bytes, message: bytes) -> None:
        self._dead.append((key, message))

    async def _dlq_producer(self) -> Any:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import UnknownError

        if self._dlq is None:
            # tansu refuses aiokafka's InitProducerId v0; the publisher found out first
            tries = (True, False) if getattr(self.publisher, "idempotent", True) else (False,)
            for idempotent in tries:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers, client_id=f"{self.client_id}-dlq",
                    enable_idempotence=idempotent, acks="all",
                    **size_limits().producer_kwargs(), **self.security.aiokafka_kwargs())
                try:
                    await producer.start()
                except UnknownError:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    continue
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._dlq = producer
                break
        return self._dlq

    async def flush(self) -> None:
        await self.publisher.flush()
        if not self._dead:
            return
        producer = await self._dlq_producer()
        batch, self._dead = self._dead, []
        try:
            futures = [await producer.send(self.deadletter_topic, msg, key=key)
                       for key, msg in batch]
            await asyncio.gather(*futures)
        except BaseException:
            self._dead = batch + self._dead  # resend all: at-least-once
            raise
        self.dead_letters_sent += len(batch)

    async def close(self) -> None:
        await self.publisher.stop()
        if self._dlq is not None:
            with contextlib.suppress(Exception):
                await self._dlq.stop()


class CloudTrailCollector:
    """Drives one source into one sink, checkpointing after each flushed batch."""

    def __init__(
        self,
        source: LogSource,
        pipeline: CloudTrailPipeline,
        sink: Sink,
        checkpoint: Checkpoint | None = None,
        *,
        batch_records: int = 5000,
        retry_backoff_s: tuple[float, float] = (0.2, 10.0),
        checkpoint_every_s: float = 0.0,
        clock: Any = None,
    ) -> None:
        self.source = source
        self.pipeline = pipeline
        self.sink = sink
        self.checkpoint = checkpoint
        self.batch_records = batch_records
        self.retry_backoff_s = retry_backoff_s
        self.checkpoint_every_s = checkpoint_every_s
        self._clock = clock or time.monotonic
        self._saved_at = float("-inf")
        self.counts: dict[str, int] = {"batches": 0, "read_errors": 0, "flush_retries": 0,
                                       "list_errors": 0, "checkpoints": 0}
        self._stopping = asyncio.Event()

    def restore(self) -> bool:
        """Load the checkpoint (source state and attribution state); False when none."""
        if self.checkpoint is None:
            return False
        doc = self.checkpoint.load()
        if doc is None:
            return False
        if doc.get("source") != self.source.uri:
            raise ValueError(
                f"checkpoint {self.checkpoint.path} belongs to {doc.get('source')!r}, "
                f"not {self.source.uri!r}; use another --checkpoint")
        self.source.restore(doc.get("files") or {})
        self.pipeline.attributor.restore(doc.get("attributor"))
        if self.pipeline.dedup is not None:
            self.pipeline.dedup.restore(doc.get("dedup"))
        return True

    def stop(self) -> None:
        self._stopping.set()

    async def _flush(self) -> None:
        backoff = self.retry_backoff_s[0]
        while True:
            try:
                await self.sink.flush()
                return
            except Exception as exc:
                if self._stopping.is_set():
                    raise
                self.counts["flush_retries"] += 1
                log.warning("flush failed (%s); retry in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_backoff_s[1])

    async def _commit(self, files: Iterable[LogFile], *, force: bool = False) -> None:
        """Flush, then mark the files done (an SQS source deletes its messages here),
        then checkpoint. Items whose state lives elsewhere (SQS messages: the queue)
        need no checkpoint of their own, so with ``checkpoint_every_s`` a batch of
        only those saves the attributor's state at most that often."""
        files = list(files)
        await self._flush()
        self.source.mark_done(files)
        self.counts["batches"] += 1
        if self.checkpoint is None:
            return
        needs_file_state = any(not f.transient for f in files)
        now = self._clock()
        if not (force or needs_file_state or now - self._saved_at >= self.checkpoint_every_s):
            return
        doc: dict[str, Any] = {
            "v": 1,
            "source": self.source.uri,
            "files": self.source.state(),
            "attributor": self.pipeline.attributor.snapshot(),
        }
        if self.pipeline.dedup is not None:
            doc["dedup"] = self.pipeline.dedup.snapshot()
        await asyncio.to_thread(self.checkpoint.save, doc)
        self._saved_at = now
        self.counts["checkpoints"] += 1

    async def poll(self, *, follow: bool = False) -> int:
        """Process every file the source lists now; returns how many were done. When
        following, a listing that fails (S3 or SQS unreachable) is retried after a
        pause instead of ending the collector."""
        try:
            files = await asyncio.to_thread(self.source.list_new)
        except Exception as exc:
            if not follow:
                raise
            self.counts["list_errors"] += 1
            log.warning("cannot list %s (%s); retrying", self.source.uri, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.retry_backoff_s[1])
            return 0
        batch: list[LogFile] = []
        records = 0
        done = 0
        for item in files:
            if self._stopping.is_set():
                break
            try:
                raw = await asyncio.to_thread(self.source.read, item)
            except Exception as exc:  # S3/disk trouble: retry this file next poll
                self.counts["read_errors"] += 1
                log.warning("cannot read %s (%s); will retry", item.uri, exc)
                break
            result = self.pipeline.process_file(item.uri, raw)
            for envelope in result.envelopes:
                self.sink.submit(envelope)
            for key, message in result.dead_letters:
                self.sink.dead_letter(key, message)
            batch.append(item)
            records += result.records
            if records >= self.batch_records:
                await self._commit(batch)
                done += len(batch)
                batch, records = [], 0
        if batch:
            await self._commit(batch)
            done += len(batch)
        return done

    async def finish(self) -> None:
        """End of a one-shot run: release what still waits for an assume event."""
        for envelope in self.pipeline.drain():
            self.sink.submit(envelope)
        await self._commit([], force=True)

    async def run(self, *, follow: bool, poll_s: float = 30.0) -> None:
        while True:
            done = await self.poll(follow=follow)
            log.info("cloudtrail: %d files this poll; %s; %s", done, self.pipeline.counts,
                     self.pipeline.attributor.counts)
            if not follow and done and getattr(self.source, "drain_when_once", False):
                continue  # a queue hands out a bounded batch per poll: read it empty
            if not follow or self._stopping.is_set():
                break
            if poll_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), poll_s)
            if self._stopping.is_set():
                break
        if follow and self.checkpoint is not None:
            try:  # what a throttled save left out
                await self._commit([], force=True)
            except Exception as exc:
                log.warning("final checkpoint not written (%s); the last one stands", exc)
        if not follow:
            await self.finish()
