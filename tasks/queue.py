"""RQ queue names, and enqueueing processing jobs on ``videos``. Used by the API and the
worker (no Quart here)."""

from __future__ import annotations

import uuid

from redis import Redis
from rq import Queue, Retry

QUEUE_NAME = "videos"
#: periodic upkeep (the stale-job check, the retention purge).  A queue of its own so
#: that upkeep never waits behind a backlog of videos, and so that one worker can be
#: dedicated to it (``reeltrack worker --queues maintenance``) when every video worker
#: may be busy for hours.
MAINTENANCE_QUEUE = "maintenance"
#: the queues ``reeltrack worker`` serves by default, in RQ's priority order
WORKER_QUEUES: tuple[str, ...] = (MAINTENANCE_QUEUE, QUEUE_NAME)
JOB_FUNCTION = "tasks.process_video_list"
#: RQ retries a job whose work-horse died; the job resumes after its last finished video.
MAX_RETRIES = 3
JOB_TIMEOUT_S = 6 * 3600


def parse_queues(text: str) -> tuple[str, ...]:
    """``"maintenance,videos"`` -> the queue names, in order; raises ValueError naming
    an unknown or repeated queue, or when none is given."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ValueError("no queue given")
    unknown = [n for n in names if n not in WORKER_QUEUES]
    if unknown:
        raise ValueError(
            f"unknown queue {unknown[0]!r}; the queues are: {', '.join(WORKER_QUEUES)}"
        )
    if len(set(names)) != len(names):
        raise ValueError("a queue is named twice")
    return names


def rq_job_id_for(job_id: uuid.UUID | str) -> str:
    """RQ's job id for a ProcessingJob: stable, so a job is never enqueued twice."""
    return f"process-{job_id}"


def enqueue_processing(redis: Redis, job_id: uuid.UUID | str, *, pace_s: float = 0.0) -> str:
    """Put ``tasks.process_video_list(job_id)`` on queue ``videos``; returns the RQ job id.
    ``pace_s`` > 0 is the demo's pace (seconds per video at least; see
    ``tasks.processing.run_job``).

    Raises redis.exceptions.RedisError when Redis is unreachable.
    """
    queue = Queue(QUEUE_NAME, connection=redis)
    job = queue.enqueue_call(
        JOB_FUNCTION,
        args=(str(job_id),),
        kwargs={"pace_s": pace_s} if pace_s > 0 else None,
        job_id=rq_job_id_for(job_id),
        timeout=JOB_TIMEOUT_S,
        retry=Retry(max=MAX_RETRIES, interval=[1, 5, 15]),
        result_ttl=3600,
        failure_ttl=7 * 86400,
    )
    return str(job.id)
