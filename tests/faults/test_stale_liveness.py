"""The stale-job check after a database outage (the fault matrix's finding, made
deterministic): a job whose ``heartbeat_at`` went stale only because the DB was down,
while its run kept refreshing its liveness key in Redis, is left alone; the same job
without the key (its worker is gone) is re-queued.  And after a restart of both: a Redis
up for less than STALE_JOB_SECONDS has lost the keys a live run sets again within a
beat, so nothing it lacks is taken as proof of a dead run until then."""

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
from tests.support.services import RedisServer
from tests.support.waiting import wait_for


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


def _up_for(redis: Redis, seconds: float) -> bool:
    return float(redis.info("server")["uptime_in_seconds"]) >= seconds  # type: ignore[index]


async def test_stale_db_heartbeat_with_live_redis_key_is_left_alone(
    db: str, redis_url: str
) -> None:
    redis = Redis.from_url(redis_url)
    await wait_for(lambda: _up_for(redis, 2), 10, "the session Redis up for the stale time")
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


async def test_a_redis_just_restarted_proves_no_run_dead_until_the_stale_time(
    db: str, own_redis: RedisServer
) -> None:
    redis = Redis.from_url(own_redis.url)  # started for this test: up for ~0 s
    user = await User.create(username=f"young{uuid.uuid4().hex[:8]}", password_hash="x")
    vlist = await VideoList.create(owner=user, name="list")
    job = await _running_job(redis, user, vlist)
    redis.flushdb()  # what a restart without persistence leaves: no RQ job, no key
    config = Config(env="test", database_url=db, redis_url=own_redis.url, stale_job_seconds=2)
    report = await check_stale_jobs(config, redis, _NoEmitter(), only=[job.id])
    assert (report.left, report.requeued, report.failed) == ([str(job.id)], [], [])

    await wait_for(lambda: _up_for(redis, 2), 10, "the new Redis up for the stale time")
    report = await check_stale_jobs(config, redis, _NoEmitter(), only=[job.id])
    assert report.requeued == [str(job.id)]
