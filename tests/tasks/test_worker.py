"""The real RQ worker (``reeltrack worker`` subprocesses) and the stale-job check."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from redis import Redis
from rq import Queue
from rq.cron import CronScheduler
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from models.entities import JobStatus, ProcessingJob, User, Video, VideoList, VideoStatus
from models.events import utcnow
from models.history import events_after
from models.jobs import NewVideo
from quart_app import cli
from quart_app.core.config import Config
from socket_layer.emitter import ProgressEmitter
from tasks.queue import MAINTENANCE_QUEUE, QUEUE_NAME, enqueue_processing, parse_queues
from tasks.stale import check_stale_jobs
from tasks.submission import submit_job
from tasks.worker import register_cron_jobs
from tests.support.builders import ChannelRecorder, place_videos, seqs
from tests.support.services import RedisServer, start_app
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess


@pytest.fixture
async def slow_media_server(samples: Path) -> AsyncIterator[str]:
    """Serves the sample videos over HTTP, each after 0.25 s (a slow origin)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.25)
        name = request.match_info["name"]
        return web.Response(body=(samples / name).read_bytes(), content_type="video/mp4")

    app = web.Application()
    app.router.add_get("/{name}", handler)
    runner, port = await start_app(app)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _user_and_list(name: str) -> tuple[User, VideoList]:
    user = await User.create(username=name, password_hash="x")
    return user, await VideoList.create(owner=user, name="list")


async def test_worker_burst_runs_an_enqueued_job(
    own_pg: str, config: Callable[..., Config], samples: Path, own_redis: RedisServer
) -> None:
    cfg = config(redis_url=own_redis.url, database_url=own_pg)
    items = place_videos(samples, cfg.import_root, 3)
    user, vlist = await _user_and_list(f"burst{own_redis.port}")
    job = await submit_job(
        user.id, vlist.id, items, emitter=None, redis=Redis.from_url(own_redis.url)
    )
    assert job.rq_job_id
    worker = WorkerProcess(cfg, "--burst")
    try:
        await asyncio.to_thread(worker.proc.wait, 60)
        assert worker.proc.returncode == 0, worker.output()
        stored = await ProcessingJob.get(id=job.id)
        assert stored.status == JobStatus.COMPLETED, worker.output()
    finally:
        worker.close()
    assert seqs(await events_after(job.id)) == list(range(1, 6))


@pytest.mark.slow
async def test_killed_worker_job_resumes_and_completes_without_redoing_videos(
    own_pg: str,
    config: Callable[..., Config],
    samples: Path,
    own_redis: RedisServer,
    slow_media_server: str,
) -> None:
    cfg = config(
        redis_url=own_redis.url,
        database_url=own_pg,
        stale_job_seconds=2,
        import_allow_private_hosts=True,
    )
    names = sorted(n for n in os.listdir(samples) if n != "corrupt.mp4")
    items = [
        NewVideo(source=f"{slow_media_server}/{names[i % len(names)]}", title=f"Slow {i}")
        for i in range(16)
    ]
    user, vlist = await _user_and_list(f"kill{own_redis.port}")
    recorder = await ChannelRecorder.start(own_redis.url, user.id)
    emitter = ProgressEmitter(own_redis.url)
    redis = Redis.from_url(own_redis.url)
    job = await submit_job(user.id, vlist.id, items, emitter=emitter, redis=redis)
    await emitter.close()
    first = WorkerProcess(cfg)
    second: WorkerProcess | None = None
    try:

        async def some_ready() -> bool:
            return await Video.filter(job_id=job.id, status=VideoStatus.READY).count() >= 5

        await wait_for(some_ready, 60, "five videos ready")
        assert first.kill_all() >= 3  # parent, work-horse, scheduler and/or cron
        before = {
            v.id: v.processed_at
            for v in await Video.filter(job_id=job.id, status=VideoStatus.READY)
        }
        killed_at_seq = (await ProcessingJob.get(id=job.id)).last_seq
        assert (await ProcessingJob.get(id=job.id)).status == JobStatus.PROCESSING
        second = WorkerProcess(cfg)

        async def finished() -> bool:
            return (await ProcessingJob.get(id=job.id)).status.is_final  # type: ignore[no-any-return]

        await wait_for(finished, 60, "the job to finish")
        published = await recorder.wait_for(lambda ev: any(e["status"] == "completed" for e in ev))
    except BaseException:
        print("RECORDED", [(e["seq"], e["status"]) for e in recorder.events], recorder._task)
        print(first.output(), second.output() if second else "")
        raise
    finally:
        await recorder.stop()
        first.close()
        if second is not None:
            second.close()
    stored = await ProcessingJob.get(id=job.id)
    assert stored.status == JobStatus.COMPLETED
    history = await events_after(job.id, limit=1000)
    assert seqs(history) == list(range(1, len(history) + 1))  # contiguous across the kill
    assert history[-1]["status"] == "completed" and history[-1]["processed_videos"] == 16
    assert history[-1]["seq"] > killed_at_seq
    numbers = [e["current_video"] for e in history if e["status"] == "processing"]
    assert len(numbers) == len(set(numbers))  # no video reported twice
    after = {v.id: v.processed_at for v in await Video.filter(job_id=job.id)}
    assert all(after[vid] == at for vid, at in before.items())  # not processed again
    assert all(v.status == VideoStatus.READY for v in await Video.filter(job_id=job.id))
    # what went live after the kill continues the same seq line
    assert seqs(published) == sorted(set(seqs(published)))
    assert [e for e in published if e["seq"] > killed_at_seq] == [
        e for e in history if e["seq"] > killed_at_seq
    ]
    rq_job = Job.fetch(job.rq_job_id or "", connection=redis)
    assert rq_job.retries_left is not None and rq_job.retries_left < 3  # it was a retry


async def test_stale_job_without_retries_ends_failed_with_a_final_event(
    db: str, config: Callable[..., Config], samples: Path, own_redis: RedisServer
) -> None:
    cfg = config(redis_url=own_redis.url, stale_job_seconds=2)
    items = place_videos(samples, cfg.import_root, 4)
    user, vlist = await _user_and_list(f"stale{own_redis.port}")
    redis = Redis.from_url(own_redis.url)
    job = await submit_job(user.id, vlist.id, items, emitter=None, redis=None, enqueue=False)
    # a worker claimed it, finished one video, then died; RQ's retries are used up
    rq_id = enqueue_processing(redis, job.id)
    rq_job = Job.fetch(rq_id, connection=redis)
    rq_job.retries_left = 0
    rq_job.save()
    old = utcnow() - timedelta(seconds=30)
    await ProcessingJob.filter(id=job.id).update(
        status=JobStatus.PROCESSING, rq_job_id=rq_id, heartbeat_at=old, started_at=old
    )
    first_video = await Video.filter(job_id=job.id).order_by("position").first()
    assert first_video is not None
    await Video.filter(id=first_video.id).update(status=VideoStatus.READY, processed_at=old)
    from rq.job import JobStatus as RQStatus

    rq_job.set_status(RQStatus.FAILED)
    # and one that is fresh: left alone
    fresh = await submit_job(user.id, vlist.id, items[:1], emitter=None, redis=None, enqueue=False)
    await ProcessingJob.filter(id=fresh.id).update(
        status=JobStatus.PROCESSING, heartbeat_at=utcnow()
    )
    recorder = await ChannelRecorder.start(own_redis.url, user.id)
    emitter = ProgressEmitter(own_redis.url)
    try:
        # scoped to this test's jobs: the session database holds other tests' jobs
        report = await check_stale_jobs(cfg, redis, emitter, only=[job.id, fresh.id])
        published = await recorder.wait_for(lambda ev: len(ev) >= 1)
    finally:
        await recorder.stop()
        await emitter.close()
    assert report.failed == [str(job.id)] and not report.requeued
    stored = await ProcessingJob.get(id=job.id)
    assert stored.status == JobStatus.FAILED and stored.finished_at is not None
    history = await events_after(job.id)
    assert [e["status"] for e in history] == ["pending", "failed"]
    assert history[-1]["seq"] == 2 and history[-1]["error"]
    assert published == [history[-1]]
    statuses = [v.status for v in await Video.filter(job_id=job.id).order_by("position")]
    assert statuses == [VideoStatus.READY] + [VideoStatus.FAILED] * 3
    assert (await ProcessingJob.get(id=fresh.id)).status == JobStatus.PROCESSING
    # a second pass changes nothing
    again = await check_stale_jobs(
        cfg, redis, ProgressEmitter(own_redis.url), only=[job.id, fresh.id]
    )
    assert not again.failed and not again.requeued


async def test_stale_check_enqueues_a_retry_whose_scheduler_is_gone(
    db: str, config: Callable[..., Config], samples: Path, own_redis: RedisServer
) -> None:
    """A retry RQ scheduled for minutes ago that nobody enqueued (its scheduler process
    died in a Redis outage) is enqueued by the check; one due just now is left alone."""
    cfg = config(redis_url=own_redis.url, stale_job_seconds=2)
    items = place_videos(samples, cfg.import_root, 1)
    user, vlist = await _user_and_list(f"overdue{own_redis.port}")
    redis = Redis.from_url(own_redis.url)
    queue = Queue(QUEUE_NAME, connection=redis)
    old = utcnow() - timedelta(seconds=30)
    jobs: dict[str, ProcessingJob] = {}
    rq_jobs: dict[str, Job] = {}
    for name, due in (("overdue", utcnow() - timedelta(minutes=5)), ("due", utcnow())):
        job = await submit_job(user.id, vlist.id, items, emitter=None, redis=None, enqueue=False)
        rq_job = Job.fetch(enqueue_processing(redis, job.id), connection=redis)
        queue.remove(rq_job)  # what RQ does with a retry that has an interval
        queue.schedule_job(rq_job, due)
        await ProcessingJob.filter(id=job.id).update(
            status=JobStatus.PROCESSING, rq_job_id=rq_job.id, heartbeat_at=old, started_at=old
        )
        jobs[name], rq_jobs[name] = job, rq_job
    assert rq_jobs["overdue"].get_status(refresh=True) == "scheduled"

    emitter = ProgressEmitter(own_redis.url)
    try:
        report = await check_stale_jobs(cfg, redis, emitter, only=[j.id for j in jobs.values()])
    finally:
        await emitter.close()

    assert report.requeued == [str(jobs["overdue"].id)]
    assert report.left == [str(jobs["due"].id)]
    assert rq_jobs["overdue"].get_status(refresh=True) == "queued"
    assert queue.job_ids == [rq_jobs["overdue"].id]
    # the one due now stays with RQ's scheduler
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == [rq_jobs["due"].id]


# --- queues ----------------------------------------------------------------------------


def _enqueue_noop(redis: Redis, queue: str) -> Job:
    # os.getpid: importable in the work-horse, needs neither the DB nor a config
    return Queue(queue, connection=redis).enqueue_call("os.getpid", result_ttl=600)


async def test_default_worker_runs_maintenance_before_queued_videos(
    config: Callable[..., Config], own_redis: RedisServer
) -> None:
    redis = Redis.from_url(own_redis.url)
    video = _enqueue_noop(redis, QUEUE_NAME)  # queued first ...
    upkeep = _enqueue_noop(redis, MAINTENANCE_QUEUE)  # ... run second
    worker = WorkerProcess(config(redis_url=own_redis.url), "--burst")
    try:
        await asyncio.to_thread(worker.proc.wait, 60)
        assert worker.proc.returncode == 0, worker.output()
    finally:
        worker.close()
    video.refresh()
    upkeep.refresh()
    assert video.get_status() == upkeep.get_status() == "finished"
    assert upkeep.ended_at is not None and video.started_at is not None
    assert upkeep.ended_at <= video.started_at


async def test_maintenance_worker_serves_only_the_maintenance_queue(
    config: Callable[..., Config], own_redis: RedisServer
) -> None:
    redis = Redis.from_url(own_redis.url)
    video = _enqueue_noop(redis, QUEUE_NAME)
    upkeep = _enqueue_noop(redis, MAINTENANCE_QUEUE)
    worker = WorkerProcess(
        config(redis_url=own_redis.url), "--burst", "--queues", MAINTENANCE_QUEUE
    )
    try:
        await asyncio.to_thread(worker.proc.wait, 60)
        assert worker.proc.returncode == 0, worker.output()
    finally:
        worker.close()
    assert upkeep.get_status(refresh=True) == "finished"
    assert video.get_status(refresh=True) == "queued"


def test_stale_check_is_scheduled_on_the_maintenance_queue(
    config: Callable[..., Config], own_redis: RedisServer
) -> None:
    scheduler = CronScheduler(connection=Redis.from_url(own_redis.url))
    register_cron_jobs(scheduler, config(redis_url=own_redis.url))
    queues = {job.func_name: job.queue_name for job in scheduler.get_jobs()}
    assert queues["tasks.stale.check_stale_jobs_job"] == MAINTENANCE_QUEUE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("videos,thumbnails", "unknown queue 'thumbnails'; the queues are: maintenance, videos"),
        ("videos,videos", "a queue is named twice"),
        (" , ", "no queue given"),
    ],
)
def test_worker_refuses_bad_queue_lists(
    text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # refused by the argument parser: before the config is read or anything starts
    with pytest.raises(SystemExit) as exited:
        cli.main(["worker", "--queues", text])
    assert exited.value.code == 2
    assert f"argument --queues: {message}" in capsys.readouterr().err


def test_parse_queues_keeps_the_priority_order() -> None:
    assert parse_queues("videos, maintenance") == ("videos", "maintenance")
