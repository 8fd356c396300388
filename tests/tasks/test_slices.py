"""Time slices, user slots and priority queues, run in this process against real Redis
and PostgreSQL: each ``run_job`` call below is what one RQ execution of a slice does
(the RQ job it hands over to is really enqueued; the test runs it next)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.registry import ScheduledJobRegistry

from models.entities import JobPriority, JobSource, JobStatus, ProcessingJob, Video, VideoStatus
from models.history import events_after
from models.jobs import JobSpec, NewVideo
from quart_app import cli
from quart_app.core.config import Config
from tasks.media import ProcessedMedia
from tasks.processing import default_processor, run_job
from tasks.queue import (
    HIGH_QUEUE,
    LOW_QUEUE,
    QUEUE_NAME,
    WORKER_QUEUES,
    parse_queues,
    rq_job_id_for,
)
from tasks.slices import DEFER_MAX_FACTOR, DEFER_S, Turn, UserSlots, defer_delay
from tasks.submission import submit_job
from tests.support.builders import make_list, make_user, place_videos, seed_job, seqs
from tests.support.services import RedisServer

pytestmark = pytest.mark.usefixtures("db")


def _reported(events: list[dict]) -> list[int]:
    return sorted(e["current_video"] for e in events if e["status"] == "processing")


async def _next_slice(cfg: Config, job_id: uuid.UUID, **kwargs: object) -> tuple[str, str]:
    """Run the RQ job the row names, as RQ would; (outcome, the RQ id it ran as)."""
    row = await ProcessingJob.get(id=job_id)
    rq_id = row.rq_job_id or rq_job_id_for(job_id)
    return await run_job(job_id, cfg, rq_job_id=rq_id, sliced=True, **kwargs), rq_id  # type: ignore[arg-type]


async def test_slices_hand_over_with_one_writer_contiguous_seq_and_no_video_twice(
    config: Callable[..., Config], samples: Path, own_redis: RedisServer
) -> None:
    cfg = config(redis_url=own_redis.url, slice_videos=2, slice_seconds=0)
    items = place_videos(samples, cfg.import_root, 5)
    _user, job = await seed_job(items)
    redis = Redis.from_url(own_redis.url)
    outcomes, ran_as = [], []
    for _ in range(3):
        outcome, rq_id = await _next_slice(cfg, job.id)
        outcomes.append(outcome)
        ran_as.append(rq_id)
        row = await ProcessingJob.get(id=job.id)
        if outcome == "yielded":
            # the next slice is queued at the back of the job's queue under a new id
            assert row.rq_job_id not in ran_as
            assert row.rq_job_id in Queue(QUEUE_NAME, connection=redis).get_job_ids()
            assert row.status == JobStatus.PROCESSING
            # the slice that yielded may not write again: only the named RQ job may
            assert await run_job(job.id, cfg, rq_job_id=rq_id, sliced=True) == "skipped"
    assert outcomes == ["yielded", "yielded", "completed"]
    events = await events_after(job.id)
    assert seqs(events) == list(range(1, 8))  # pending, 5 videos, completed
    assert _reported(events) == [1, 2, 3, 4, 5]
    assert events[-1]["status"] == "completed" and events[-1]["progress"] == 100
    assert await Video.filter(job_id=job.id, status=VideoStatus.READY).count() == 5


async def test_job_time_budget_counts_across_slices(
    config: Callable[..., Config], samples: Path, own_redis: RedisServer
) -> None:
    cfg = config(redis_url=own_redis.url, slice_videos=1, slice_seconds=0, job_time_budget=1.0)

    async def slow(video: Video, c: Config) -> ProcessedMedia:
        await asyncio.sleep(0.4)
        return await default_processor(video, c)

    _user, job = await seed_job(place_videos(samples, cfg.import_root, 5))
    outcome = "yielded"
    while outcome == "yielded":
        outcome, _ = await _next_slice(cfg, job.id, processor=slow)
    assert outcome == "completed"
    videos = await Video.filter(job_id=job.id).order_by("position")
    # 0.4 s + 0.4 s in two slices; the third slice has 0.2 s left of the 1 s budget
    assert [v.status for v in videos[:2]] == [VideoStatus.READY] * 2
    assert all(v.status == VideoStatus.FAILED for v in videos[2:])
    assert all("job time budget exceeded" in (v.error or "") for v in videos[2:])
    assert seqs(await events_after(job.id)) == list(range(1, 8))


async def test_a_job_over_its_owners_cap_is_deferred_and_high_waits_ahead_of_normal(
    config: Callable[..., Config], samples: Path, own_redis: RedisServer
) -> None:
    cfg = config(redis_url=own_redis.url, user_max_active_jobs=1)
    user = await make_user()
    redis = Redis.from_url(own_redis.url)
    jobs = {}
    for name, priority in (("busy", "normal"), ("normal", "normal"), ("high", "high")):
        vlist = await make_list(user, name)
        jobs[name] = await submit_job(
            user.id,
            vlist.id,
            place_videos(samples, cfg.import_root, 1),
            emitter=None,
            redis=redis,
            spec=JobSpec(source=JobSource.JSON, priority=JobPriority(priority)),
        )
    slots = UserSlots.from_url(own_redis.url, cap=1, lease_s=60, forget_s=60)
    try:
        assert (await slots.acquire(user.id, jobs["busy"].id, "normal")).granted  # the busy slice
        outcome, first_id = await _next_slice(cfg, jobs["normal"].id)
        assert outcome == "deferred"
        row = await ProcessingJob.get(id=jobs["normal"].id)
        assert row.status == JobStatus.PENDING and row.rq_job_id != first_id
        scheduled = ScheduledJobRegistry(QUEUE_NAME, connection=redis).get_job_ids()
        assert row.rq_job_id in scheduled  # asked again later, no retry spent
        assert (await _next_slice(cfg, jobs["high"].id))[0] == "deferred"
        await slots.release(user.id, jobs["busy"].id)
        # the slot is free: the high job, though it waited less, goes first
        assert (await _next_slice(cfg, jobs["normal"].id))[0] == "deferred"
        assert (await _next_slice(cfg, jobs["high"].id))[0] == "completed"
        assert (await _next_slice(cfg, jobs["normal"].id))[0] == "completed"
    finally:
        await slots.close()
    for job in jobs.values():
        if job is not jobs["busy"]:
            assert seqs(await events_after(job.id)) == [1, 2, 3]


async def test_priorities_have_their_own_queues_and_high_is_limited_per_user(
    config: Callable[..., Config], samples: Path, own_redis: RedisServer
) -> None:
    cfg = config(redis_url=own_redis.url)
    assert WORKER_QUEUES == ("maintenance", HIGH_QUEUE, QUEUE_NAME, LOW_QUEUE)
    assert parse_queues("videos-high,videos-low") == (HIGH_QUEUE, LOW_QUEUE)
    # `reeltrack worker` (and so every worker of `reeltrack run`) serves all of them
    assert cli.build_parser().parse_args(["worker"]).queues == WORKER_QUEUES
    user = await make_user()
    redis = Redis.from_url(own_redis.url)
    stored = []
    for priority in ("high", "high", "high", "low"):
        vlist = await make_list(user, priority)
        job = await submit_job(
            user.id,
            vlist.id,
            [NewVideo(source="import:none.mp4", title="x")],
            emitter=None,
            redis=redis,
            spec=JobSpec(source=JobSource.JSON, priority=JobPriority(priority)),
            high_priority_max_active=cfg.high_priority_max_active,
        )
        stored.append((await ProcessingJob.get(id=job.id)).priority)
    # two unfinished high jobs allowed (the default): the third is submitted as normal
    assert stored == ["high", "high", "normal", "low"]
    assert len(Queue(HIGH_QUEUE, connection=redis).get_job_ids()) == 2
    assert len(Queue(QUEUE_NAME, connection=redis).get_job_ids()) == 1
    assert len(Queue(LOW_QUEUE, connection=redis).get_job_ids()) == 1


async def test_a_waiter_is_told_how_many_wait_ahead_and_asks_again_later_the_further_back(
    own_redis: RedisServer,
) -> None:
    """Polls of a user's waiting jobs cost the workers a fork each: the next in line
    asks every DEFER_S, the n-th n times less often (at most DEFER_MAX_FACTOR)."""
    slots = UserSlots.from_url(own_redis.url, cap=1, lease_s=60, forget_s=60)
    user = uuid.uuid4()
    jobs = [uuid.uuid4() for _ in range(4)]
    try:
        assert await slots.acquire(user, jobs[0], "normal") == Turn(True)
        for job in jobs[1:]:
            assert not (await slots.acquire(user, job, "normal")).granted
        # asked again: each keeps its place (waiters of one millisecond are ordered by id)
        ahead = {job: (await slots.acquire(user, job, "normal")).ahead for job in jobs[1:]}
        assert sorted(ahead.values()) == [0, 1, 2]
        # a high job waiting goes ahead of the normal ones
        assert await slots.acquire(user, uuid.uuid4(), "high") == Turn(False, 0)
        for job in jobs[1:]:
            assert await slots.acquire(user, job, "normal") == Turn(False, ahead[job] + 1)
        await slots.release(user, jobs[0])
        # the free slot is the high waiter's: the next normal one still waits behind it
        nearest = min(ahead, key=ahead.__getitem__)
        assert await slots.acquire(user, nearest, "normal") == Turn(False, 1)
    finally:
        await slots.close()
    assert [defer_delay(n) for n in (0, 1, 4, 9, 50)] == [
        DEFER_S,
        2 * DEFER_S,
        5 * DEFER_S,
        DEFER_MAX_FACTOR * DEFER_S,
        DEFER_MAX_FACTOR * DEFER_S,
    ]
