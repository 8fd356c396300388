"""Submitting a processing job: the one way a job comes to exist (REST API, demo, tests).

:func:`submit_job` writes the rows and the first event (seq 1) in one transaction
(:func:`models.jobs.create_job_with_videos`), publishes that event, enqueues
``tasks.process_video_list``; when the job cannot be queued it ends ``failed`` with a
final event (seq 2) and its videos failed, so nobody ever sees a job stuck ``pending``.
While the job is ``pending`` the submitter is the only writer of its history: the
failed event is written with ``expect_status=PENDING``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

from redis import Redis
from redis.exceptions import RedisError

from models.entities import JobStatus, ProcessingJob
from models.events import ProgressEvent, job_event
from models.history import record_event
from models.jobs import (
    UNSPECIFIED,
    FailedVideosOf,
    JobSpec,
    NewVideo,
    abandon_videos,
    create_job_with_videos,
    create_retry_job,
    job_counters,
)
from socket_layer.emitter import PublishError
from tasks.publisher import Emitter
from tasks.queue import enqueue_processing, queue_for, rq_job_id_for
from tasks.slices import BlockingUserSlots, SlotSettings, ask_again_in, waiting_rq

log = logging.getLogger(__name__)


class QueueUnavailable(Exception):
    """The job was created but could not be queued; it has already ended ``failed``
    (with its final event) and ``job`` is it."""

    def __init__(self, job: ProcessingJob, reason: str) -> None:
        super().__init__(f"job {job.id} could not be queued: {reason}")
        self.job = job
        self.reason = reason


async def submit_job(
    owner_id: uuid.UUID | str,
    list_id: uuid.UUID | str,
    videos: Sequence[NewVideo] | FailedVideosOf,
    *,
    emitter: Emitter | None,
    redis: Redis | None,
    enqueue: bool = True,
    spec: JobSpec = UNSPECIFIED,
    pace_s: float = 0.0,
    high_priority_max_active: int | None = None,
    turns: SlotSettings | None = None,
) -> ProcessingJob:
    """Create the job of ``videos`` in list ``list_id``, publish its first event through
    ``emitter`` (None: not published; clients read it from the history), enqueue it on
    ``redis``.  ``videos`` is the new videos to create, or :class:`FailedVideosOf` a
    finished job of that list (a retry: those videos move to the new job).  ``spec``
    names the job and says where it came from.

    Raises :class:`QueueUnavailable` when ``redis`` is None or refuses the job (the job
    has then ended ``failed``); :class:`models.jobs.NothingToRetry` when a retry finds no
    failed video (nothing is created).  ``enqueue=False`` leaves the job ``pending`` and
    unqueued: the caller runs it itself (tests), or the stale-job check enqueues it.
    ``pace_s``: the demo's pace, passed to the worker (0 for every real job).
    ``high_priority_max_active`` (HIGH_PRIORITY_MAX_ACTIVE; None: no limit): a ``high``
    job of an owner who already has that many unfinished ``high`` jobs is submitted as
    ``normal`` (stored so: the API and the UI show what it got), counted in the
    creating transaction so that racing submissions cannot pass it together.
    ``turns`` (:func:`tasks.slices.slot_rules`; None or cap 0: no cap): the job goes
    into its queue only with one of its owner's USER_MAX_ACTIVE_JOBS slots; without one
    it waits in the owner's waiting list, scheduled to ask again, and the release of
    the owner's slot before it wakes it.  Enqueued at the queue's back behind the
    owner's earlier jobs, each short enough to pass its slot on to the next, it would
    hold every other user's next job behind all of them: one user's 100 small imports
    made another user's one video, submitted 3 s later, wait 15 s.
    """
    if isinstance(videos, FailedVideosOf):
        job, first = await create_retry_job(videos.job, spec, high_limit=high_priority_max_active)
    else:
        job, first = await create_job_with_videos(
            owner_id, list_id, videos, spec, high_limit=high_priority_max_active
        )
    await _publish(emitter, job, first)
    if not enqueue:
        return job
    try:
        if redis is None:
            raise RedisError("REDIS_URL is not configured")
        rq_job_id = await asyncio.to_thread(_enqueue_in_turn, redis, job, turns, pace_s)
    except (RedisError, OSError) as exc:
        log.error("enqueue failed job_id=%s: %s", job.id, exc)
        await _fail_unqueued(emitter, job)
        raise QueueUnavailable(job, str(exc)) from None
    await ProcessingJob.filter(id=job.id).update(rq_job_id=rq_job_id)
    job.rq_job_id = rq_job_id
    return job


def _enqueue_in_turn(
    redis: Redis, job: ProcessingJob, turns: SlotSettings | None, pace_s: float
) -> str:
    """Enqueue ``job`` now when it gets one of its owner's slots (or there is no cap),
    else schedule it to ask again as a waiter; its RQ job id.  Blocking."""
    priority = str(job.priority)
    delay_s = 0.0
    if turns is not None:  # (a cap of 0 is always granted)
        rq = waiting_rq(rq_job_id_for(job.id), queue_for(priority))
        turn = BlockingUserSlots(redis, **turns).enter(job.owner_id, job.id, priority, rq)
        if not turn.granted:
            delay_s = ask_again_in(turn)
    return enqueue_processing(
        redis, job.id, owner_id=job.owner_id, priority=priority, pace_s=pace_s, delay_s=delay_s
    )


async def _fail_unqueued(emitter: Emitter | None, job: ProcessingJob) -> None:
    failed = job_event(
        job.id,
        job.last_seq + 1,
        "failed",
        "Could not queue the job",
        error="the job queue is unavailable; try again in a moment",
        **job_counters(job),
    )
    if await record_event(failed, expect_status=JobStatus.PENDING):
        await abandon_videos(job.id, "job could not be queued")
        await _publish(emitter, job, failed)


async def _publish(emitter: Emitter | None, job: ProcessingJob, event: ProgressEvent) -> None:
    """Best effort: an event that does not reach Redis is logged; clients recover it
    from the history."""
    if emitter is None:
        return
    try:
        await emitter.publish_progress(job.owner_id, event.to_wire())
    except PublishError as exc:
        log.warning("progress publish failed job_id=%s seq=%s: %s", job.id, event.seq, exc)
    except Exception:  # an unexpected client error must not undo a created job
        log.exception("progress publish failed job_id=%s seq=%s", job.id, event.seq)
