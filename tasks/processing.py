"""The RQ job ``tasks.process_video_list(job_id)`` (DESIGN sections 4 and 7).

One run of a job:

1. claim it with a conditional transition ``pending -> processing`` (or re-claim a
   ``processing`` job when this is an RQ retry of the same RQ job, or its heartbeat is
   stale: the previous worker died); then recover the job's Redis journal
   (:mod:`tasks.journal`): events a dead run published while its DB writes failed go
   into the history as clients saw them, and this run continues after them;
2. process its videos by position, skipping those already ``ready``/``failed`` (a resumed
   run continues after the last finished video, seq continuing from the job's last_seq);
   per video fetch -> probe -> thumbnail; a failing video is marked failed and the job
   goes on;
3. before each video re-read the job: ``cancel_requested`` -> a final persisted
   ``cancelled`` event; row gone (deleted) -> a ``cancelled`` event that is published but
   not stored; stop either way;
4. end with ``completed`` (progress 100), or ``failed`` when every video failed or a fatal
   error stopped the run.

A background task refreshes ``heartbeat_at`` while the job runs; the stale-job check
(:mod:`tasks.stale`) relies on it.

Under RQ a run is one time slice (DESIGN section 7): before its claim it asks for one of
its owner's USER_MAX_ACTIVE_JOBS slots (:mod:`tasks.slices`; refused -> the job is
deferred: a new RQ job :func:`tasks.slices.defer_delay` later, named on the row, the run
ends ``deferred``).  It then processes videos until SLICE_SECONDS / SLICE_VIDEOS are
used up and yields: its heartbeat stops, the row's ``rq_job_id`` is moved (conditionally
on still naming this run) to a fresh RQ job enqueued at the back of the job's priority
queue with this run's retries left, and the run ends ``yielded``.  The next slice's
claim is then the same-RQ-job re-claim, so there is never a second writer, and it
continues from the saved video rows and last_seq like a resumed run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from models.db import close_db, open_db
from models.entities import JobStatus, ProcessingJob, Video, VideoStatus
from models.events import ProgressEvent, utcnow
from models.jobs import abandon_videos, plural
from quart_app.core import metrics, metrics_multiprocess
from quart_app.core.config import Config
from quart_app.core.logs import bind_log_context, log_context
from quart_app.core.redis_pools import PoolLimits, async_client, sync_client
from tasks.journal import Journal, RedisJournal, recover
from tasks.media import MediaError, ProcessedMedia, process_media
from tasks.publisher import Emitter, JobPublisher, LostOwnership, make_emitter
from tasks.queue import enqueue_processing, next_rq_job_id, queue_for
from tasks.rq_meta import MetaJob, RqMetaProgress
from tasks.slices import UserSlots, add_elapsed, ask_again_in, elapsed, slot_rules, waiting_rq
from tasks.stale import alive_key
from tasks.throttle import ThrottlePolicy

log = logging.getLogger(__name__)

Processor = Callable[[Video, Config], Awaitable[ProcessedMedia]]
DONE_VIDEO_STATUSES = (VideoStatus.READY, VideoStatus.FAILED)
#: seconds the end of a job waits for an unreachable DB to take the buffered events
DRAIN_TIMEOUT = 30.0
DB_READ_TIMEOUT = 5.0


def heartbeat_interval(config: Config) -> float:
    """How often a running job refreshes heartbeat_at: well inside STALE_JOB_SECONDS."""
    return max(0.2, min(10.0, config.stale_job_seconds / 4))


async def default_processor(video: Video, config: Config) -> ProcessedMedia:
    return await process_media(video.source, video.id, config)


async def process_video_list(job_id: str, pace_s: float = 0.0) -> str:
    """The RQ job: process ProcessingJob ``job_id``; returns how the run ended.

    Reads the worker's environment (Config.from_env) and opens/closes the DB itself, since
    RQ runs each async job in a fresh event loop.  ``pace_s``: the demo's pace (see
    :func:`run_job`); 0 for every real job.
    """
    config = Config.from_env()
    rq_job_id: str | None = None
    current = None
    with contextlib.suppress(Exception):
        from rq import get_current_job

        current = get_current_job()
        rq_job_id = current.id if current is not None else None
    metrics_multiprocess.compact_now()  # fold the files earlier work-horses left
    started = time.perf_counter()
    outcome = "error"  # what an exception out of run_job counts as
    try:
        with log_context(job_id=job_id):  # every log line of this run names the job
            outcome = await run_job(
                job_id, config, rq_job_id=rq_job_id, manage_db=True, rq_job=current, pace_s=pace_s
            )
            return outcome
    finally:
        metrics.job_run_ended(outcome, time.perf_counter() - started)


async def run_job(
    job_id: str | uuid.UUID,
    config: Config,
    *,
    rq_job_id: str | None = None,
    manage_db: bool = False,
    processor: Processor = default_processor,
    emitter: Emitter | None = None,
    clock: Callable[[], float] = time.monotonic,
    drain_timeout: float = DRAIN_TIMEOUT,
    on_publisher: Callable[[JobPublisher], None] | None = None,
    journal: Journal | None = None,
    rq_job: MetaJob | None = None,
    pace_s: float = 0.0,
    sliced: bool | None = None,
) -> str:
    """Run one job (one slice of it under RQ); returns
    ``completed|failed|cancelled|deleted|skipped|lost|yielded|deferred``.

    ``skipped``: nothing to do (gone, already final, or another worker holds it).
    ``lost``: another writer took over the job mid-run.  ``yielded``: the slice is over
    and the next one is enqueued; ``deferred``: the owner's slots were all taken, the
    job asks again later (both only when ``sliced``).  A run whose journal
    recovery (:func:`tasks.journal.recover`) stored the job's final event returns that
    event's status without processing anything.  Raises only for errors that happen
    before the run started processing (the DB unreachable at start, the journal
    unreadable at a claim), so RQ - or the stale-job check - runs it again.

    ``journal``: the Redis journal of unpersisted events; by default one on
    ``config.redis_url`` (None without Redis: then nothing is journaled or recovered).
    ``rq_job``: the RQ job running this, whose ``meta`` mirrors the progress events.
    ``pace_s``: the demo pace (``reeltrack demo --duration``): each video takes at least
    this many seconds, so a newcomer can watch the dashboard move; 0 (every real job)
    processes at full speed.  ``sliced``: take turns (slices, user slots); default: when
    run by RQ (``rq_job_id``) with Redis configured.
    """
    job_uuid = uuid.UUID(str(job_id))
    if sliced is None:
        sliced = rq_job_id is not None and bool(config.redis_url)
    if manage_db:
        await open_db(config.database_url)
    own_emitter = None
    own_journal: RedisJournal | None = None
    turns: _Turns | None = None
    try:
        if sliced:
            assert config.redis_url, "slices need Redis"
            turns = _Turns(job_uuid, config, rq_job_id, rq_job, pace_s)
            admitted = await turns.admit()
            if admitted != "admitted":
                return admitted
        job = await claim(job_uuid, config, rq_job_id)
        if job is None:
            return "skipped"
        bind_log_context(job_id=job_uuid, user_id=job.owner_id)
        if journal is None and config.redis_url:
            own_journal = journal = RedisJournal.from_url(
                config.redis_url, limits=PoolLimits.of(config)
            )
        recovered: list[ProgressEvent] = []
        if journal is not None:
            # a run that died while its DB writes failed may have published events the
            # DB does not hold: they become the history before this run adds to it
            # (raises JournalError when Redis cannot tell: better retried than reused)
            recovery = await recover(journal, job_uuid, job.last_seq)
            if recovery.refused:
                return "skipped"
            recovered = recovery.recovered
            if recovery.last_event is not None and recovery.last_event.is_final:
                log.warning("job %s: the recovered history ends the job", job_uuid)
                _count_finished(job, str(recovery.last_event.status))
                return str(recovery.last_event.status)
        if emitter is None:
            own_emitter = make_emitter(config)
            emitter = own_emitter
        publisher = JobPublisher(
            job_id=job_uuid,
            owner_id=job.owner_id,  # looked up once per job
            last_seq=job.last_seq,
            total_videos=job.total_videos,
            emitter=emitter,
            buffer_size=config.retry_buffer_size,
            journal=journal,
        )
        publisher.note_recovered(recovered)
        if on_publisher is not None:
            on_publisher(publisher)
        # Progress never goes back below what clients saw.  The counters, by contrast,
        # restart from the saved video rows: a video whose result was only in the dead
        # run's retry buffer is processed (and reported) again - acceptable, it is
        # rare and the history stays true to what was shown.
        floor = recovered[-1].progress if recovered else 0
        run = _Run(
            job,
            config,
            publisher,
            processor,
            clock,
            progress_floor=floor,
            meta=RqMetaProgress(rq_job) if rq_job is not None else None,
            pace_s=pace_s,
            sliced=sliced,
            spent_s=await turns.spent() if turns is not None else 0.0,
        )
        heartbeat = asyncio.create_task(
            _heartbeat_loop(
                job_uuid,
                heartbeat_interval(config),
                redis_url=config.redis_url,
                alive_ttl=config.stale_job_seconds,
                on_beat=turns.refresh if turns is not None else None,
            )
        )
        try:
            outcome = await run.execute()
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await publisher.drain(drain_timeout)
        if turns is not None:
            await turns.add_spent(run.slice_seconds())
            if outcome == "yielded":
                # the heartbeat is stopped: nothing of this run writes the row any more
                outcome = await turns.hand_over(job)
                if outcome == "deleted":
                    await run.deleted()
        _count_finished(job, outcome)
        return outcome
    finally:
        if turns is not None:
            await turns.close()
        if own_emitter is not None:
            await own_emitter.close()
        if own_journal is not None:
            await own_journal.close()
        if manage_db:
            await close_db()


class _Turns:
    """A sliced run's dealings with its owner's slots, its slice budget and the next
    slice's RQ job."""

    def __init__(
        self,
        job_id: uuid.UUID,
        config: Config,
        rq_job_id: str | None,
        rq_job: MetaJob | None,
        pace_s: float,
    ) -> None:
        assert config.redis_url
        self.job_id = job_id
        self.config = config
        self.rq_job_id = rq_job_id
        self.retries_left = getattr(rq_job, "retries_left", None)
        self.pace_s = pace_s
        self.owner_id: uuid.UUID | str | None = None
        self.priority = "normal"
        self.holding = False  # this run holds one of the owner's slots
        self.slots = UserSlots.from_url(
            config.redis_url, **slot_rules(config), limits=PoolLimits.of(config)
        )

    async def admit(self) -> str:
        """``admitted`` (this run holds one of the owner's slots), ``deferred`` (a later
        RQ job asks again) or ``skipped`` (nothing to run, or not this run's turn)."""
        row = await ProcessingJob.get_or_none(id=self.job_id)
        if row is None or JobStatus(row.status).is_final:
            if row is not None:
                await self.slots.release(row.owner_id, self.job_id)  # leave the waiters
            return "skipped"
        self.owner_id = row.owner_id
        self.priority = str(row.priority)
        # the RQ job that asks again if this one is refused (a release wakes it)
        next_id = next_rq_job_id(self.job_id)
        turn = await self.slots.start(
            row.owner_id, self.job_id, self.priority, self._waiting_rq(next_id)
        )
        if turn.granted:
            self.holding = True
            return "admitted"
        moved = await self._rename(row, [JobStatus.PENDING, JobStatus.PROCESSING], next_id)
        if moved is None:
            return "skipped"
        delay = ask_again_in(turn)
        log.info(
            "job %s: its owner's slots are taken (%d waiting ahead); asking again in %gs",
            self.job_id,
            turn.ahead,
            delay,
        )
        await self._enqueue(moved, delay_s=delay)
        return "deferred"

    async def hand_over(self, job: ProcessingJob) -> str:
        """End the slice: the row names a new RQ job, the slot is given back, that RQ
        job is enqueued at the back of the job's queue.  ``yielded``, or ``deleted`` /
        ``lost`` when the row no longer names this run."""
        moved = await self._rename(
            job, [JobStatus.PROCESSING], next_rq_job_id(self.job_id), beat=True
        )
        if moved is None:
            exists = await ProcessingJob.filter(id=self.job_id).exists()
            return "lost" if exists else "deleted"
        # released first (waking the owner's best waiters): the next slice asks for a
        # slot behind the owner's other waiting jobs, and goes into the queue only with one
        assert self.owner_id is not None
        await self.slots.release(self.owner_id, self.job_id)
        self.holding = False
        turn = await self.slots.enter(
            self.owner_id, self.job_id, self.priority, self._waiting_rq(moved)
        )
        await self._enqueue(moved, delay_s=0.0 if turn.granted else ask_again_in(turn))
        log.info(
            "job %s: slice over; continues as RQ job %s%s",
            self.job_id,
            moved,
            "" if turn.granted else " when its owner's turn comes",
        )
        return "yielded"

    def _waiting_rq(self, rq_job_id: str) -> str:
        return waiting_rq(rq_job_id, queue_for(self.priority))

    async def _rename(
        self, row: ProcessingJob, statuses: list[JobStatus], new_id: str, *, beat: bool = False
    ) -> str | None:
        """Point the row at RQ job ``new_id`` if it still names this run; the id, or None."""
        fields: dict[str, Any] = {"rq_job_id": new_id}
        if beat:  # the next slice may wait a while in the queue; it is not stale
            fields["heartbeat_at"] = utcnow()
        current = self.rq_job_id or row.rq_job_id
        updated = await ProcessingJob.filter(
            id=self.job_id, status__in=statuses, rq_job_id=current
        ).update(**fields)
        return new_id if updated == 1 else None

    async def _enqueue(self, rq_job_id: str, *, delay_s: float = 0.0) -> None:
        """Enqueue the job's next RQ job; when Redis refuses, the stale-job check
        enqueues it (the row names it)."""

        def enqueue() -> None:
            assert self.config.redis_url
            client = sync_client(
                self.config.redis_url, PoolLimits(size=1, timeout=5.0), socket_timeout=5
            )
            try:
                enqueue_processing(
                    client,
                    self.job_id,
                    owner_id=self.owner_id,
                    priority=self.priority,
                    pace_s=self.pace_s,
                    rq_job_id=rq_job_id,
                    retries_left=self.retries_left,
                    delay_s=delay_s,
                )
            finally:
                client.close()

        try:
            await asyncio.to_thread(enqueue)
        except Exception as exc:
            log.error("job %s: next RQ job %s not enqueued (%s)", self.job_id, rq_job_id, exc)

    async def spent(self) -> float:
        return await elapsed(self.slots.redis, self.job_id)

    async def add_spent(self, seconds: float) -> None:
        await add_elapsed(self.slots.redis, self.job_id, seconds)

    async def refresh(self) -> None:
        if self.holding and self.owner_id is not None:
            await self.slots.refresh(self.owner_id, self.job_id)

    async def close(self) -> None:
        """Give back the slot this run holds (a deferred run keeps its waiting place)."""
        if self.holding and self.owner_id is not None:
            await self.slots.release(self.owner_id, self.job_id)
        await self.slots.close()


def _count_finished(job: ProcessingJob, outcome: str) -> None:
    """Count a job that ended (completed, failed, cancelled) with its duration since its
    first start; other outcomes (a slice that yielded, a lost job) are not an end."""
    if outcome in metrics.JOB_END_STATUSES:
        started = job.started_at
        seconds = (utcnow() - started).total_seconds() if started is not None else None
        metrics.job_finished(outcome, seconds)


async def claim(job_id: uuid.UUID, config: Config, rq_job_id: str | None) -> ProcessingJob | None:
    """Take the job for this worker with a conditional update; None when it is not ours.

    A ``pending`` job moves to ``processing``.  A ``processing`` job is re-claimed only
    when this run is the same RQ job (RQ retries after the previous execution died) or
    its heartbeat is older than STALE_JOB_SECONDS; the update is conditional on the
    heartbeat value read, so two re-claimers cannot both win.
    """
    job = await ProcessingJob.get_or_none(id=job_id)
    if job is None or JobStatus(job.status).is_final:
        return None
    now = utcnow()
    if job.status == JobStatus.PENDING:
        claimed = await ProcessingJob.filter(id=job_id, status=JobStatus.PENDING).update(
            status=JobStatus.PROCESSING,
            started_at=now,
            heartbeat_at=now,
            rq_job_id=rq_job_id or job.rq_job_id,
        )
    else:
        stale_before = now - timedelta(seconds=config.stale_job_seconds)
        stale = job.heartbeat_at is None or job.heartbeat_at < stale_before
        same_rq_job = rq_job_id is not None and rq_job_id == job.rq_job_id
        if not (stale or same_rq_job):
            log.info("job %s: held by a live worker; not re-claimed", job_id)
            return None
        claimed = await ProcessingJob.filter(
            id=job_id, status=JobStatus.PROCESSING, heartbeat_at=job.heartbeat_at
        ).update(heartbeat_at=now, rq_job_id=rq_job_id or job.rq_job_id)
        if claimed:
            log.info("job %s: re-claimed (resuming after seq %d)", job_id, job.last_seq)
    if claimed != 1:
        return None
    await job.refresh_from_db()
    return job


async def _heartbeat_loop(
    job_id: uuid.UUID,
    interval: float,
    *,
    redis_url: str | None = None,
    alive_ttl: int = 0,
    on_beat: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Refresh ``heartbeat_at`` every ``interval`` seconds, and the run's liveness key in
    Redis (TTL ``alive_ttl``): the stale check trusts the key when the DB was down.
    ``on_beat``: also awaited each beat (the user slot's lease)."""
    alive = None
    if redis_url and alive_ttl > 0:
        alive = async_client(
            redis_url, PoolLimits(size=1, timeout=5.0), socket_timeout=2, socket_connect_timeout=2
        )
    try:
        while True:
            if alive is not None:
                try:
                    await asyncio.wait_for(
                        alive.set(alive_key(job_id), "1", ex=alive_ttl), DB_READ_TIMEOUT
                    )
                except Exception as exc:  # Redis unreachable: the DB beat still counts
                    log.debug("job %s: liveness key failed: %s", job_id, exc)
            if on_beat is not None:
                try:
                    await asyncio.wait_for(on_beat(), DB_READ_TIMEOUT)
                except Exception as exc:
                    log.debug("job %s: slot lease not refreshed: %s", job_id, exc)
            await asyncio.sleep(interval)
            try:
                await asyncio.wait_for(
                    ProcessingJob.filter(id=job_id, status=JobStatus.PROCESSING).update(
                        heartbeat_at=utcnow()
                    ),
                    DB_READ_TIMEOUT,
                )
            except Exception as exc:  # DB unreachable: the job goes on, the beat is skipped
                log.debug("job %s: heartbeat failed: %s", job_id, exc)
    finally:
        if alive is not None:
            with contextlib.suppress(Exception):
                await alive.aclose()


class _Run:
    """The state of one run of one job."""

    def __init__(
        self,
        job: ProcessingJob,
        config: Config,
        publisher: JobPublisher,
        processor: Processor,
        clock: Callable[[], float],
        *,
        progress_floor: int = 0,
        meta: RqMetaProgress | None = None,
        pace_s: float = 0.0,
        sliced: bool = False,
        spent_s: float = 0.0,
    ) -> None:
        """``progress_floor``: the progress of the job's latest event when this run
        resumes after events recovered from the journal (never shown going back);
        ``meta``: where each sent event is mirrored for RQ's tools; ``sliced``: yield
        when SLICE_SECONDS / SLICE_VIDEOS are used up; ``spent_s``: processing time the
        job's earlier slices used of JOB_TIME_BUDGET."""
        self.sliced = sliced and (config.slice_seconds > 0 or config.slice_videos > 0)
        self.spent_s = max(0.0, spent_s)
        self.started = 0.0  # loop time at which this run started processing
        self.ended: float | None = None
        self.slice_count = 0  # videos this run processed
        self.job = job
        self.meta = meta
        self.pace_s = max(0.0, pace_s)
        #: the errors of the videos that failed, in order (for the final event)
        self.errors: list[str] = []
        self.config = config
        self.publisher = publisher
        self.processor = processor
        self.total = job.total_videos
        self.processed = 0
        self.failed = 0
        self.progress = min(99, progress_floor)  # _progress() only ever raises it
        #: loop time at which JOB_TIME_BUDGET runs out (set when the run starts)
        self.job_deadline = float("inf")
        self.over_budget = False
        self.throttle = ThrottlePolicy(
            job.total_videos,
            min_videos=config.throttle_min_videos,
            every_n=config.throttle_every_n_videos,
            interval=config.throttle_interval,
            clock=clock,
        )

    def slice_seconds(self) -> float:
        """Seconds this run processed (0 before it started)."""
        if not self.started:
            return 0.0
        end = self.ended if self.ended is not None else asyncio.get_running_loop().time()
        return max(0.0, end - self.started)

    def _slice_over(self) -> bool:
        if not self.sliced or self.publisher.backlog_size:
            # a run with events still unstored keeps the job: it alone may store them
            return False
        if self.config.slice_videos > 0 and self.slice_count >= self.config.slice_videos:
            return True
        return self.config.slice_seconds > 0 and self.slice_seconds() >= self.config.slice_seconds

    async def execute(self) -> str:
        try:
            return await self._execute()
        finally:
            self.ended = asyncio.get_running_loop().time()

    async def _execute(self) -> str:
        self.started = asyncio.get_running_loop().time()
        self.job_deadline = self.started + self.config.job_time_budget - self.spent_s
        try:
            videos = await Video.filter(job_id=self.job.id).order_by("position", "created_at")
            self.total = self.publisher.total_videos = max(self.total, len(videos))
            self.throttle.total_videos = self.total
            done = [v for v in videos if v.status in DONE_VIDEO_STATUSES]
            self.processed = len(done)
            self.failed = sum(1 for v in done if v.status == VideoStatus.FAILED)
            self.progress = self._progress()
            todo = [
                (n, v) for n, v in enumerate(videos, start=1) if v.status not in DONE_VIDEO_STATUSES
            ]
            for index, (number, video) in enumerate(todo):
                state = await self._job_state()
                if state == "deleted":
                    await self._deleted()
                    return "deleted"
                if state == "cancelled":
                    await self._cancelled()
                    return "cancelled"
                await self._one(number, video)
                self.slice_count += 1
                if index + 1 < len(todo) and self._slice_over():
                    return "yielded"
            state = await self._job_state()
            if state == "deleted":
                await self._deleted()
                return "deleted"
            if state == "cancelled" and self.processed < self.total:
                await self._cancelled()
                return "cancelled"
            over = f" ({self._budget_error()})" if self.over_budget else ""
            if self.total > 0 and self.failed == self.total:
                self.progress = 100  # it ran to its end: every video was tried
                await self._final("failed", *self._all_failed(over))
                return "failed"
            self.progress = 100
            ready = self.processed - self.failed
            outcome = f"{ready} ready, {self.failed} failed" if self.failed else f"{ready} ready"
            await self._final("completed", f"Completed: {outcome}{over}")
            return "completed"
        except LostOwnership as exc:
            if await self._job_state() == "deleted":
                await self._deleted()
                return "deleted"
            log.warning("%s; stopping", exc)
            return "lost"
        except Exception:
            log.exception("job %s: fatal error", self.job.id)
            with contextlib.suppress(LostOwnership):
                await self._final(
                    "failed",
                    "Processing stopped by an internal error",
                    error="an internal error stopped the job (the worker's log has the details)",
                )
            return "failed"

    def _progress(self) -> int:
        if self.total <= 0:
            return 0
        # only the completed event reaches 100
        return max(self.progress, min(99, self.processed * 100 // self.total))

    async def _job_state(self) -> str:
        """``ok``, ``cancelled``, ``deleted`` — or ``ok`` when the DB does not answer
        (processing never blocks on the DB)."""
        try:
            rows = await asyncio.wait_for(
                ProcessingJob.filter(id=self.job.id)
                .limit(1)
                .values_list("cancel_requested", "status"),
                DB_READ_TIMEOUT,
            )
        except Exception as exc:
            log.warning("job %s: cannot read job state (%s); continuing", self.job.id, exc)
            return "ok"
        if not rows:
            return "deleted"
        cancel_requested, status = rows[0]
        if cancel_requested or status == JobStatus.CANCELLED:
            return "cancelled"
        return "ok"

    async def _one(self, number: int, video: Video) -> None:
        started = asyncio.get_running_loop().time()
        await self._process_one(number, video)
        if self.pace_s > 0:  # the documented demo pace; never set for a real job
            await asyncio.sleep(started + self.pace_s - asyncio.get_running_loop().time())

    async def _process_one(self, number: int, video: Video) -> None:
        video_id = video.id

        async def mark_processing() -> None:
            await Video.filter(id=video_id).update(status=VideoStatus.PROCESSING)

        await self.publisher.write_other(mark_processing)
        error: str | None = None
        result: ProcessedMedia | None = None
        budget = asyncio.timeout_at(self.job_deadline)
        began = asyncio.get_running_loop().time()
        spent = began >= self.job_deadline
        try:
            if spent:
                raise TimeoutError  # not started: the job's budget is already used up
            async with budget:
                result = await self.processor(video, self.config)
        except MediaError as exc:
            error = str(exc) or "media error"
        except Exception as exc:  # a bug for one video must not stop the job
            if isinstance(exc, TimeoutError) and (spent or budget.expired()):
                self.over_budget = True
                error = self._budget_error()
            else:
                log.exception("job %s: video %s failed unexpectedly", self.job.id, video_id)
                error = "internal error while processing this video"
        if not spent:  # a video never started (budget used up) took no time to process
            metrics.video_processed(result is not None, asyncio.get_running_loop().time() - began)
        fields: dict[str, Any] = {"processed_at": utcnow()}
        if result is not None:
            fields.update(
                result.info.as_fields(),
                status=VideoStatus.READY,
                thumbnail_path=result.thumbnail,
                error=None,
            )
        else:
            fields.update(status=VideoStatus.FAILED, error=(error or "")[:2000])

        async def save_video() -> None:
            saved = await Video.filter(id=video_id).update(**fields)
            if not saved and result is not None:
                # its list was deleted meanwhile and took its files with it: the
                # thumbnail written since must not stay behind
                thumbnail = self.config.media_root / result.thumbnail
                with contextlib.suppress(OSError):
                    thumbnail.unlink(missing_ok=True)  # noqa: ASYNC240

        await self.publisher.write_other(save_video)
        self.processed += 1
        if error is not None:
            self.failed += 1
            self.errors.append(error)
        self.progress = self._progress()
        if not self.throttle.should_send(number, failed=error is not None):
            self.publisher.note_throttled()
            return
        if error is None:
            message = f"Processed video {number}/{self.total}: '{video.title}'"
        else:
            message = f"Video {number}/{self.total} failed: '{video.title}'"
        event = self.publisher.build(
            status="processing",
            progress=self.progress,
            current_video=number,
            processed_videos=self.processed,
            failed_videos=self.failed,
            message=message,
            video_id=video_id,
            video_title=video.title,
            error=error,
        )
        await self._send(event)

    async def _send(self, event: ProgressEvent) -> None:
        await self.publisher.send(event)
        if self.meta is not None:
            await self.meta.update(event)

    def _all_failed(self, over: str) -> tuple[str, str]:
        """The message and error of a run in which every video failed: a single
        video's (or a shared) error says what went wrong, not a count."""
        distinct = set(self.errors)
        if self.total == 1 and self.errors:
            return f"The video failed: {self.errors[0]}"[:1000], self.errors[0]
        error = self.errors[0] if len(distinct) == 1 else "every video failed"
        if self.over_budget:
            error = self._budget_error()
        return f"All {plural(self.total, 'video')} failed{over}", error

    async def _cancelled(self) -> None:
        """Final ``cancelled`` event; the videos not processed end ``cancelled``."""
        job_id = self.job.id

        async def skip_rest() -> None:
            await abandon_videos(
                job_id, "cancelled before it was processed", status=VideoStatus.CANCELLED
            )

        await self.publisher.write_other(skip_rest)
        await self._final(
            "cancelled", f"Cancelled after {self.processed} of {plural(self.total, 'video')}"
        )

    def _budget_error(self) -> str:
        return f"job time budget exceeded ({self.config.job_time_budget:g}s of processing per job)"

    async def _final(self, status: Any, message: str, error: str | None = None) -> None:
        self.throttle.final()
        event = self.publisher.build(
            status=status,
            progress=self.progress,
            current_video=self.processed,
            processed_videos=self.processed,
            failed_videos=self.failed,
            message=message,
            error=error,
        )
        await self._send(event)

    async def deleted(self) -> None:
        """The job was deleted between two slices: tell the owner live, store nothing."""
        await self._deleted()

    async def _deleted(self) -> None:
        """The job row is gone: tell the owner live, store nothing."""
        event = self.publisher.build(
            status="cancelled",
            progress=self.progress,
            current_video=self.processed,
            processed_videos=self.processed,
            failed_videos=self.failed,
            message="Job deleted",
        )
        await self.publisher.publish_unpersisted(event)
