"""Creating, cancelling and deleting processing jobs on behalf of a user.

The API is the single writer of a job's history while the job is ``pending`` (DESIGN
section 4, rule 1): it writes seq 1 when it submits the job (:mod:`tasks.submission`)
and the final ``cancelled`` event of a job no worker has claimed, through the
conditional ``record_event(..., expect_status=PENDING)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from models.entities import JobSource, JobStatus, ProcessingJob, VideoList, VideoStatus
from models.events import EventStatus, ProgressEvent, job_event
from models.history import record_event
from models.jobs import (
    FailedVideosOf,
    JobSpec,
    NewVideo,
    NothingToRetry,
    abandon_videos,
    job_counters,
)
from quart_app.errors import ApiError
from quart_app.services import Services
from tasks.journal import JournalError, RedisJournal
from tasks.queue import held_by_a_worker
from tasks.slices import BlockingUserSlots, slot_rules
from tasks.submission import QueueUnavailable, submit_job

log = logging.getLogger(__name__)

#: how often a cancel re-reads a job whose history moved under it before giving up
_CANCEL_ATTEMPTS = 3


async def submit_for_user(
    svc: Services,
    video_list: VideoList,
    videos: Sequence[NewVideo] | FailedVideosOf,
    spec: JobSpec,
) -> ProcessingJob:
    """Submit the job of ``videos`` in ``video_list`` (:func:`tasks.submission.submit_job`)
    with the app's emitter and queue.

    Raises ApiError 503 ``queue_unavailable`` (with ``job_id``) when the job could not be
    queued; the job then already ended ``failed`` with a final event (so the user sees a
    clear failed job, never one stuck ``pending``) and its videos are marked failed.
    """
    try:
        return await submit_job(
            video_list.owner_id,
            video_list.id,
            videos,
            emitter=svc.emitter,
            redis=svc.rq_redis,
            spec=spec,
            high_priority_max_active=svc.config.high_priority_max_active,
            turns=slot_rules(svc.config),
        )
    except QueueUnavailable as exc:
        raise ApiError(
            503,
            "queue_unavailable",
            "the job could not be queued (the job queue is unavailable); it was marked failed",
            job_id=str(exc.job.id),
        ) from None


async def retry_failed(svc: Services, job: ProcessingJob) -> ProcessingJob:
    """Submit a new job over the failed videos of the finished ``job``.

    Raises ApiError 409 ``job_active`` while ``job`` is pending or processing, 409
    ``nothing_to_retry`` when it has no failed video (or they were retried already),
    503 like :func:`submit_for_user`.
    """
    status = JobStatus(job.status)
    if not status.is_final:
        raise ApiError(
            409,
            "job_active",
            "the job is still running; retry its failed videos once it has finished",
            job_status=status.value,
        )
    video_list = await VideoList.get(id=job.list_id)
    try:
        return await submit_for_user(
            svc, video_list, FailedVideosOf(job), JobSpec(source=JobSource.RETRY)
        )
    except NothingToRetry:
        retried = await ProcessingJob.exists(retry_of_id=job.id)
        message = (
            "the failed videos of this job have already been retried"
            if retried
            else "the job has no failed videos to retry"
        )
        raise ApiError(409, "nothing_to_retry", message, job_status=status.value) from None


def _event(job: ProcessingJob, status: EventStatus, message: str) -> ProgressEvent:
    """The job's next event (seq last_seq + 1), with the row's counters."""
    return job_event(job.id, job.last_seq + 1, status, message, **job_counters(job))


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
        event = _event(job, "cancelled", "Cancelled before processing")
        if await record_event(event, expect_status=JobStatus.PENDING):
            job.status = JobStatus.CANCELLED
            job.last_seq = event.seq
            await abandon_videos(
                job.id, "cancelled before it was processed", status=VideoStatus.CANCELLED
            )
            await svc.publish(job, event.to_wire())
            await leave_lines(svc, [job])
            return "cancelled"
        # a worker claimed it (or wrote an event) meanwhile: look again
    return "cancel_requested"


async def unheld(svc: Services, jobs: Sequence[ProcessingJob]) -> list[ProcessingJob]:
    """The unfinished ``jobs`` no worker runs now: pending ones, and processing ones
    waiting between slices or for a slot.  A job deleted while it waits is never run
    again, so nobody but the API can tell live clients it is gone.  Call it before the
    delete: afterwards a slice that starts finds no row and stays silent."""
    waiting = []
    for job in jobs:
        status = JobStatus(job.status)
        if status == JobStatus.PENDING:
            waiting.append(job)
        elif status == JobStatus.PROCESSING:
            # no Redis: no slices either, a processing job is held by its run
            if svc.rq_redis is not None and not await asyncio.to_thread(
                held_by_a_worker, svc.rq_redis, job.rq_job_id
            ):
                waiting.append(job)
    return waiting


async def announce_deleted(svc: Services, jobs: Sequence[ProcessingJob], message: str) -> None:
    """Publish — not persist: their history is gone — a ``cancelled`` event with seq
    last_seq+1 for each of ``jobs`` (those :func:`unheld` returned), so live clients
    drop them."""
    for job in jobs:
        await svc.publish(job, _event(job, "cancelled", message).to_wire())
    await leave_lines(svc, jobs)


async def leave_lines(svc: Services, jobs: Sequence[ProcessingJob]) -> None:
    """Take ``jobs``, ended while no worker ran them, out of their owners' lines
    (:mod:`tasks.slices`): their places go to each owner's next jobs now, not when
    their RQ jobs come round to find them ended."""
    if svc.rq_redis is None or not jobs:  # (a cap of 0 has no lines: release is a no-op)
        return
    slots = BlockingUserSlots(svc.rq_redis, **slot_rules(svc.config))

    def leave() -> None:
        for job in jobs:
            slots.release(job.owner_id, job.id)

    await asyncio.to_thread(leave)


async def delete_job(svc: Services, job: ProcessingJob) -> None:
    """Delete ``job`` and its history (events cascade).

    A job no worker runs now (pending, or waiting between slices) is announced by a
    published ``cancelled`` event (:func:`announce_deleted`); a running job's worker
    publishes that when it notices, before its next video.  The job's journal of
    unpersisted events (:mod:`tasks.journal`) goes too, best effort: a recovery could
    not store it anyway (the job is gone), and it would expire.
    """
    await job.refresh_from_db()
    waiting = await unheld(svc, [job])
    await abandon_videos(job.id, "its job was deleted", status=VideoStatus.CANCELLED)
    await ProcessingJob.filter(id=job.id).delete()
    if svc.redis is not None:
        try:
            await RedisJournal(svc.redis).clear(job.id)
        except JournalError as exc:
            log.warning("job %s deleted; its journal stays until it expires: %s", job.id, exc)
    await announce_deleted(svc, waiting, "Job deleted")
