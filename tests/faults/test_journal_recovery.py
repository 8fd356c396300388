"""A worker SIGKILLed while its DB writes were failing: what clients saw live stays true.

Real processes: a private Redis, a fresh PostgreSQL database, one web process (direct
to the database), RQ workers whose database connection goes through a cuttable TCP
proxy, the fault rig's slow media origin, and two dashboard clients (websocket and
long-polling) of the job's owner.

Mid-job the worker's database is cut: its events pile up in the publisher's retry
buffer while they are published (journaled in Redis first).  The worker is SIGKILLed
with that buffer full, the database comes back, a new worker starts; its stale-job
check re-queues the job (RQ retry) and the resumed run must first store the journaled
events.  Without that, the resumed run reuses the seqs the clients saw with other
content (the tracker records them as ``conflicts``) and the history disagrees with
what the users were shown.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from models.entities import JobStatus, ProcessingJob
from models.history import events_after
from tests.faults.rig import RIG_SETTINGS, MediaOrigin, database, parse_metrics
from tests.support.live import LiveServer, import_videos, sign_up
from tests.support.media import make_video
from tests.support.progress_client import ProgressTracker
from tests.support.services import RedisServer
from tests.support.tcpproxy import TcpProxy, proxy_in_front_of
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.slow

VIDEOS = 24
ORIGIN_DELAY = 0.25  # seconds per video: the job lasts ~6 s unless interrupted
#: events the clients must receive live while the worker's DB is cut (all unpersisted)
LIVE_DURING_CUT = 4


@pytest.fixture
def db_proxy(fresh_pg_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A cuttable proxy in front of the test's database; yields (proxy, proxied URL)."""
    proxy, url = proxy_in_front_of(fresh_pg_url)
    yield proxy, url
    proxy.stop()


async def test_worker_killed_with_unpersisted_live_events_resumes_without_reusing_seqs(
    tmp_path: Path,
    fresh_pg_url: str,
    own_redis: RedisServer,
    db_proxy: tuple[TcpProxy, str],
    start_live_server: Callable[..., Awaitable[LiveServer]],
) -> None:
    proxy, proxied_url = db_proxy
    origin = await MediaOrigin(tmp_path / "origin").start()
    origin.delay = ORIGIN_DELAY
    samples = [
        make_video(origin.directory / "a.mp4").name,
        make_video(origin.directory / "b.webm", codec="libvpx", width=48).name,
    ]
    web = await start_live_server(
        database_url=fresh_pg_url, redis_url=own_redis.url, **RIG_SETTINGS
    )
    # the workers share the web's VAR_DIR (metrics) but reach the DB through the proxy
    worker_config = web.config.with_overrides(database_url=proxied_url)
    workers = [WorkerProcess(worker_config, name="journal-worker0")]
    http = httpx.AsyncClient(base_url=web.url, timeout=30)
    trackers: list[ProgressTracker] = []
    try:
        name = f"journal{uuid.uuid4().hex[:8]}"
        _uid, token = await sign_up(http, name, "pw-" + name)
        headers = {"Authorization": f"Bearer {token}"}
        trackers = [
            ProgressTracker(f"owner-{t[:2]}", web.url, token=token, transport=t)
            for t in ("websocket", "polling")
        ]
        await asyncio.gather(*(t.start() for t in trackers))
        rows = [
            {"url": f"{origin.url}/{samples[i % 2]}", "title": f"clip {i}"} for i in range(VIDEOS)
        ]
        job_id = await import_videos(http, headers, "journal", rows)

        def seen() -> int:  # the lowest seq every client applied
            return min(t.last_seq(job_id) for t in trackers)

        def seen_max() -> int:
            return max(t.last_seq(job_id) for t in trackers)

        await wait_for(lambda: seen() >= 3, 60, "every client sees the job move")
        proxy.cut()  # the worker's DB is gone; the web's is not
        at_cut = seen_max()
        await wait_for(
            lambda: seen() >= at_cut + LIVE_DURING_CUT,
            30,
            f"{LIVE_DURING_CUT} events live while the worker's DB is cut",
        )
        await asyncio.to_thread(workers[0].kill_all)
        shown_before_kill = seen_max()
        async with database(fresh_pg_url):
            stored_seq = (await ProcessingJob.get(id=job_id)).last_seq
        # the scenario: clients hold events the DB does not
        assert stored_seq < shown_before_kill - 1, (stored_seq, shown_before_kill)
        proxy.restore()
        workers.append(WorkerProcess(worker_config, name="journal-worker1"))

        async with database(fresh_pg_url):

            async def final() -> bool:
                job = await ProcessingJob.get(id=job_id)
                return JobStatus(job.status).is_final

            await wait_for(final, 90, "the resumed job ends")
            history = await events_after(job_id, limit=1000)
            job = await ProcessingJob.get(id=job_id)

        def converged() -> bool:
            return all(len(t.history(job_id)) >= len(history) for t in trackers)

        await wait_for(converged, 30, "every client holds the whole history")
        r = await http.get(f"/api/jobs/{job_id}/progress-history?limit=1000", headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        rest = body["events"]
        metrics = parse_metrics((await http.get("/metrics")).text)
    except BaseException:
        print(web.output()[-3000:])
        for w in workers:
            print(f"--- {w.name} ---\n{w.output()[-5000:]}")
        raise
    finally:
        await asyncio.gather(*(t.stop() for t in trackers), return_exceptions=True)
        await http.aclose()
        for w in workers:
            await asyncio.to_thread(w.close)
        await origin.stop()

    print(
        f"stored seq at kill {stored_seq}, shown live {shown_before_kill}, history"
        f" {len(history)}, recovered {metrics.get('reeltrack_progress_events_recovered_total')}"
    )
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    assert job.status == JobStatus.COMPLETED and job.last_seq == len(history)
    assert history[-1]["status"] == "completed" and history[-1]["progress"] == 100
    progress = [e["progress"] for e in history]
    assert progress == sorted(progress), "progress went back after the resume"
    for tracker in trackers:
        assert tracker.conflicts == [], f"{tracker.name}: seqs seen with two contents"
        assert tracker.history(job_id) == history, f"{tracker.name} differs from the DB"
    assert rest == history  # what REST serves is what the clients applied
    # every event shown live but not stored at the kill came back from the journal
    assert metrics.get("reeltrack_progress_events_recovered_total", 0) >= (
        shown_before_kill - stored_seq
    )
