"""Time slices, user slots and priority queues, run in this process against real Redis
and PostgreSQL: each ``run_job`` call below is what one RQ execution of a slice does
(the RQ job it hands over to is really enqueued; the test runs it next)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from models.entities import JobPriority, JobSource, JobStatus, ProcessingJob, Video, VideoStatus
from models.history import events_after
from models.jobs import JobSpec, NewVideo
from quart_app import cli
from quart_app.core.config import Config
from tasks import slices
from tasks.media import ProcessedMedia
from tasks.processing import default_processor, run_job
from tasks.queue import (
    HIGH_QUEUE,
    LOW_QUEUE,
    QUEUE_NAME,
    WORKER_QUEUES,
    enqueue_processing,
    parse_queues,
    rq_job_id_for,
)
from tasks.slices import (
    DEFER_MAX_FACTOR,
    DEFER_S,
    BlockingUserSlots,
    Turn,
    UserSlots,
    ask_again_in,
    defer_delay,
    slot_rules,
    waiting_rq,
)
from tasks.submission import submit_job
from tasks.worker import ReeltrackWorker
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


async def test_a_job_over_its_owners_cap_is_deferred_and_a_high_waiter_is_woken_first(
    config: Callable[..., Config], samples: Path, own_redis: RedisServer
) -> None:
    """Cap 1: one job runs, one more holds a place in line, the others wait out of line;
    a freed place goes to the best waiter (high before an earlier normal) and wakes it."""
    cfg = config(redis_url=own_redis.url, user_max_active_jobs=1)
    user = await make_user()
    redis = Redis.from_url(own_redis.url)
    registry = ScheduledJobRegistry(QUEUE_NAME, connection=redis)
    jobs = {}
    for name, priority in (
        ("busy", "normal"),
        ("n1", "normal"),
        ("n2", "normal"),
        ("high", "high"),
    ):
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

    async def scheduled_in(name: str) -> float:
        row = await ProcessingJob.get(id=jobs[name].id)
        when = (
            registry.get_scheduled_time(row.rq_job_id)
            if row.priority == "normal"
            else (
                ScheduledJobRegistry(HIGH_QUEUE, connection=redis).get_scheduled_time(row.rq_job_id)
            )
        )
        return when.timestamp() - time.time()

    try:
        assert (await slots.start(user.id, jobs["busy"].id, "normal")).granted  # the busy slice
        outcome, first_id = await _next_slice(cfg, jobs["n1"].id)
        assert outcome == "deferred"
        row = await ProcessingJob.get(id=jobs["n1"].id)
        assert row.status == JobStatus.PENDING and row.rq_job_id != first_id
        assert row.rq_job_id in registry.get_job_ids()  # asked again later, no retry spent
        assert await scheduled_in("n1") <= DEFER_S + 1  # it holds the place in line: soon
        assert (await _next_slice(cfg, jobs["n2"].id))[0] == "deferred"
        assert (await _next_slice(cfg, jobs["high"].id))[0] == "deferred"
        assert await scheduled_in("n2") > DEFER_S  # out of line: behind the high one
        assert await slots.release(user.id, jobs["busy"].id) == 1
        # the freed place is the high job's, though it waited less: due now
        assert await scheduled_in("high") <= 1
        assert await scheduled_in("n2") > DEFER_S
        for name in ("n1", "high", "n2"):
            assert (await _next_slice(cfg, jobs[name].id))[0] == "completed"
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
    """Cap 1: two of a user's jobs are in line (one runs), the rest wait, each told how
    many wait ahead of it; each ask is a dequeue and a Redis call in the worker, so the
    next in line asks every DEFER_S, the n-th n times less often (at most
    DEFER_MAX_FACTOR)."""
    slots = UserSlots.from_url(own_redis.url, cap=1, lease_s=60, forget_s=60)
    user = uuid.uuid4()
    first, second, *normal = [uuid.uuid4() for _ in range(5)]
    try:
        assert await slots.enter(user, first, "high", "") == Turn(True)
        assert await slots.enter(user, second, "high", "") == Turn(True)
        for job in normal:
            assert not (await slots.enter(user, job, "normal", "")).granted
        assert await slots.start(user, first, "high") == Turn(True)
        # asked again: each keeps its place (waiters of one millisecond are ordered by id)
        ahead = {job: (await slots.enter(user, job, "normal", "")).ahead for job in normal}
        assert sorted(ahead.values()) == [1, 2, 3]  # behind the second, in line
        # the second, started while the first runs: refused, and back in line at once
        assert await slots.start(user, second, "high") == Turn(False, 0, True)
        assert ask_again_in(Turn(False, 0, True)) == DEFER_S
        await slots.release(user, first)
        # the freed place in line went to the nearest normal waiter; the second runs now
        nearest = min(ahead, key=ahead.__getitem__)
        assert await slots.enter(user, nearest, "normal", "") == Turn(True)
        assert await slots.start(user, second, "high") == Turn(True)
        # a high job waiting goes ahead of the normal ones out of line
        assert await slots.enter(user, uuid.uuid4(), "high", "") == Turn(False, 0)
        for job in normal:
            if job != nearest:
                assert await slots.enter(user, job, "normal", "") == Turn(False, ahead[job])
    finally:
        await slots.close()
    assert [defer_delay(n) for n in (0, 1, 4, 9, 50)] == [
        DEFER_S,
        2 * DEFER_S,
        5 * DEFER_S,
        DEFER_MAX_FACTOR * DEFER_S,
        DEFER_MAX_FACTOR * DEFER_S,
    ]


def _strictly_later_each_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    """The slots' clock a millisecond on at each ask (waiters who asked in the same
    millisecond are ordered by id: a test of who comes first must not depend on it)."""
    ticks = itertools.count()
    monkeypatch.setattr(slices, "_now_ms", lambda: int(time.time() * 1000) + next(ticks))


async def test_a_release_wakes_the_best_waiters_scheduled_rq_job(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiter does not poll for the freed place in line: the release gives it the
    place and makes its scheduled RQ job due now (RQ's scheduler enqueues it); a
    waiter whose RQ job is no longer scheduled is not scheduled again."""
    _strictly_later_each_ask(monkeypatch)
    redis = Redis.from_url(own_redis.url)
    slots = UserSlots.from_url(own_redis.url, cap=1, lease_s=60, forget_s=60)
    user = uuid.uuid4()
    running, queued, first, second = (uuid.uuid4() for _ in range(4))
    registry = ScheduledJobRegistry(QUEUE_NAME, connection=redis)
    try:
        assert await slots.start(user, running, "normal") == Turn(True)
        assert await slots.enter(user, queued, "normal", "") == Turn(True)
        rq_ids = {}
        for job in (first, second):
            rq_ids[job] = enqueue_processing(redis, job, owner_id=user, delay_s=600)
            rq = waiting_rq(rq_ids[job], QUEUE_NAME)
            assert not (await slots.enter(user, job, "normal", rq)).granted
        later = time.time() + 500
        assert all(registry.get_scheduled_time(i).timestamp() > later for i in rq_ids.values())

        assert await slots.release(user, running) == 1
        assert registry.get_scheduled_time(rq_ids[first]).timestamp() <= time.time() + 1
        assert registry.get_scheduled_time(rq_ids[second]).timestamp() > later
        # the woken one holds its place: its run is granted; the other still waits
        assert await slots.start(user, first, "normal") == Turn(True)
        assert not (await slots.enter(user, second, "normal", "")).granted

        registry.remove(rq_ids[second])  # say, deleted meanwhile
        assert await slots.release(user, first) == 1
        assert rq_ids[second] not in registry.get_job_ids()
    finally:
        await slots.close()
        redis.close()


def test_the_worker_sends_a_job_back_to_wait_its_turn_without_forking(
    config: Callable[..., Config], own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dequeued job whose owner holds every slot is scheduled again, as the same RQ
    job, without a work-horse; a job of another user is not held back by it."""
    _strictly_later_each_ask(monkeypatch)
    cfg = config(redis_url=own_redis.url, user_max_active_jobs=1)
    redis = Redis.from_url(own_redis.url)
    try:
        worker = ReeltrackWorker(
            [Queue(QUEUE_NAME, connection=redis)], connection=redis, config=cfg
        )
        busy_owner = uuid.uuid4()
        holder = BlockingUserSlots(redis, **slot_rules(cfg))
        assert holder.start(busy_owner, uuid.uuid4(), "normal", "").granted
        rq_id = enqueue_processing(redis, uuid.uuid4(), owner_id=busy_owner)
        queue = Queue(QUEUE_NAME, connection=redis)
        job, _ = Queue.dequeue_any([queue], None, connection=redis) or (None, None)
        assert job is not None and job.id == rq_id

        worker.execute_job(job, queue)  # returns at once: no fork, nothing run
        assert worker.horse_pid == 0
        registry = ScheduledJobRegistry(QUEUE_NAME, connection=redis)
        assert registry.get_job_ids() == [rq_id]
        assert (
            DEFER_S - 1
            <= registry.get_scheduled_time(rq_id).timestamp() - time.time()
            <= DEFER_S + 1
        )
        assert Job.fetch(rq_id, connection=redis).get_status() == "scheduled"
        assert queue.count == 0
        # its RQ job is the one a release of the owner's slot wakes
        assert holder.start(busy_owner, uuid.uuid4(), "normal", "") == Turn(False, 1)
        assert worker._waits_its_turn(job, queue)
        other_id = enqueue_processing(redis, uuid.uuid4(), owner_id=uuid.uuid4())
        other = Job.fetch(other_id, connection=redis)
        assert not worker._waits_its_turn(other, queue)
    finally:
        redis.close()


async def test_a_waiter_that_stopped_asking_is_forgotten_and_holds_nobody_back(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiter whose RQ job is gone (never asks again) leaves the line after forget_s
    without an ask; one that keeps asking keeps its place."""
    clock = [1_000_000_000_000]
    monkeypatch.setattr(slices, "_now_ms", lambda: clock[0])
    slots = UserSlots.from_url(own_redis.url, cap=1, lease_s=600, forget_s=60)
    user = uuid.uuid4()
    running, queued, gone, asking = (uuid.uuid4() for _ in range(4))
    try:
        assert await slots.start(user, running, "normal") == Turn(True)
        assert await slots.enter(user, queued, "normal", "") == Turn(True)
        clock[0] += 1  # one ms apart: waiters of one millisecond are ordered by id
        assert await slots.enter(user, gone, "normal", "") == Turn(False, 1)
        clock[0] += 1
        assert await slots.enter(user, asking, "normal", "") == Turn(False, 2)
        clock[0] += 30_000
        assert await slots.enter(user, asking, "normal", "") == Turn(False, 2)
        clock[0] += 31_000  # `gone` last asked 61 s ago, `asking` 31 s ago
        assert await slots.enter(user, asking, "normal", "") == Turn(False, 1)
        # the one in line is never forgotten while it holds its place
        assert await slots.start(user, queued, "normal") == Turn(False, 0, True)
    finally:
        await slots.close()
