"""RQ queue names, and enqueueing processing jobs on the queue of their priority. Used by
the API and the worker (no Quart here).

A job is processed in slices (:mod:`tasks.slices`): every slice is its own RQ job
(``process-<job_id>`` for the first, ``process-<job_id>-s<suffix>`` for the next ones),
enqueued at the back of the queue of the job's priority by the slice before it, so the
jobs of one priority take turns.  ``ProcessingJob.rq_job_id`` always names the RQ job
that may run the job next (the claim and the stale-job check rely on it).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.job import JobStatus as RQStatus
from rq.utils import now as rq_now

#: the queue of ``normal`` jobs (the name the queue always had)
QUEUE_NAME = "videos"
HIGH_QUEUE = "videos-high"
LOW_QUEUE = "videos-low"
#: priority -> queue; a worker serves them high first (RQ takes its queues in order)
PRIORITY_QUEUES: dict[str, str] = {"high": HIGH_QUEUE, "normal": QUEUE_NAME, "low": LOW_QUEUE}
#: periodic upkeep (the stale-job check, the retention purge).  A queue of its own so
#: that upkeep never waits behind a backlog of videos, and so that one worker can be
#: dedicated to it (``reeltrack worker --queues maintenance``) when every video worker
#: may be busy for hours.
MAINTENANCE_QUEUE = "maintenance"
#: the queues ``reeltrack worker`` serves by default, in RQ's priority order
WORKER_QUEUES: tuple[str, ...] = (MAINTENANCE_QUEUE, HIGH_QUEUE, QUEUE_NAME, LOW_QUEUE)
JOB_FUNCTION = "tasks.process_video_list"
#: RQ retries a job whose work-horse died; the job resumes after its last finished video.
#: A slice hands the retries it has left to the next slice: yielding spends none.
MAX_RETRIES = 3
RETRY_INTERVALS = [1, 5, 15]
JOB_TIMEOUT_S = 6 * 3600


#: the RQ job meta keys naming whose turn a processing job waits for
TURN_META = ("owner_id", "priority")


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


def queue_for(priority: str | None) -> str:
    """The RQ queue of a job of ``priority`` (``normal``'s for an unknown value)."""
    return PRIORITY_QUEUES.get(str(priority or "normal"), QUEUE_NAME)


def rq_job_id_for(job_id: uuid.UUID | str) -> str:
    """RQ's job id for the first run of a ProcessingJob: stable, so a job is never
    enqueued twice."""
    return f"process-{job_id}"


def next_rq_job_id(job_id: uuid.UUID | str) -> str:
    """A fresh RQ job id for a later slice (or a deferred run) of ProcessingJob ``job_id``."""
    return f"{rq_job_id_for(job_id)}-s{uuid.uuid4().hex[:12]}"


def enqueue_processing(
    redis: Redis,
    job_id: uuid.UUID | str,
    *,
    owner_id: uuid.UUID | str | None = None,
    priority: str | None = "normal",
    pace_s: float = 0.0,
    rq_job_id: str | None = None,
    retries_left: int | None = None,
    delay_s: float = 0.0,
) -> str:
    """Put ``tasks.process_video_list(job_id)`` at the back of the queue of ``priority``;
    returns the RQ job id.  ``pace_s`` > 0 is the demo's pace (seconds per video at
    least; see ``tasks.processing.run_job``).  ``rq_job_id``: the id (default: the job's
    first, stable one); ``retries_left``: what the run before it had left (a slice or a
    deferral passes its budget on); ``delay_s`` > 0 schedules it that much later (RQ's
    scheduler, which every ``reeltrack worker`` runs, enqueues it then).  ``owner_id``
    and the priority go into the RQ job's ``meta`` (:data:`TURN_META`): with them the
    worker asks for the owner's slot before it forks (:mod:`tasks.worker`).

    Raises redis.exceptions.RedisError when Redis is unreachable.
    """
    queue = Queue(queue_for(priority), connection=redis)
    job = queue.create_job(
        JOB_FUNCTION,
        args=(str(job_id),),
        kwargs={"pace_s": pace_s} if pace_s > 0 else None,
        job_id=rq_job_id or rq_job_id_for(job_id),
        timeout=JOB_TIMEOUT_S,
        retry=Retry(max=MAX_RETRIES, interval=RETRY_INTERVALS),
        result_ttl=3600,
        failure_ttl=7 * 86400,
        meta=dict(zip(TURN_META, (str(owner_id), str(priority or "normal")), strict=True))
        if owner_id is not None
        else None,
    )
    if retries_left is not None:
        job.retries_left = max(0, retries_left)
    if delay_s > 0:
        queue.schedule_job(job, rq_now() + timedelta(seconds=delay_s))
    else:
        queue.enqueue_job(job)
    return str(job.id)


def held_by_a_worker(redis: Redis, rq_job_id: str | None) -> bool:
    """Whether a worker runs the RQ job ``rq_job_id`` now (RQ's ``started``): such a run
    notices a cancel or a delete of its job itself and announces it.  False for a job
    that waits (queued, scheduled between slices or deferred, failed awaiting a retry)
    or that RQ no longer has.  True when Redis cannot tell: the caller then leaves the
    announcement to the run, as for a running one.  Blocking (call it off the loop).
    """
    if not rq_job_id:
        return False
    try:
        return Job(rq_job_id, connection=redis).get_status() == RQStatus.STARTED
    except InvalidJobOperation:  # no such RQ job
        return False
    except RedisError:
        return True
