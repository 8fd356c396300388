"""The periodic stale-job check: no job stays ``processing`` (or ``pending``) forever.

A ``processing`` job whose ``heartbeat_at`` is older than STALE_JOB_SECONDS has lost its
worker (the running job refreshes it every STALE_JOB_SECONDS/4) — unless its run's
liveness key in Redis (:func:`alive_key`, refreshed by the same heartbeat with a TTL of
STALE_JOB_SECONDS) still exists: then the DB was unreachable for a while and the job is
left alone.  Otherwise, by the state of its RQ job:

* queued / scheduled / deferred: a retry is already on its way -> left alone; except a
  retry scheduled for a time long past (RQ's scheduler process died, e.g. in a Redis
  outage, and the worker restarts it only every 10 minutes) -> enqueued now;
* started (the execution died without RQ noticing, e.g. the whole worker was
  killed) with retries left -> RQ retry, enqueued at once (the new run resumes
  after the last finished video);
* no RQ job at all (Redis lost it) -> enqueued again, at most ``MAX_RETRIES`` times;
  but while the Redis has been up for less than STALE_JOB_SECONDS (restarted, its
  liveness keys lost) no run is judged dead by what Redis lacks (no RQ job, or a
  started one without its key): the job is left for a later pass;
* anything else (retries exhausted, failed, finished) -> the job ends ``failed`` with a
  final persisted and published event; its unprocessed videos are marked failed.  Like
  a worker's claim, this first stores the job's Redis journal (:mod:`tasks.journal`:
  events the dead run published while its DB writes failed), so the final event never
  reuses a seq clients have seen; if the journal held the job's final event, that one
  ends the job.

A ``pending`` job older than STALE_JOB_SECONDS with no RQ job is enqueued again.

Every RQ job looked at or enqueued is the one ``ProcessingJob.rq_job_id`` names (a
job's later slices and deferred runs have RQ ids of their own), on the queue of the
job's priority.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.job import JobStatus as RQStatus
from rq.registry import ScheduledJobRegistry
from tortoise.expressions import Q

from models.db import close_db, open_db
from models.entities import JobStatus, ProcessingJob, Video, VideoStatus
from models.events import utcnow
from quart_app.core.config import REDIS_KEY_PREFIX, Config
from quart_app.core.redis_pools import PoolLimits, sync_client
from tasks.journal import Journal, RedisJournal, recover
from tasks.publisher import Emitter, JobPublisher, LostOwnership, make_emitter
from tasks.queue import MAX_RETRIES, enqueue_processing, queue_for, rq_job_id_for

log = logging.getLogger(__name__)

LOCK_KEY = f"{REDIS_KEY_PREFIX}stale-check:lock"
REQUEUE_COUNT_KEY = f"{REDIS_KEY_PREFIX}stale-check:requeued:{{}}"
ALIVE_KEY = f"{REDIS_KEY_PREFIX}job-alive:{{}}"
WAITING = {RQStatus.QUEUED, RQStatus.SCHEDULED, RQStatus.DEFERRED}


@dataclass
class StaleReport:
    left: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {"left": self.left, "requeued": self.requeued, "failed": self.failed}


def alive_key(job_id: uuid.UUID | str) -> str:
    """The Redis key a running job refreshes (TTL STALE_JOB_SECONDS) next to heartbeat_at."""
    return ALIVE_KEY.format(job_id)


def check_interval(config: Config) -> int:
    """Seconds between two checks (RQ cron intervals are whole seconds)."""
    return max(1, config.stale_job_seconds // 2)


def _fetch_rq_job(redis: Redis, rq_id: str) -> Job | None:
    try:
        return Job.fetch(rq_id, connection=redis)
    except NoSuchJobError:
        return None


def _enqueue_overdue(queue: Queue, rq_job: Job, due_before: datetime) -> bool:
    """Enqueue ``rq_job`` if it waits in the scheduled registry for a time before
    ``due_before``; True when this call enqueued it.  Taking it out of the registry
    first (ZREM answers 1 to one caller only) keeps a scheduler that wakes up meanwhile
    from enqueuing it a second time."""
    registry = ScheduledJobRegistry(queue=queue)
    try:
        due = registry.get_scheduled_time(rq_job)
    except NoSuchJobError:
        return False
    if due >= due_before:  # both aware (UTC)
        return False
    if not registry.remove(rq_job):
        return False
    queue.enqueue_job(rq_job, at_front=True)
    return True


def _uptime_s(redis: Redis) -> float:
    """Seconds the Redis server has been up; infinity when INFO cannot say (the checks
    that follow then go by what Redis holds, as before, and fail on their own)."""
    try:
        return float(redis.info("server")["uptime_in_seconds"])  # type: ignore[index]
    except Exception:
        return float("inf")


def _requeue_budget_left(redis: Redis, job_id: uuid.UUID) -> bool:
    key = REQUEUE_COUNT_KEY.format(job_id)
    count = int(redis.incr(key))  # type: ignore[arg-type]
    redis.expire(key, 86400)
    return count <= MAX_RETRIES


async def check_stale_jobs(
    config: Config,
    redis: Redis,
    emitter: Emitter,
    *,
    now: datetime | None = None,
    only: Iterable[uuid.UUID] | None = None,
    journal: Journal | None = None,
) -> StaleReport:
    """One pass of the check (Tortoise open in this loop), over every job or ``only``
    the given ones.  Never raises for one job's trouble: it is logged and the next job
    is looked at.  ``journal``: recovered before a job is failed (see :func:`fail_job`)."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=config.stale_job_seconds)
    report = StaleReport()
    scope = Q() if only is None else Q(id__in=list(only))
    stale = await ProcessingJob.filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff),
        scope,
        status=JobStatus.PROCESSING,
    )
    # a Redis younger than the liveness TTL (restarted: its keys gone) cannot prove a run
    # dead by a missing key or RQ job: a live worker sets its key again within a beat,
    # and with the DB down too (heartbeat_at old as well) nothing else tells the two
    # apart.  What it does hold (a failed RQ job, an overdue retry) still counts
    unproven = bool(stale) and _uptime_s(redis) < config.stale_job_seconds
    for job in stale:
        rq_id = job.rq_job_id or rq_job_id_for(job.id)
        # a sliced job between two slices is here too (its heartbeat stops while its
        # next slice waits): that slice's RQ job is queued or scheduled -> left alone
        queue = Queue(queue_for(job.priority), connection=redis)
        try:
            if redis.exists(alive_key(job.id)):
                # its run still beats in Redis: heartbeat_at is old only because the DB
                # was unreachable (a retry now would make a second writer of the job)
                report.left.append(str(job.id))
                continue
            rq_job = _fetch_rq_job(redis, rq_id)
            status = rq_job.get_status() if rq_job is not None else None
            if rq_job is not None and status == RQStatus.SCHEDULED:
                if _enqueue_overdue(queue, rq_job, now - timedelta(seconds=check_interval(config))):
                    log.warning("job %s: its RQ retry was overdue (no scheduler); enqueued", job.id)
                    report.requeued.append(str(job.id))
                    continue
            if status in WAITING:
                report.left.append(str(job.id))
                continue
            if unproven and (rq_job is None or status == RQStatus.STARTED):
                # only a missing key says this run is dead, and this Redis may have lost it
                log.info("job %s: looks stale, but Redis restarted moments ago; next pass", job.id)
                report.left.append(str(job.id))
                continue
            if rq_job is not None and status == RQStatus.STARTED and rq_job.retries_left:
                # Enqueue now instead of Job.retry(): a retry interval needs RQ's
                # scheduler, whose lock may still be held by the dead worker's scheduler
                # (it expires only after a minute).
                rq_job.retries_left -= 1
                rq_job.save(include_meta=False, include_result=False)
                queue.enqueue_job(rq_job, at_front=True)
                log.warning("job %s: worker lost; RQ retry (%s left)", job.id, rq_job.retries_left)
                report.requeued.append(str(job.id))
                continue
            if rq_job is None and _requeue_budget_left(redis, job.id):
                # under the id the row names, so the run's claim is the same-job re-claim
                enqueue_processing(
                    redis, job.id, owner_id=job.owner_id, priority=job.priority, rq_job_id=rq_id
                )
                log.warning("job %s: worker lost and no RQ job; enqueued again", job.id)
                report.requeued.append(str(job.id))
                continue
            if await fail_job(
                job, emitter, "The worker was lost and the job cannot resume", journal=journal
            ):
                report.failed.append(str(job.id))
        except Exception:
            log.exception("stale check of job %s failed", job.id)
    pending = await ProcessingJob.filter(scope, status=JobStatus.PENDING, created_at__lt=cutoff)
    for job in pending:
        rq_id = job.rq_job_id or rq_job_id_for(job.id)
        try:
            if _fetch_rq_job(redis, rq_id) is None and _requeue_budget_left(redis, job.id):
                enqueue_processing(
                    redis, job.id, owner_id=job.owner_id, priority=job.priority, rq_job_id=rq_id
                )
                log.warning("job %s: pending without an RQ job; enqueued again", job.id)
                report.requeued.append(str(job.id))
        except Exception:
            log.exception("stale check of pending job %s failed", job.id)
    return report


async def fail_job(
    job: ProcessingJob, emitter: Emitter, message: str, *, journal: Journal | None = None
) -> bool:
    """End a ``processing`` job ``failed`` with a final event (persisted, then published)
    and mark its unfinished videos failed.  False when the job moved on meanwhile (a
    worker wrote to it, or it is gone), when the DB did not take the event (nothing is
    published then; the next pass tries again), or when the recovered journal already
    ended the job.

    With ``journal``, the job's journaled events are stored first (:func:`recover`;
    raises its JournalError when Redis cannot tell) and the final event follows them.
    """
    job_id = uuid.UUID(str(job.id))
    floor = 0
    if journal is not None:
        recovery = await recover(journal, job_id, job.last_seq)
        if recovery.refused:
            return False
        last = recovery.last_event
        if last is not None:
            if last.is_final:
                log.warning("job %s: its recovered journal ended it %s", job.id, last.status)
                return False
            floor = last.progress
            await job.refresh_from_db()  # record_event copied the counters onto the row
    publisher = JobPublisher(
        job_id=job_id,
        owner_id=job.owner_id,
        last_seq=job.last_seq,
        total_videos=job.total_videos,
        emitter=emitter,
        buffer_size=1,
    )
    total = job.total_videos
    progress = max(floor, min(99, job.processed_videos * 100 // total) if total else 0)
    event = publisher.build(
        status="failed",
        progress=progress,
        current_video=job.processed_videos,
        processed_videos=job.processed_videos,
        failed_videos=job.failed_videos,
        message=message,
        error="worker lost; retries exhausted",
    )
    try:
        await publisher.persist(event)
    except LostOwnership:
        return False
    if publisher.backlog_size:
        # DB write failed: not published (the next pass builds it again, same seq)
        return False
    await publisher.publish(event)
    await Video.filter(
        job_id=job.id, status__in=[VideoStatus.PENDING, VideoStatus.PROCESSING]
    ).update(status=VideoStatus.FAILED, error="job failed: worker lost")
    log.error("job %s: ended failed (worker lost, cannot resume)", job.id)
    return True


async def check_stale_jobs_job() -> dict[str, Any]:
    """The RQ cron job: one check with the worker's Config; at most one check runs at a
    time across all workers (a short Redis lock)."""
    config = Config.from_env()
    if not config.redis_url:
        raise RuntimeError("REDIS_URL is required")
    limits = PoolLimits.of(config)
    redis = sync_client(config.redis_url, limits, socket_timeout=5, socket_connect_timeout=5)
    if not redis.set(LOCK_KEY, "1", nx=True, ex=max(1, check_interval(config))):
        return {"skipped": "another check is running"}
    emitter = make_emitter(config)
    journal = RedisJournal.from_url(config.redis_url, limits=limits)
    await open_db(config.database_url)
    try:
        report = await check_stale_jobs(config, redis, emitter, journal=journal)
    finally:
        await close_db()
        await emitter.close()
        await journal.close()
        redis.delete(LOCK_KEY)
        redis.close()
    return report.as_dict()
