"""Creating an import job without Quart (the demo, scripts, tests).

Same rules as the API's ``quart_app.api.job_ops.create_import_job``: the videos, the job
and its first ``pending`` event (seq 1) are written in one transaction, the event is
published, and ``tasks.process_video_list`` is enqueued.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis
from tortoise.transactions import in_transaction

from models.entities import JobStatus, ProcessingJob, Video
from models.events import ProgressEvent, utcnow
from models.history import record_event
from tasks.publisher import Emitter
from tasks.queue import enqueue_processing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewVideo:
    """``source`` as stored on Video.source (``import:<rel>``, ``upload:<rel>``, URL)."""

    source: str
    title: str


async def create_import_job(
    owner_id: uuid.UUID | str,
    list_id: uuid.UUID | str,
    items: Sequence[NewVideo],
    *,
    redis: Redis | None,
    emitter: Emitter | None = None,
) -> ProcessingJob:
    """Create videos + job + first event atomically, publish it, enqueue the job.

    With ``redis=None`` nothing is enqueued (the caller runs the job itself).  Raises
    redis.exceptions.RedisError when enqueueing fails: the job is then ``pending`` and
    the periodic stale-job check enqueues it later.
    """
    n = len(items)
    async with in_transaction():
        job = await ProcessingJob.create(
            list_id=list_id,
            owner_id=owner_id,
            status=JobStatus.PENDING,
            total_videos=n,
        )
        await Video.bulk_create(
            [
                Video(
                    id=uuid.uuid4(),
                    list_id=list_id,
                    job_id=job.id,
                    position=i,
                    source=item.source,
                    title=item.title[:500],
                )
                for i, item in enumerate(items)
            ]
        )
        first = ProgressEvent(
            job_id=job.id,
            seq=1,
            status="pending",
            progress=0,
            current_video=0,
            total_videos=n,
            processed_videos=0,
            failed_videos=0,
            message=f"Queued {n} video{'s' if n != 1 else ''}",
            created_at=utcnow(),
        )
        if not await record_event(first):
            raise RuntimeError("could not write the first event of a new job")
    job.last_seq = 1
    if emitter is not None:
        try:
            await emitter.publish_progress(owner_id, first.to_wire())
        except Exception as exc:  # clients recover from history
            log.warning("job %s: publishing the first event failed: %s", job.id, exc)
    if redis is not None:
        rq_job_id = await asyncio.to_thread(enqueue_processing, redis, job.id)
        await ProcessingJob.filter(id=job.id).update(rq_job_id=rq_job_id)
        job.rq_job_id = rq_job_id
    return job
