"""Fairness and priority with real ``reeltrack worker`` processes, real Redis and
PostgreSQL, videos fetched from an HTTP origin that answers each request after 1 s (a
real small MP4), so a 40-video job lasts 40 s or more."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from redis import Redis
from rq import Worker as RQWorker

from models.entities import JobPriority, JobSource, JobStatus, ProcessingJob, User
from models.history import events_after
from models.jobs import JobSpec, NewVideo
from quart_app.core.config import Config
from tasks.slices import SlotSettings, slot_rules
from tasks.submission import submit_job
from tests.support.builders import make_list, make_user, seqs
from tests.support.services import RedisServer, start_app
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.slow


class Origin:
    """The slow origin: ``/<n>.mp4`` is a real video, served ``delay`` s after the ask."""

    def __init__(self, video: Path, delay: float) -> None:
        self.body = video.read_bytes()
        self.delay = delay
        self.hits: Counter[str] = Counter()
        self.url = ""

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path_qs] += 1
        await asyncio.sleep(self.delay)  # the slow server itself
        return web.Response(body=self.body, content_type="video/mp4")


def _a_good_mp4(samples: Path) -> Path:
    return next(
        p for p in sorted(samples.iterdir()) if p.suffix == ".mp4" and "corrupt" not in p.name
    )


@pytest.fixture
async def origin(samples: Path) -> AsyncIterator[Origin]:
    video = _a_good_mp4(samples)
    served = Origin(video, 1.0)
    app = web.Application()
    app.router.add_get("/{name}", served.handler)
    runner, port = await start_app(app, access_log=None)
    served.url = f"http://127.0.0.1:{port}"
    try:
        yield served
    finally:
        await runner.cleanup()


async def _submit(
    redis: Redis,
    origin: Origin,
    user: User,
    count: int,
    priority: str = "normal",
    *,
    turns: SlotSettings | None = None,
) -> uuid.UUID:
    """Submit a job of ``count`` videos from the origin (``turns``: the slot rules the
    API passes; None: queued at once, as before it did)."""
    vlist = await make_list(user, f"{count} videos")
    tag = uuid.uuid4().hex[:8]
    items = [
        NewVideo(source=f"{origin.url}/{tag}-{i}.mp4", title=f"{tag} {i}") for i in range(count)
    ]
    job = await submit_job(
        user.id,
        vlist.id,
        items,
        emitter=None,
        redis=redis,
        spec=JobSpec(source=JobSource.JSON, priority=JobPriority(priority)),
        turns=turns,
    )
    return job.id


async def _final(job_id: uuid.UUID, within: float) -> float:
    """Wait until the job is final; the monotonic time at which it was seen so."""

    async def done() -> bool:
        return JobStatus((await ProcessingJob.get(id=job_id)).status).is_final

    await wait_for(done, within, f"job {job_id} final")
    return time.monotonic()


async def _status(job_id: uuid.UUID) -> JobStatus:
    return JobStatus((await ProcessingJob.get(id=job_id)).status)


async def _started(job_id: uuid.UUID) -> None:
    async def moving() -> bool:
        return (await ProcessingJob.get(id=job_id)).processed_videos >= 1

    await wait_for(moving, 30, f"job {job_id} moving")


async def _other_user_first(
    redis: Redis, origin: Origin, a: User, b: User, within: float
) -> tuple[uuid.UUID, float]:
    """A's 40-video job is moving when B submits a 1-video job: B's completes within
    ``within`` s while A's is still processing.  Returns A's job and B's wait."""
    big = await _submit(redis, origin, a, 40)
    await _started(big)
    t0 = time.monotonic()
    small = await _submit(redis, origin, b, 1)
    finished = await _final(small, within)
    assert await _status(small) == JobStatus.COMPLETED
    assert await _status(big) == JobStatus.PROCESSING  # B's finished before A's
    return big, finished - t0


async def _cancel_and_check(job_id: uuid.UUID) -> None:
    """Cancel a job (between or inside slices) and check its history."""
    await ProcessingJob.filter(id=job_id).update(cancel_requested=True)
    await _final(job_id, 30)
    events = await events_after(job_id)
    assert events[-1]["status"] == "cancelled"
    assert seqs(events) == list(range(1, len(events) + 1))


def _workers(cfg: Config, count: int) -> list[WorkerProcess]:
    return [WorkerProcess(cfg, name=f"fair{i}") for i in range(count)]


async def test_make_run_defaults_other_user_first_and_high_before_low(
    own_pg: str, config: Callable[..., Config], own_redis: RedisServer, origin: Origin
) -> None:
    """``make run``'s defaults: 2 workers, SLICE_SECONDS 10, SLICE_VIDEOS 25, two slots
    per user."""
    cfg = config(redis_url=own_redis.url, database_url=own_pg, import_allow_private_hosts=True)
    redis = Redis.from_url(own_redis.url)
    a, b = await make_user(), await make_user()
    workers = _workers(cfg, 2)
    try:
        big, took = await _other_user_first(redis, origin, a, b, 30)
        print(f"\nB's 1-video job completed {took:.1f}s after submission")
        await _cancel_and_check(big)

        low = await _submit(redis, origin, a, 20, "low")
        await _started(low)
        t0 = time.monotonic()
        high = await _submit(redis, origin, a, 1, "high")
        finished = await _final(high, 30)
        assert await _status(high) == JobStatus.COMPLETED
        assert await _status(low) == JobStatus.PROCESSING
        print(f"the high job completed {finished - t0:.1f}s after submission, before the low one")
        await _cancel_and_check(low)
    finally:
        for w in workers:
            w.close()


async def test_many_small_jobs_of_one_user_do_not_hold_another_users_job_behind_them(
    own_pg: str, config: Callable[..., Config], own_redis: RedisServer, origin: Origin
) -> None:
    """A's 16 short jobs (each done within one slice, so each passes its slot straight
    on) are submitted; once 4 of them are done, B's 1-video job: B's completes while
    most of A's still wait.  Before, A's waiting jobs all went into the queue a second
    after their submission, so B's, behind all of them, waited for every one."""
    origin.delay = 0.2
    cfg = config(redis_url=own_redis.url, database_url=own_pg, import_allow_private_hosts=True)
    redis = Redis.from_url(own_redis.url)
    a, b = await make_user(), await make_user()
    workers = _workers(cfg, 2)
    try:
        await wait_for(lambda: RQWorker.count(connection=redis) >= 2, 60, "2 workers up")
        turns = slot_rules(cfg)
        many = [await _submit(redis, origin, a, 2, turns=turns) for _ in range(16)]

        async def done_of_a() -> int:
            return await ProcessingJob.filter(id__in=many, status=JobStatus.COMPLETED).count()

        await wait_for(lambda: _at_least(done_of_a, 4), 60, "4 of A's jobs done")
        t0 = time.monotonic()
        one = await _submit(redis, origin, b, 1, turns=turns)
        finished = await _final(one, 30)
        assert await _status(one) == JobStatus.COMPLETED
        waiting = [j for j in many if not (await _status(j)).is_final]
        print(
            f"\nB's job completed {finished - t0:.1f}s after submission; "
            f"A's jobs still waiting: {len(waiting)}"
        )
        assert len(waiting) >= 6, f"B's job waited for {16 - len(waiting)} of A's 16"
        for job in many:
            await _final(job, 60)
            assert await _status(job) == JobStatus.COMPLETED
            events = await events_after(job)
            assert seqs(events) == list(range(1, len(events) + 1))
    finally:
        for w in workers:
            w.close()


async def _at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n


async def test_one_worker_takes_turns_between_users_and_priorities(
    own_pg: str, config: Callable[..., Config], own_redis: RedisServer, origin: Origin
) -> None:
    """With ONE worker only slices make room: B's job waits at most one slice of A's,
    and a high job, submitted after a low one, runs at the low one's first yield."""
    cfg = config(
        redis_url=own_redis.url,
        database_url=own_pg,
        import_allow_private_hosts=True,
        slice_seconds=4.0,
    )
    redis = Redis.from_url(own_redis.url)
    a, b = await make_user(), await make_user()
    (worker,) = _workers(cfg, 1)
    try:
        big, took = await _other_user_first(redis, origin, a, b, 20)
        print(f"\none worker: B's job completed {took:.1f}s after submission")
        low = await _submit(redis, origin, a, 20, "low")
        high = await _submit(redis, origin, a, 1, "high")
        await _final(high, 30)
        assert await _status(high) == JobStatus.COMPLETED
        assert await _status(low) in (JobStatus.PENDING, JobStatus.PROCESSING)
        for job in (big, low):
            await _cancel_and_check(job)
    finally:
        worker.close()
    assert max(origin.hits.values()) == 1  # no video fetched twice


async def test_worker_killed_mid_slice_job_completes_without_redoing_videos(
    own_pg: str, config: Callable[..., Config], own_redis: RedisServer, origin: Origin
) -> None:
    """SIGKILL of a worker (and its horse, scheduler, cron) inside a later slice; the
    replacement (``--replaces``, as ``reeltrack run`` starts it) resumes the slice."""
    origin.delay = 0.3
    cfg = config(
        redis_url=own_redis.url,
        database_url=own_pg,
        import_allow_private_hosts=True,
        slice_videos=3,
        stale_job_seconds=2,
    )
    redis = Redis.from_url(own_redis.url)
    user = await make_user()
    total = 15
    first = WorkerProcess(cfg, "--name", "slice-w1", name="slice-w1")
    second: WorkerProcess | None = None
    try:
        job = await _submit(redis, origin, user, total)

        async def in_a_later_slice() -> bool:
            row = await ProcessingJob.get(id=job)
            return "-s" in (row.rq_job_id or "") and row.processed_videos in (4, 5, 7, 8)

        await wait_for(in_a_later_slice, 30, "inside a later slice")
        assert first.kill_all() >= 2
        assert await _status(job) == JobStatus.PROCESSING
        second = WorkerProcess(cfg, "--replaces", "slice-w1", name="slice-w2")
        await _final(job, 45)
    finally:
        first.close()
        if second is not None:
            second.close()
    row = await ProcessingJob.get(id=job)
    assert row.status == JobStatus.COMPLETED and row.processed_videos == total
    events = await events_after(job)
    assert seqs(events) == list(range(1, len(events) + 1))
    reported = sorted(e["current_video"] for e in events if e["status"] == "processing")
    assert reported == list(range(1, total + 1))  # every video reported once
    # only the video in flight when the worker died is fetched again
    assert sum(origin.hits.values()) <= total + 1
    assert len(origin.hits) == total
