"""Benchmark: progress events persisted + published per second by one worker's publisher.

    python -m tests.benchmarks.publisher [--events 2000]

Uses a throw-away PostgreSQL database (TEST_POSTGRES_ADMIN_URL, default the local server;
a private cluster when none answers) and a private Redis; prints events/s and the cost
of each step per event (persist = INSERT event + job counters in one transaction,
publish = one Redis PUBLISH through the socket layer's emitter).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from models.db import close_db, open_db
from models.entities import JobStatus, ProcessingJob, User, VideoList
from quart_app.core.config import Config
from socket_layer.emitter import ProgressEmitter
from tasks.publisher import JobPublisher, make_emitter
from tests.conftest import migrate_in_subprocess
from tests.support.services import (
    RedisServer,
    create_database,
    drop_database,
    postgres_admin,
)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def bench(database_url: str, redis_url: str, events: int) -> None:
    await open_db(database_url)
    emitter: ProgressEmitter = make_emitter(Config(redis_url=redis_url))
    try:
        user = await User.create(username=f"bench{uuid.uuid4().hex[:8]}", password_hash="x")
        vlist = await VideoList.create(owner=user, name="bench")
        job = await ProcessingJob.create(
            list=vlist, owner=user, status=JobStatus.PROCESSING, total_videos=events
        )
        publisher = JobPublisher(
            job_id=job.id,
            owner_id=user.id,
            last_seq=0,
            total_videos=events,
            emitter=emitter,
            buffer_size=10_000,
        )
        persist_ms: list[float] = []
        publish_ms: list[float] = []
        build_ms: list[float] = []
        for warm in range(20):  # connections, prepared statements
            await emitter.publish_progress(user.id, {"warm": warm})
        started = time.perf_counter()
        for n in range(1, events + 1):
            t0 = time.perf_counter()
            event = publisher.build(
                status="processing",
                progress=min(99, n * 100 // events),
                current_video=n,
                processed_videos=n,
                failed_videos=0,
                message=f"Processed video {n}/{events}: 'Benchmark clip {n}'",
                video_id=uuid.uuid4(),
                video_title=f"Benchmark clip {n}",
            )
            t1 = time.perf_counter()
            await publisher.persist(event)
            t2 = time.perf_counter()
            await publisher.publish(event)
            t3 = time.perf_counter()
            build_ms.append((t1 - t0) * 1000)
            persist_ms.append((t2 - t1) * 1000)
            publish_ms.append((t3 - t2) * 1000)
        elapsed = time.perf_counter() - started
        stats = publisher.stats
        assert stats.events_persisted == events and stats.persist_failures == 0
        print(
            f"events: {events} in {elapsed:.2f} s -> {events / elapsed:,.0f} events/s "
            f"(persisted {stats.events_persisted}, published {stats.events_published}, "
            f"publish failures {stats.publish_failures})"
        )
        print(f"{'step':<10}{'mean ms':>10}{'p50 ms':>10}{'p99 ms':>10}{'share':>8}")
        total = sum(build_ms) + sum(persist_ms) + sum(publish_ms)
        for name, values in (("build", build_ms), ("persist", persist_ms), ("publish", publish_ms)):
            print(
                f"{name:<10}{statistics.fmean(values):>10.3f}{_pct(values, 0.5):>10.3f}"
                f"{_pct(values, 0.99):>10.3f}{sum(values) / total:>8.0%}"
            )
    finally:
        await emitter.close()
        await close_db()


async def main_async(events: int) -> None:
    async with postgres_admin() as admin:
        redis = RedisServer().start()
        url = await create_database(admin, prefix="reeltrack_bench")
        try:
            await asyncio.to_thread(migrate_in_subprocess, url)
            await bench(url, redis.url, events)
        finally:
            await drop_database(url)
            redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main_async(args.events))


if __name__ == "__main__":
    main()
