"""Framed, idempotent publishing to the raw topics, with a bounded spool.

Collectors call :meth:`FramePublisher.submit` (thread-safe, never blocks) for every
envelope. A flush loop groups pending envelopes by (topic, key) into frames and sends
them with an idempotent aiokafka producer (acks=all). While the broker is unreachable
envelopes stay in the spool and are retried with backoff; when the spool is full new
envelopes are dropped and counted (``dropped_spool_full``). Nothing is lost silently.

With ``spool_dir`` set, what is still spooled when :meth:`FramePublisher.stop` gives up
(broker away at shutdown, e.g. a DaemonSet rollout during an outage) is written there as
frames, bounded by ``spool_dir_limit_bytes``, and submitted again by the next
:meth:`FramePublisher.start`; without it, or beyond the bound, those envelopes are
counted in ``dropped_on_stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnknownError

from streams.events import Envelope, Rejected, decode_frame, encode_frame
from streams.kafka_config import PLAINTEXT, KafkaSecurity
from streams.limits import bounded_dead_letter, frames_under, size_limits
from streams.topics import DEADLETTER, raw_topic_for

__all__ = ["FramePublisher", "PublishStats"]

log = logging.getLogger(__name__)
# Bootstrap lists whose brokers refused an idempotent producer (tansu: aiokafka speaks
# InitProducerId v0 only): probed once per process, then every publisher goes without.
_NO_IDEMPOTENCE: set[str] = set()


class _ProbeQuiet(logging.Filter):
    """aiokafka logs the refused InitProducerId at ERROR before raising; during our probe
    that refusal is an expected answer, reported once at info by the publisher."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "InitProducerIdRequest" not in record.getMessage()


@dataclass
class PublishStats:
    submitted: int = 0
    published_events: int = 0
    published_frames: int = 0
    send_failures: int = 0
    dropped_spool_full: int = 0
    dead_lettered_oversized: int = 0  # an event over the size limit alone: cut and hashed
    spooled: int = 0  # gauge: envelopes waiting
    dropped_on_stop: int = 0  # still spooled when stop() gave up, and not kept on disk
    spilled_to_disk: int = 0  # written to spool_dir at stop
    restored_from_disk: int = 0  # read back from spool_dir at start

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class FramePublisher:
    """Buffers envelopes per (topic, key) and publishes them as frames.

    ``topic_for`` maps an envelope to its topic name (default: the raw topic of its
    source). ``max_frame`` caps envelopes per frame; ``spool_limit`` caps envelopes held
    while the broker is away.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "agentstory-collector",
        topic_for: Callable[[Envelope], str] | None = None,
        max_frame: int = 500,
        linger_s: float = 0.05,
        spool_limit: int = 200_000,
        retry_backoff_s: tuple[float, float] = (0.2, 5.0),
        spool_dir: str | Path | None = None,
        spool_dir_limit_bytes: int = 256 * 1024 * 1024,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.security = security or PLAINTEXT  # TLS/SASL: streams.kafka_config
        self.client_id = client_id
        self.topic_for = topic_for or (lambda e: raw_topic_for(e.source).name)
        self.max_frame = max_frame
        self.linger_s = linger_s
        self.spool_limit = spool_limit
        self.retry_backoff_s = retry_backoff_s
        self.spool_dir = Path(spool_dir) if spool_dir is not None else None
        self.spool_dir_limit_bytes = spool_dir_limit_bytes
        self.idempotent = True  # falls back to False when the broker cannot do it
        self.limits = size_limits()  # AGENTSTORY_MAX_MESSAGE_BYTES: frames stay under it
        self.stats = PublishStats()
        self._pending: OrderedDict[tuple[str, str], list[Envelope]] = OrderedDict()
        self._lock = threading.Lock()
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self._closing = False
        self._stopped = False

    # -- collector side -------------------------------------------------------------
    def submit(self, event: Envelope) -> bool:
        """Queue one envelope; False (and counted) when the spool is full."""
        with self._lock:
            if self._stopped:  # a late emit after stop(): nothing would ever send it
                self.stats.dropped_on_stop += 1
                return False
            if self.stats.spooled >= self.spool_limit:
                self.stats.dropped_spool_full += 1
                return False
            self._pending.setdefault((self.topic_for(event), event.key), []).append(event)
            self.stats.submitted += 1
            self.stats.spooled += 1
        return True

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        self.restore_spool()
        self._task = asyncio.create_task(self._run(), name="frame-publisher")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Flush what is pending (bounded by ``timeout_s``), then close."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                log.warning("publisher stop: %d envelopes still spooled", self.stats.spooled)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                await self._producer.stop()
        with self._lock:
            self._stopped = True
        self._spill_leftovers()

    # -- disk spool (restart resilience) --------------------------------------------
    def _spill_leftovers(self) -> None:
        """Keep what could not be published on disk (bounded), else count it dropped."""
        batches = self._take()
        left = sum(len(evs) for _t, _k, evs in batches)
        if not left:
            return
        with self._lock:
            self.stats.spooled -= left
        if self.spool_dir is None:
            self.stats.dropped_on_stop += left
            log.error("publisher stop: %d envelopes dropped (broker unreachable, no "
                      "spool_dir)", left)
            return
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        used = sum(p.stat().st_size for p in self.spool_dir.glob("*.frames"))
        path = self.spool_dir / f"{time.time_ns()}-{os.getpid()}.frames"
        kept = 0
        with path.open("wb") as fh:
            for _topic, _key, events in batches:
                for start in range(0, len(events), self.max_frame):
                    chunk = events[start : start + self.max_frame]
                    frame = encode_frame(chunk) + b"\n"
                    if used + len(frame) > self.spool_dir_limit_bytes:
                        self.stats.dropped_on_stop += len(chunk)
                        continue
                    fh.write(frame)
                    used += len(frame)
                    kept += len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        self.stats.spilled_to_disk += kept
        if not kept:
            path.unlink()
        log.warning("publisher stop: %d envelopes kept in %s, %d dropped (limit)",
                    kept, path, left - kept)

    def restore_spool(self) -> int:
        """Submit again what an earlier stop kept on disk (oldest file first); files are
        removed once read. Returns the number of envelopes restored."""
        if self.spool_dir is None or not self.spool_dir.is_dir():
            return 0
        restored = 0
        for path in sorted(self.spool_dir.glob("*.frames")):
            try:
                lines = path.read_bytes().splitlines()
            except OSError as exc:
                log.warning("spool file %s unreadable: %s", path, exc)
                continue
            for line in lines:
                decoded = decode_frame(line)
                for event in decoded.events:
                    if self.submit(event):
                        restored += 1
                if decoded.rejected:
                    log.warning("spool file %s: %d envelopes no longer valid",
                                path, len(decoded.rejected))
            path.unlink()
        self.stats.restored_from_disk += restored
        return restored

    async def flush(self) -> None:
        """Publish everything pending now; raises KafkaError if the broker refuses."""
        await self._ensure_producer()
        await self._flush_once()

    # -- internals ------------------------------------------------------------------
    async def _ensure_producer(self) -> AIOKafkaProducer:
        async with self._start_lock:  # flush() and the loop may both get here first
            if self._producer is None:
                self._producer = await self._new_producer()
            return self._producer

    async def _new_producer(self) -> AIOKafkaProducer:
        if self.bootstrap_servers in _NO_IDEMPOTENCE:
            self.idempotent = False
        if not self.idempotent:
            return await self._start_producer(idempotent=False)
        quiet, sender_log = _ProbeQuiet(), logging.getLogger("aiokafka.producer.sender")
        sender_log.addFilter(quiet)
        try:
            return await self._start_producer(idempotent=True)
        except UnknownError:
            # aiokafka speaks InitProducerId v0 only, which tansu rejects. Keep acks=all
            # and go on: downstream is at-least-once with deterministic keys anyway.
            log.info("the broker does not grant idempotent producers (the embedded tansu "
                     "does not); publishing with acks=all without idempotence, a retry may "
                     "duplicate a frame")
            _NO_IDEMPOTENCE.add(self.bootstrap_servers)
            self.idempotent = False
            return await self._start_producer(idempotent=False)
        finally:
            sender_log.removeFilter(quiet)

    async def _start_producer(self, *, idempotent: bool) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            enable_idempotence=idempotent,
            acks="all",
            linger_ms=int(self.linger_s * 1000),
            **self.limits.producer_kwargs(),
            **self.security.aiokafka_kwargs(),
        )
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        return producer

    def _take(self) -> list[tuple[str, str, list[Envelope]]]:
        with self._lock:
            batches = [(t, k, evs) for (t, k), evs in self._pending.items()]
            self._pending.clear()
        return batches

    def _put_back(self, topic: str, key: str, events: list[Envelope]) -> None:
        with self._lock:
            newer = self._pending.pop((topic, key), [])
            self._pending[(topic, key)] = events + newer
            self._pending.move_to_end((topic, key), last=False)

    async def _flush_once(self) -> None:
        """Send every pending frame at once, then settle: what failed goes back."""
        producer = self._producer
        assert producer is not None
        batches = self._take()
        sent: list[tuple[str, str, list[Envelope], asyncio.Future[object], bool]] = []
        error: BaseException | None = None
        for i, (topic, key, events) in enumerate(batches):
            for start in range(0, len(events), self.max_frame):
                chunk = events[start : start + self.max_frame]
                try:
                    frames, alone = frames_under(chunk, self.limits.value_bytes)
                    for part, value in frames:  # several when over the size limit
                        future = await producer.send(topic, value, key=key.encode())
                        sent.append((topic, key, part, future, False))
                    for event in alone:  # never sent to fail forever: dead-lettered
                        future = await producer.send(DEADLETTER.name, bounded_dead_letter(
                            Rejected(f"oversized: event of {len(event.to_json())} bytes over "
                                     f"the {self.limits.value_bytes}-byte message limit",
                                     "event", event.to_json()),
                            self.limits.value_bytes, stage="publish", topic=topic,
                            key=key.encode()), key=key.encode()[:1024])
                        sent.append((topic, key, [event], future, True))
                except KafkaError as exc:
                    error = exc
                    done = {id(e) for _, _, part, *_ in sent for e in part}
                    self._put_back(topic, key, [e for e in events[start:]
                                                if id(e) not in done])
                    for topic2, key2, events2 in batches[i + 1 :]:
                        self._put_back(topic2, key2, events2)
                    break
            if error is not None:
                break
        results = await asyncio.gather(*(s[3] for s in sent), return_exceptions=True)
        for (topic, key, chunk, _, lettered), result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                error = error or result
                self._put_back(topic, key, chunk)
                continue
            with self._lock:
                if lettered:
                    self.stats.dead_lettered_oversized += len(chunk)
                else:
                    self.stats.published_frames += 1
                    self.stats.published_events += len(chunk)
                self.stats.spooled -= len(chunk)
        if error is not None:
            self.stats.send_failures += 1
            raise error

    async def _run(self) -> None:
        backoff = self.retry_backoff_s[0]
        while True:
            try:
                await self._ensure_producer()
                await self._flush_once()
                backoff = self.retry_backoff_s[0]
            except (KafkaError, OSError) as exc:
                log.warning("publish failed (%s); %d spooled, retry in %.1fs",
                            exc, self.stats.spooled, backoff)
                if self._closing and self.stats.spooled == 0:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_backoff_s[1])
                continue
            if self._closing and self.stats.spooled == 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.linger_s)
