"""The stale-job check after a database outage (the fault matrix's finding, made
deterministic): a job whose ``heartbeat_at`` went stale only because the DB was down,
while its run kept refreshing its liveness key in Redis, is left alone; the same job
without the key (its worker is gone) is re-queued."""

from __future__ import annotations

import uuid
from datetime import timedelta

from redis import Redis
from rq.job import Job
from rq.job import JobStatus as RQStatus

from models.entities import JobStatus, ProcessingJob, User, VideoList
from models.events import utcnow
from models.jobs import NewVideo
from quart_app.core.config import Config
from tasks.queue import enqueue_processing
from tasks.stale import alive_key, check_stale_jobs
from tasks.submission import submit_job


class _NoEmitter:
    async def publish_progress(self, user_id: object, event: dict[str, object]) -> None:
        raise AssertionError("nothing may be published")


async def _running_job(redis: Redis, user: User, vlist: VideoList) -> ProcessingJob:
    """A job a worker claimed (RQ job started, retries left) whose DB heartbeat is 30 s old."""
    job = await submit_job(
        user.id,
        vlist.id,
        [NewVideo(source="import:x.mp4", title="x")],
        emitter=None,
        redis=None,
        enqueue=False,
    )
    rq_id = enqueue_processing(redis, job.id)
    Job.fetch(rq_id, connection=redis).set_status(RQStatus.STARTED)
    old = utcnow() - timedelta(seconds=30)
    await ProcessingJob.filter(id=job.id).update(
        status=JobStatus.PROCESSING, rq_job_id=rq_id, heartbeat_at=old, started_at=old
    )
    return job


async def test_stale_db_heartbeat_with_live_redis_key_is_left_alone(
    db: str, redis_url: str
) -> None:
    redis = Redis.from_url(redis_url)
    user = await User.create(username=f"alive{uuid.uuid4().hex[:8]}", password_hash="x")
    vlist = await VideoList.create(owner=user, name="list")
    alive = await _running_job(redis, user, vlist)
    gone = await _running_job(redis, user, vlist)
    redis.set(alive_key(alive.id), "1", ex=30)  # what the running job's heartbeat does
    config = Config(env="test", database_url=db, redis_url=redis_url, stale_job_seconds=2)
    try:
        report = await check_stale_jobs(config, redis, _NoEmitter(), only=[alive.id, gone.id])
    finally:
        redis.delete(alive_key(alive.id))
    assert report.left == [str(alive.id)]
    assert report.requeued == [str(gone.id)]
    assert not report.failed
    assert (await ProcessingJob.get(id=alive.id)).status == JobStatus.PROCESSING
