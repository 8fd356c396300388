"""Enqueueing processing jobs on RQ queue ``videos``. Used by the API (no Quart here)."""

from __future__ import annotations

import uuid

from redis import Redis
from rq import Queue, Retry

QUEUE_NAME = "videos"
JOB_FUNCTION = "tasks.process_video_list"
#: RQ retries a job whose work-horse died; the job resumes after its last finished video.
MAX_RETRIES = 3
JOB_TIMEOUT_S = 6 * 3600


def rq_job_id_for(job_id: uuid.UUID | str) -> str:
    """RQ's job id for a ProcessingJob: stable, so a job is never enqueued twice."""
    return f"process-{job_id}"


def enqueue_processing(redis: Redis, job_id: uuid.UUID | str) -> str:
    """Put ``tasks.process_video_list(job_id)`` on queue ``videos``; returns the RQ job id.

    Raises redis.exceptions.RedisError when Redis is unreachable.
    """
    queue = Queue(QUEUE_NAME, connection=redis)
    job = queue.enqueue_call(
        JOB_FUNCTION,
        args=(str(job_id),),
        job_id=rq_job_id_for(job_id),
        timeout=JOB_TIMEOUT_S,
        retry=Retry(max=MAX_RETRIES, interval=[1, 5, 15]),
        result_ttl=3600,
        failure_ttl=7 * 86400,
    )
    return str(job.id)
