"""Benchmark: four users submit jobs of different sizes at once; each user's time to its
first progress event and to the completion of its last job, with time slices (this
build) against one job at a time (SLICE_SECONDS=0, SLICE_VIDEOS=0,
USER_MAX_ACTIVE_JOBS=0: what a worker did before slices), in the same run.

    python -m tests.benchmarks fairness
    python -m tests.benchmarks.fairness [--delay 0.2] [--workers 2] [--slice-seconds 1]

and :func:`run_waiters` (``python -m tests.benchmarks fairness-waiters``): one user's 100
one-video jobs, then another user's one video 3 s later; how long that one waits.

Real ``reeltrack worker`` processes on a private Redis and a throw-away PostgreSQL
database; videos come from a loopback HTTP origin answering each request after
``delay`` seconds (a real MP4), so a job of N videos needs about N x delay of a worker.
The slice is scaled with the delay (the defaults, 10 s at 1 s per video, are 10 videos
a slice; here 1 s at 0.2 s is 5).  Times are from the moment every job was submitted,
read from the progress history (created_at of the events).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from redis import Redis
from rq import Worker as RQWorker

from models.db import close_db, open_db
from models.entities import JobSource, JobStatus, ProcessingJob, User, VideoList
from models.history import events_after
from models.jobs import JobSpec, NewVideo
from tasks.slices import slot_rules
from tasks.submission import submit_job
from tests.conftest import live_config, migrate_in_subprocess
from tests.support.media import make_video
from tests.support.services import (
    RedisServer,
    create_database,
    drop_database,
    postgres_admin,
    start_app,
)
from tests.support.workers import WorkerProcess

#: user -> the sizes of the jobs it submits (in this order; users in this order too)
PLAN: dict[str, list[int]] = {"ann": [30, 30], "bob": [20, 5], "cat": [5], "dan": [1]}
MODES: dict[str, dict[str, Any]] = {
    "sliced": {},  # the build's policy (slice length set by --slice-seconds)
    "one-at-a-time": {"slice_seconds": 0, "slice_videos": 0, "user_max_active_jobs": 0},
}


@dataclass
class UserResult:
    first_event_s: float = 0.0
    done_s: float = 0.0
    jobs: list[int] = field(default_factory=list)


async def _origin(body: bytes, delay: float) -> tuple[web.AppRunner, str]:

    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(delay)  # the slow server: what a video costs a worker
        return web.Response(body=body, content_type="video/mp4")

    app = web.Application()
    app.router.add_get("/{name}", handler)
    runner, port = await start_app(app, access_log=None)
    return runner, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def _bench_stack(name: str, delay: float) -> AsyncIterator[tuple[str, str, Path, str]]:
    """A private Redis, a migrated throw-away PostgreSQL database (open in Tortoise), a
    work folder and the loopback video origin answering after ``delay``: (Redis URL,
    database URL, folder, origin URL).  All gone at the end."""
    async with postgres_admin() as admin:
        redis = RedisServer().start()
        url = await create_database(admin, prefix=f"reeltrack_{name}")
        base = Path(tempfile.mkdtemp(prefix=f"rt-{name}-"))
        video = make_video(base / "clip.mp4")
        runner, origin = await _origin(video.read_bytes(), delay)
        try:
            await asyncio.to_thread(migrate_in_subprocess, url)
            await open_db(url)
            try:
                yield redis.url, url, base, origin
            finally:
                await close_db()
        finally:
            await runner.cleanup()
            await drop_database(url)
            redis.stop()


async def _workers_up(redis: Redis, count: int) -> None:
    """Until ``count`` RQ workers are registered (started: jobs then wait for no fork)."""
    deadline = time.monotonic() + 60
    while RQWorker.count(connection=redis) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} workers not up within 60s")
        await asyncio.sleep(0.1)


def _since(start: datetime, when: Any) -> float:
    return (when - start).total_seconds() if isinstance(when, datetime) else float("nan")


async def run_mode(
    mode: str,
    base: Path,
    database_url: str,
    redis_url: str,
    origin: str,
    *,
    plan: dict[str, list[int]],
    workers: int,
    slice_seconds: float,
    within: float = 300.0,
) -> dict[str, UserResult]:
    """Run the plan once in ``mode``; per user its times (seconds from the submission)."""
    overrides: dict[str, Any] = {
        "import_allow_private_hosts": True,
        "slice_seconds": slice_seconds,
        "slice_videos": 0,
        **MODES[mode],
    }
    cfg = live_config(base / mode, database_url, redis_url, **overrides)
    procs = [WorkerProcess(cfg, name=f"fair-{mode}-{i}") for i in range(workers)]
    redis = Redis.from_url(redis_url)
    try:
        await _workers_up(redis, workers)
        users: dict[str, User] = {}
        for name in plan:
            users[name] = await User.create(
                username=f"{name}-{mode}-{uuid.uuid4().hex[:6]}", password_hash="x"
            )
        lists = {n: await VideoList.create(owner=u, name="bench") for n, u in users.items()}
        jobs: dict[str, list[uuid.UUID]] = {n: [] for n in plan}
        started_wall = None
        for name, sizes in plan.items():  # one user after the other, all within ms
            for size in sizes:
                tag = uuid.uuid4().hex[:6]
                items = [
                    NewVideo(source=f"{origin}/{tag}-{i}.mp4", title=f"v{i}") for i in range(size)
                ]
                job = await submit_job(
                    users[name].id,
                    lists[name].id,
                    items,
                    emitter=None,
                    redis=redis,
                    spec=JobSpec(source=JobSource.JSON),
                    turns=slot_rules(cfg),
                )
                started_wall = started_wall or job.created_at
                jobs[name].append(job.id)
        all_ids = [j for ids in jobs.values() for j in ids]
        deadline = time.monotonic() + within
        while await ProcessingJob.filter(
            id__in=all_ids, status__in=[JobStatus.PENDING, JobStatus.PROCESSING]
        ).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{mode}: jobs not finished within {within:g}s")
            await asyncio.sleep(0.2)
        assert started_wall is not None
        results: dict[str, UserResult] = {}
        for name, ids in jobs.items():
            result = UserResult(jobs=plan[name])
            firsts, lasts = [], []
            for job_id in ids:
                events = await events_after(job_id)
                assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
                assert events[-1]["status"] == "completed", events[-1]
                moving = [e for e in events if e["status"] == "processing"]
                firsts.append(_since(started_wall, datetime.fromisoformat(moving[0]["created_at"])))
                lasts.append(_since(started_wall, datetime.fromisoformat(events[-1]["created_at"])))
            result.first_event_s = min(firsts)
            result.done_s = max(lasts)
            results[name] = result
        return results
    finally:
        for p in procs:
            p.close()
        redis.close()


def render(results: dict[str, dict[str, UserResult]]) -> str:
    """The table: per user, time to first event and to completion in both modes."""
    sliced, single = results["sliced"], results["one-at-a-time"]
    header = (
        f"{'user':<6}{'jobs (videos)':<15}{'first event s':>14}{'(one at a time)':>17}"
        f"{'completed s':>13}{'(one at a time)':>17}"
    )
    lines = [header, "-" * len(header)]
    for name, r in sliced.items():
        s = single[name]
        jobs = "+".join(str(n) for n in r.jobs)
        lines.append(
            f"{name:<6}{jobs:<15}{r.first_event_s:>14.1f}{s.first_event_s:>17.1f}"
            f"{r.done_s:>13.1f}{s.done_s:>17.1f}"
        )
    worst = max(r.first_event_s for r in sliced.values())
    worst_single = max(r.first_event_s for r in single.values())
    lines.append(
        f"longest wait for a first event: {worst:.1f} s sliced, {worst_single:.1f} s one at a time"
    )
    return "\n".join(lines)


async def run(
    *,
    delay: float = 0.2,
    workers: int = 2,
    slice_seconds: float = 1.0,
    plan: dict[str, list[int]] | None = None,
) -> dict[str, dict[str, UserResult]]:
    """Both modes on one Redis and one database; prints the table and returns it."""
    plan = plan or PLAN
    results: dict[str, dict[str, UserResult]] = {}
    async with _bench_stack("fair", delay) as (redis_url, url, base, origin):
        for mode in MODES:
            results[mode] = await run_mode(
                mode,
                base,
                url,
                redis_url,
                origin,
                plan=plan,
                workers=workers,
                slice_seconds=slice_seconds,
            )
    print(
        f"{workers} workers, {delay:g} s per video, slices of {slice_seconds:g} s; "
        f"jobs submitted in the order {', '.join(plan)}"
    )
    print(render(results))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slice-seconds", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(run(delay=args.delay, workers=args.workers, slice_seconds=args.slice_seconds))


if __name__ == "__main__":
    main()


#: RQ's log line per processing job a worker takes from a queue, and tasks.worker's per
#: one it sends back to wait its turn without a fork
DEQUEUED = re.compile(r"videos(-high|-low)?: tasks\.process_video_list\(")
WAITS_UNFORKED = "waits its turn; asking again in"


@dataclass
class WaitersResult:
    many_done_s: float  # the many-jobs user's last job completed, from its first submission
    late_first_s: float  # the late user's first event, from its own submission
    late_done_s: float
    asks: int  # times a waiting job asked for a slot again (each was an RQ job run)
    forks: int  # work-horses forked for those asks


async def run_waiters(
    *,
    jobs: int = 100,
    late_s: float = 3.0,
    delay: float = 0.2,
    workers: int = 2,
) -> WaitersResult:
    """One user submits ``jobs`` one-video jobs at once (USER_MAX_ACTIVE_JOBS=2: all but two
    wait their turn); ``late_s`` later another user submits one.  What the waiting costs:
    how often the waiters asked again, how many of those asks forked a work-horse, and
    how long the late user waited behind them."""
    async with _bench_stack("wait", delay) as (redis_url, url, base, origin):
        cfg = live_config(
            base, url, redis_url, import_allow_private_hosts=True, log_level="INFO", slice_videos=0
        )
        redis = Redis.from_url(redis_url)
        procs = [WorkerProcess(cfg, name=f"wait-{i}") for i in range(workers)]
        try:
            await _workers_up(redis, workers)

            async def submit(name: str, count: int) -> tuple[float, list[uuid.UUID]]:
                user = await User.create(
                    username=f"{name}-{uuid.uuid4().hex[:6]}", password_hash="x"
                )
                videos = await VideoList.create(owner=user, name="bench")
                at = time.monotonic()
                ids = []
                for _ in range(count):
                    job = await submit_job(
                        user.id,
                        videos.id,
                        [NewVideo(source=f"{origin}/{uuid.uuid4().hex[:8]}.mp4", title="v")],
                        emitter=None,
                        redis=redis,
                        spec=JobSpec(source=JobSource.JSON),
                        turns=slot_rules(cfg),
                    )
                    ids.append(job.id)
                return at, ids

            many_at, many = await submit("ann", jobs)
            await asyncio.sleep(late_s)  # the benchmark's schedule, not a synchronisation
            late_at, late = await submit("dan", 1)
            late_first = late_done = many_done = None
            deadline = time.monotonic() + 600
            while late_done is None or many_done is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("jobs not finished within 600s")
                now = time.monotonic()
                if (
                    late_first is None
                    and await ProcessingJob.filter(id=late[0], last_seq__gte=2).exists()
                ):
                    late_first = now - late_at
                if (
                    late_done is None
                    and await ProcessingJob.filter(id=late[0], status=JobStatus.COMPLETED).exists()
                ):
                    late_done = now - late_at
                if (
                    many_done is None
                    and not await ProcessingJob.filter(
                        id__in=many, status__in=[JobStatus.PENDING, JobStatus.PROCESSING]
                    ).exists()
                ):
                    many_done = now - many_at
                await asyncio.sleep(0.05)
            logs = "".join(p.output() for p in procs)
            unforked = logs.count(WAITS_UNFORKED)
            asks = len(DEQUEUED.findall(logs)) - (jobs + 1)  # one slice each; the rest asked
            result = WaitersResult(
                many_done, late_first or late_done, late_done, asks, asks - unforked
            )
        finally:
            for p in procs:
                p.close()
            redis.close()
    print(
        f"{workers} workers, {delay:g} s per video: ann submits {jobs} one-video jobs, "
        f"dan one video {late_s:g} s later"
    )
    print(
        f"ann done after {result.many_done_s:.1f} s; dan's first event after "
        f"{result.late_first_s:.2f} s, done after {result.late_done_s:.2f} s; "
        f"waiters asked again {result.asks} times, {result.forks} of them in a forked work-horse"
    )
    return result
