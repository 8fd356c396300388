"""The progress publisher of one job: seq, persist-then-publish, retry buffer, throttling.

Rules (DESIGN section 4):

* every event gets the next per-job ``seq``; it is INSERTed together with the job's
  counters (:func:`models.history.record_event`), committed, and only then emitted to the
  owner's room;
* when the DB write fails the event is kept, in order, in a bounded in-memory backlog
  that is re-persisted as soon as the DB answers (before the next event is persisted,
  by a background retry loop, and at job end for a bounded time); when the backlog is
  full the job waits for the DB rather than growing memory;
* an event is published only once it is durable somewhere: in the DB, or - while its
  DB write is failing - in the Redis journal (:mod:`tasks.journal`), written BEFORE the
  publish.  A journaled event that reaches the DB later is removed from the journal;
  if the worker dies first, the next run of the job writes the journal into the
  history (:func:`tasks.journal.recover`) instead of reusing those seqs.  When the
  journal write fails too (Redis down), the event is not published live (counted as a
  publish failure): clients get it from the history once it is persisted, and if the
  worker dies first nobody saw it, so its seq may be reused.  After such an event,
  later buffered events are not journaled (nor published) either until the backlog
  drains, so the journal always holds a contiguous run of seqs.  Without a journal
  (``journal=None``: tests, one-off writers) the event is published anyway, as before;
* when the publish fails (:class:`PublishError`) it is counted, never retried live:
  clients recover from the history.

Counters are plain attributes on each publisher (:class:`PublisherStats`), mirrored in
the process's metrics (:mod:`quart_app.core.metrics`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any, Protocol

from tortoise.exceptions import IntegrityError

from models.entities import JobProgressEvent, JobStatus
from models.events import EventStatus, ProgressEvent, job_event
from models.history import record_event
from quart_app.core import metrics
from quart_app.core.config import Config
from socket_layer.emitter import ProgressEmitter, PublishError
from tasks.journal import Journal, JournalError

log = logging.getLogger(__name__)

#: seconds one DB write may take before it counts as failed (the DB is "unreachable")
DB_WRITE_TIMEOUT = 5.0
#: how often the background loop retries a non-empty backlog
RETRY_INTERVAL = 0.25


class Emitter(Protocol):
    async def publish_progress(self, user_id: object, event: dict[str, Any]) -> None: ...


def make_emitter(config: Config) -> ProgressEmitter:
    """The socket layer's emitter for this config (same wire as the web processes).

    Raises RuntimeError when REDIS_URL is not set.
    """
    if not config.redis_url:
        raise RuntimeError("REDIS_URL is required to publish progress")
    return ProgressEmitter.for_config(config)


class LostOwnership(RuntimeError):
    """Another writer owns this job's history now (seq taken, status changed) or the job
    is gone; the worker must stop touching it."""


@dataclass
class PublisherStats:
    """Counters (monotonic, except ``backlog``) for metrics."""

    events_persisted: int = 0
    events_published: int = 0
    events_throttled: int = 0
    persist_failures: int = 0
    publish_failures: int = 0
    events_replayed: int = 0
    events_lost: int = 0
    #: events written to the Redis journal because their DB write failed
    events_journaled: int = 0
    #: events a (re)claim wrote from the journal into the history (a previous run died)
    events_recovered: int = 0
    backlog_full_waits: int = 0
    backlog: int = 0

    def add(self, name: str, amount: int = 1) -> None:
        setattr(self, name, getattr(self, name) + amount)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class _Pending:
    """One buffered DB write: an event, or another write (a video's result) that must be
    applied before the events that follow it."""

    event: ProgressEvent | None = None
    action: Callable[[], Awaitable[object]] | None = None
    #: the event is in the Redis journal (so it may be, and was, published)
    journaled: bool = False
    #: the event was buffered AND published (journaled, or there is no journal)
    shown: bool = False


class JobPublisher:
    """Publishes the progress of one job; one instance per job run, one writer per job.

    ``last_seq`` is the job's ``last_seq`` when the worker claimed it.  The owner id is
    given once (looked up once per job by the caller).
    """

    def __init__(
        self,
        *,
        job_id: uuid.UUID,
        owner_id: object,
        last_seq: int,
        total_videos: int,
        emitter: Emitter,
        buffer_size: int,
        db_timeout: float = DB_WRITE_TIMEOUT,
        retry_interval: float = RETRY_INTERVAL,
        journal: Journal | None = None,
    ) -> None:
        """``journal``: where events whose DB write failed are made durable before they
        are published; None publishes them anyway (no durability across a crash)."""
        self.job_id = job_id
        self.owner_id = owner_id
        self.last_seq = last_seq
        self.total_videos = total_videos
        self.emitter = emitter
        self.buffer_size = buffer_size
        self.db_timeout = db_timeout
        self.retry_interval = retry_interval
        self.stats = PublisherStats()
        self.journal = journal
        self._backlog: deque[_Pending] = deque()
        #: backlog events that are NOT journaled: while there is one, later events are
        #: not journaled either, so the journal always holds a contiguous run of seqs
        #: (a recovery cannot store seq n+1 without seq n)
        self._unjournaled = 0
        self._lock = asyncio.Lock()
        self._retry_task: asyncio.Task[None] | None = None
        self._lost: LostOwnership | None = None

    # -- counters -------------------------------------------------------------------
    def _count(self, name: str, amount: int = 1) -> None:
        self.stats.add(name, amount)
        metrics.publisher_count(name, amount)

    def _set_backlog(self) -> None:
        delta = len(self._backlog) - self.stats.backlog
        self.stats.backlog += delta
        metrics.backlog_changed(delta)

    @property
    def backlog_size(self) -> int:
        return len(self._backlog)

    # -- building ---------------------------------------------------------------------
    def build(
        self,
        *,
        status: EventStatus,
        progress: int,
        current_video: int,
        processed_videos: int,
        failed_videos: int,
        message: str,
        video_id: uuid.UUID | None = None,
        video_title: str | None = None,
        error: str | None = None,
    ) -> ProgressEvent:
        """A validated event (:func:`models.events.job_event`) with the next seq (the
        seq is taken: it will be used)."""
        self.last_seq += 1
        return job_event(
            self.job_id,
            self.last_seq,
            status,
            message,
            total_videos=self.total_videos,
            processed_videos=processed_videos,
            failed_videos=failed_videos,
            progress=progress,
            current_video=current_video,
            video_id=video_id,
            video_title=video_title,
            error=error,
        )

    # -- sending ----------------------------------------------------------------------
    async def send(self, event: ProgressEvent) -> None:
        """Persist ``event`` (or buffer it when the DB fails), then publish it.

        An event that is in neither the DB nor the journal is not published (counted
        as a publish failure; clients get it from the history once it is persisted).
        Raises :class:`LostOwnership` when the DB says another writer owns the job.
        """
        if await self.persist(event):
            await self.publish(event)
        else:
            self._count("publish_failures")
            log.warning(
                "job %s: seq %d is neither stored nor journaled; not published live",
                self.job_id,
                event.seq,
            )

    async def persist(self, event: ProgressEvent) -> bool:
        """Store ``event`` after everything buffered before it; buffer it on DB failure
        (journaling it first, when there is a journal).

        Returns whether the event may be published: it is in the DB, or in the journal,
        or it is buffered and this publisher has no journal.
        """
        return await self.write(_Pending(event=event))

    async def write_other(self, action: Callable[[], Awaitable[object]]) -> None:
        """Run a DB write that must land before the next event (e.g. a video's result),
        buffering it in order when the DB fails."""
        await self.write(_Pending(action=action))

    async def write(self, item: _Pending) -> bool:
        """Write ``item`` now, or buffer it (in order) when the DB fails; for an event,
        returns whether it is durable enough to publish (see :meth:`persist`)."""
        if self._lost is not None:
            raise self._lost
        async with self._lock:
            await self._flush_locked()
            attempted = not self._backlog
            if attempted and await self._try(item):
                if self._lost is not None:
                    raise self._lost
                return True
            durable = True
            if item.event is not None:
                # BEFORE it can be published: a crash from here on must not lose it
                durable = item.shown = await self._journal_locked(item)
            self._backlog.append(item)
            if item.event is not None:
                self._count("persist_failures")
                if not attempted:
                    # queued behind a write that just failed (in an outage usually a
                    # video row): a failed event write too, or the metric - and the DB
                    # write error alert - would stay at 0 through the whole outage
                    metrics.persist_failed()
            self._set_backlog()
        if self._lost is not None:
            raise self._lost
        self._ensure_retry_loop()
        if len(self._backlog) >= self.buffer_size:
            # Bounded memory: rather than drop an event (which would leave a hole in
            # the history forever) the job waits here until the DB answers.
            self._count("backlog_full_waits")
            log.warning(
                "job %s: retry buffer full (%d), waiting for the DB",
                self.job_id,
                len(self._backlog),
            )
            while len(self._backlog) >= self.buffer_size and self._lost is None:
                await asyncio.sleep(self.retry_interval)
                async with self._lock:
                    await self._flush_locked()
            if self._lost is not None:
                raise self._lost
        return durable

    async def _journal_locked(self, item: _Pending) -> bool:
        """Journal a buffered event (under the lock, before it joins the backlog); True
        when it may be published."""
        assert item.event is not None
        if self.journal is None:
            return True
        if self._unjournaled == 0:
            try:
                await self.journal.put(item.event)
            except JournalError as exc:
                log.warning(
                    "job %s: seq %d could not be journaled either (%s)",
                    self.job_id,
                    item.event.seq,
                    exc,
                )
            else:
                item.journaled = True
                self._count("events_journaled")
                return True
        self._unjournaled += 1
        return False

    async def publish(self, event: ProgressEvent) -> None:
        """Emit ``event`` to the owner's room; a failure is counted, not retried."""
        data = event.to_wire()
        try:
            await self.emitter.publish_progress(self.owner_id, data)
        except PublishError as exc:
            self._count("publish_failures")
            log.warning("job %s: publish of seq %d failed: %s", self.job_id, event.seq, exc)
            return
        except Exception:  # a bug or an unexpected client error must not stop the job
            self._count("publish_failures")
            log.exception("job %s: publish of seq %d failed", self.job_id, event.seq)
            return
        self._count("events_published")

    def note_throttled(self) -> None:
        """Count an event the throttling policy did not send."""
        self._count("events_throttled")

    async def publish_unpersisted(self, event: ProgressEvent) -> None:
        """Emit an event that must not be stored (the job was deleted)."""
        await self.publish(event)

    # -- the backlog --------------------------------------------------------------------
    async def _try(self, item: _Pending) -> bool:
        """One write attempt; True when it is in the DB. Raises nothing but records a
        lost ownership in ``self._lost``."""
        try:
            if item.event is not None:
                started = time.perf_counter()
                ok = await asyncio.wait_for(
                    record_event(item.event, expect_status=JobStatus.PROCESSING),
                    self.db_timeout,
                )
                if ok:
                    metrics.observe_persist(time.perf_counter() - started)
                if not ok and not await self._already_stored(item.event):
                    if item.event.seq == self.last_seq and not item.shown:
                        self.last_seq -= 1  # never stored nor published: the seq is free
                    self._lost = LostOwnership(
                        f"job {self.job_id}: seq {item.event.seq} refused (job gone, "
                        "status changed or another writer)"
                    )
                    return True  # nothing more can be done with it
                self._count("events_persisted")
            else:
                assert item.action is not None
                await asyncio.wait_for(item.action(), self.db_timeout)
            return True
        except IntegrityError:
            if item.event is not None and await self._already_stored(item.event):
                self._count("events_persisted")
                return True
            self._lost = LostOwnership(f"job {self.job_id}: seq conflict")
            return True
        except Exception as exc:  # asyncpg/OS/timeout errors: the DB is unreachable
            if item.event is not None:
                metrics.persist_failed()
            log.warning(
                "job %s: DB write failed (%s: %s); buffering", self.job_id, type(exc).__name__, exc
            )
            return False

    async def _already_stored(self, event: ProgressEvent) -> bool:
        """After a write whose outcome was unknown (connection cut after COMMIT): is this
        exact event in the DB already?"""
        try:
            row = await asyncio.wait_for(
                JobProgressEvent.filter(job_id=event.job_id, seq=event.seq)
                .limit(1)
                .values_list("progress_data", flat=True),
                self.db_timeout,
            )
        except Exception:
            return False
        return bool(row) and row[0] == event.to_wire()

    async def _flush_locked(self) -> bool:
        """Write buffered items in order until one fails; True when the backlog is empty.

        Journaled events that reached the DB are removed from the journal afterwards
        (best effort: an entry left behind equals its stored row, which a recovery
        recognises and drops).  Events refused by the DB (lost ownership) stay in the
        journal: the job is gone (its journal expires or was deleted with it) or
        another writer took it over (and recovered the journal when it claimed).
        """
        stored: list[int] = []
        try:
            while self._backlog and self._lost is None:
                item = self._backlog[0]
                if not await self._try(item):
                    return False
                self._backlog.popleft()
                self._forget(item)
                if item.event is not None:
                    self._count("events_replayed")
                    if item.journaled and self._lost is None:
                        stored.append(item.event.seq)
                self._set_backlog()
            if self._lost is not None and self._backlog:
                self._count("events_lost", sum(1 for i in self._backlog if i.event is not None))
                self._clear_backlog()
            return not self._backlog
        finally:
            if stored:
                await self._unjournal(stored)

    def _forget(self, item: _Pending) -> None:
        if item.event is not None and not item.journaled and self.journal is not None:
            self._unjournaled -= 1

    def _clear_backlog(self) -> None:
        self._backlog.clear()
        self._unjournaled = 0
        self._set_backlog()

    async def _unjournal(self, seqs: list[int]) -> None:
        if self.journal is None:
            return
        try:
            await self.journal.remove(self.job_id, seqs)
        except JournalError as exc:  # harmless: each entry equals its stored row
            log.warning("job %s: journal entries %s not removed: %s", self.job_id, seqs, exc)

    def _ensure_retry_loop(self) -> None:
        if self._retry_task is None or self._retry_task.done():
            self._retry_task = asyncio.create_task(self._retry_loop())

    async def _retry_loop(self) -> None:
        while self._backlog and self._lost is None:
            await asyncio.sleep(self.retry_interval)
            async with self._lock:
                if await self._flush_locked():
                    log.info("job %s: DB answers again; retry buffer flushed", self.job_id)
                    return

    async def drain(self, wait_seconds: float) -> bool:
        """At job end: keep retrying the backlog for at most ``wait_seconds``.

        Returns True when everything is in the DB; otherwise logs and counts what is lost.
        """
        deadline = time.monotonic() + wait_seconds
        while True:
            async with self._lock:
                if await self._flush_locked():
                    break
            if time.monotonic() >= deadline:
                lost = sum(1 for i in self._backlog if i.event is not None)
                self._count("events_lost", lost)
                kept = sum(1 for i in self._backlog if i.journaled)
                log.error(
                    "job %s: DB still unreachable; %d buffered event(s) lost to this run"
                    " (%d of them kept in the journal for the job's next claim)",
                    self.job_id,
                    lost,
                    kept,
                )
                self._clear_backlog()
                break
            await asyncio.sleep(self.retry_interval)
        if self._retry_task is not None:
            self._retry_task.cancel()
        return self._lost is None and not self._backlog and self.stats.events_lost == 0

    def note_recovered(self, events: list[ProgressEvent]) -> None:
        """A (re)claim wrote ``events`` from the journal into the history: continue
        after them (their seqs are taken) and count them."""
        if events:
            self.last_seq = max(self.last_seq, events[-1].seq)
            self._count("events_recovered", len(events))

    @property
    def lost_ownership(self) -> LostOwnership | None:
        return self._lost
