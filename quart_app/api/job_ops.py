"""Creating, cancelling and deleting processing jobs on behalf of a user.

The API is the single writer of a job's history while the job is ``pending`` (DESIGN
section 4, rule 1): it writes seq 1 when it creates the job and the final ``cancelled``
event of a job no worker has claimed, through the conditional
``record_event(..., expect_status=PENDING)``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

from redis.exceptions import RedisError

from models.entities import JobStatus, ProcessingJob, Video, VideoList, VideoStatus
from models.events import EventStatus, ProgressEvent, utcnow
from models.history import record_event
from models.jobs import create_job_with_videos
from quart_app.errors import ApiError
from quart_app.imports import ImportItem
from quart_app.services import Services
from tasks.journal import JournalError, RedisJournal
from tasks.queue import enqueue_processing

log = logging.getLogger(__name__)

#: how often a cancel re-reads a job whose history moved under it before giving up
_CANCEL_ATTEMPTS = 3


def job_event(
    job: ProcessingJob,
    seq: int,
    status: EventStatus,
    message: str,
    *,
    error: str | None = None,
) -> ProgressEvent:
    """An event carrying the job's current counters."""
    total = job.total_videos
    done = job.processed_videos
    return ProgressEvent(
        job_id=uuid.UUID(str(job.id)),
        seq=seq,
        status=status,
        progress=(done * 100 // total) if total else 0,
        current_video=done,
        total_videos=total,
        processed_videos=done,
        failed_videos=job.failed_videos,
        message=message,
        error=error,
        created_at=utcnow(),
    )


async def create_import_job(
    svc: Services, video_list: VideoList, items: Sequence[ImportItem]
) -> ProcessingJob:
    """Create the videos, the job and its first event in one transaction, publish the
    event, enqueue ``tasks.process_video_list``.

    Raises ApiError 503 when the job could not be queued; the job then already ended
    ``failed`` with a final event (so the user sees a clear failed job, never one stuck
    ``pending``) and its videos are marked failed.
    """
    job, first = await create_job_with_videos(
        video_list.owner_id, video_list.id, [(item.source, item.title) for item in items]
    )
    await svc.publish(job, first.to_wire())
    try:
        if svc.rq_redis is None:
            raise RedisError("REDIS_URL is not configured")
        rq_job_id = await asyncio.to_thread(enqueue_processing, svc.rq_redis, job.id)
    except (RedisError, OSError) as exc:
        log.error("enqueue failed job_id=%s: %s", job.id, exc)
        await _fail_unqueued(svc, job)
        raise ApiError(
            503,
            "queue_unavailable",
            "the job could not be queued (Redis unavailable); it was marked failed",
            job_id=str(job.id),
        ) from None
    await ProcessingJob.filter(id=job.id).update(rq_job_id=rq_job_id)
    job.rq_job_id = rq_job_id
    return job


async def _fail_unqueued(svc: Services, job: ProcessingJob) -> None:
    failed = job_event(
        job, 2, "failed", "Could not queue the job", error="queue unavailable (Redis down)"
    )
    if await record_event(failed, expect_status=JobStatus.PENDING):
        await _abandon_videos(job, "job could not be queued")
        await svc.publish(job, failed.to_wire())


async def _abandon_videos(job: ProcessingJob, reason: str) -> None:
    """Videos of a job that will never run: failed, with the reason (not stuck pending)."""
    await Video.filter(job_id=job.id, status=VideoStatus.PENDING).update(
        status=VideoStatus.FAILED, error=reason
    )


async def cancel_job(svc: Services, job: ProcessingJob) -> str:
    """Request the cancel of ``job``; returns ``cancelled`` (the API wrote the final
    event: no worker had claimed the job), ``cancel_requested`` (a worker holds it and
    writes the final event before its next video) or ``already_finished``."""
    if JobStatus(job.status).is_final:
        return "already_finished"
    await ProcessingJob.filter(id=job.id).update(cancel_requested=True)
    for _attempt in range(_CANCEL_ATTEMPTS):
        await job.refresh_from_db()
        status = JobStatus(job.status)
        if status.is_final:
            return "already_finished"
        if status != JobStatus.PENDING:
            return "cancel_requested"
        event = job_event(job, job.last_seq + 1, "cancelled", "Cancelled before processing")
        if await record_event(event, expect_status=JobStatus.PENDING):
            job.status = JobStatus.CANCELLED
            job.last_seq = event.seq
            await _abandon_videos(job, "job cancelled")
            await svc.publish(job, event.to_wire())
            return "cancelled"
        # a worker claimed it (or wrote an event) meanwhile: look again
    return "cancel_requested"


async def delete_job(svc: Services, job: ProcessingJob) -> None:
    """Delete ``job`` and its history (events cascade).

    A ``pending`` job gets a published — not persisted, there is no history any more —
    ``cancelled`` event with seq last_seq+1 so live clients drop it; a ``processing``
    job's worker publishes that when it notices, before its next video.  The job's
    journal of unpersisted events (:mod:`tasks.journal`) goes too, best effort: a
    recovery could not store it anyway (the job is gone), and it would expire.
    """
    await job.refresh_from_db()
    was_pending = JobStatus(job.status) == JobStatus.PENDING
    await _abandon_videos(job, "job deleted")
    await ProcessingJob.filter(id=job.id).delete()
    if svc.redis is not None:
        try:
            await RedisJournal(svc.redis).clear(job.id)
        except JournalError as exc:
            log.warning("job %s deleted; its journal stays until it expires: %s", job.id, exc)
    if was_pending:
        event = job_event(job, job.last_seq + 1, "cancelled", "Job deleted")
        await svc.publish(job, event.to_wire())


async def notify_list_deleted(svc: Services, jobs: Sequence[ProcessingJob]) -> None:
    """Publish ``cancelled`` for the pending jobs of a list that was just deleted."""
    for job in jobs:
        if JobStatus(job.status) == JobStatus.PENDING:
            event = job_event(job, job.last_seq + 1, "cancelled", "List deleted")
            await svc.publish(job, event.to_wire())
