"""Putting back on its queue an RQ job whose run was interrupted, so that it resumes at
once instead of after STALE_JOB_SECONDS (the stale-job check remains the fallback).

Two callers, both at a moment when the run's work-horse is known to be dead:

* a worker's cold shutdown (the second SIGTERM/SIGINT), after it killed and waited for
  its horse: the job goes back to the front of its queue without using one of its RQ
  retries (being stopped is not a failure);
* a worker started to replace one that crashed (``reeltrack worker --replaces NAME``,
  used by ``reeltrack run`` once the old worker and its horse are gone): the crashed
  worker's jobs go back at the front, each using one RQ retry, so a video that crashes
  every worker ends the job ``failed`` instead of looping.

The re-run is the same RQ job, so its claim takes over the ``processing`` row at once
(see :func:`tasks.processing.claim`) and continues after the last finished video.
"""

from __future__ import annotations

import logging

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE, Execution
from rq.job import Job
from rq.job import JobStatus as RQStatus
from rq.utils import as_text

log = logging.getLogger(__name__)


def requeue_interrupted(redis: Redis, rq_job_id: str, *, use_retry: bool) -> bool:
    """Put RQ job ``rq_job_id`` back at the front of its queue if it is still ``started``
    (its run died without RQ recording an end); True when it was requeued.

    Its execution records go first, so RQ's abandoned-job cleanup never sees the dead
    execution later and starts a second run next to the resumed one.  With
    ``use_retry`` one of its retries is spent; with none left it is not requeued (the
    stale-job check then ends it ``failed``).  Raises RedisError when Redis is down.
    """
    try:
        job = Job.fetch(rq_job_id, connection=redis)
    except NoSuchJobError:
        return False
    if job.get_status() != RQStatus.STARTED:
        return False
    if use_retry and not job.retries_left:
        log.warning("RQ job %s: interrupted with no retry left; left to the stale check", job.id)
        return False
    with redis.pipeline() as pipe:
        for execution in job.get_executions():
            execution.delete(job=job, pipeline=pipe)
        job.started_job_registry.remove_executions(job, pipeline=pipe)
        pipe.execute()
    if use_retry:
        job.retries_left = (job.retries_left or 1) - 1
        job.save(include_meta=False, include_result=False)
    Queue(job.origin, connection=redis).enqueue_job(job, at_front=True)
    log.warning("RQ job %s: interrupted run requeued at the front of %r", job.id, job.origin)
    return True


def requeue_dead_worker_jobs(redis: Redis, worker_name: str) -> list[str]:
    """Requeue (spending a retry) every job the dead worker ``worker_name`` was running;
    returns their RQ ids.  Only for a worker known to be dead with its horse (its
    supervisor saw it exit and killed what it left): a live run would get a twin."""
    key = WORKER_EXECUTIONS_KEY_TEMPLATE.format(worker_name)
    requeued = []
    for entry in redis.smembers(key):  # type: ignore[union-attr]
        execution = Execution.from_composite_key(as_text(entry), redis)
        if requeue_interrupted(redis, execution.job_id, use_retry=True):
            requeued.append(execution.job_id)
    redis.delete(key)
    return requeued
