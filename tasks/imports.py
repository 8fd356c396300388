"""Creating an import job without Quart (the demo, scripts, tests).

The rows are written by :func:`models.jobs.create_job_with_videos` (as for the API);
then the first event is published and ``tasks.process_video_list`` is enqueued.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis

from models.entities import ProcessingJob
from models.jobs import create_job_with_videos
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
    job, first = await create_job_with_videos(
        owner_id, list_id, [(item.source, item.title) for item in items]
    )
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
