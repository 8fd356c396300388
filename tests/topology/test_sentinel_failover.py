"""The queue's Redis fails over under a running job: a Sentinel-managed Redis (a master,
one replica, three Sentinels on free ports), one web process and one worker on its
``redis+sentinel://`` URL, dashboard clients on both transports.

Mid-job the master is SIGKILLed; the Sentinels promote the replica.  The worker, its
cron (stale check) and the web follow the new master: the job completes, its history is
contiguous, every client ends with exactly that history (through ``resync`` and
``resume``) and the user's connection slots count exactly the sockets still open.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from quart_app.core.redis_pools import PoolLimits, async_client
from quart_app.sample_video import make_video
from socket_layer.protocol import presence_key
from tests.conftest import live_config
from tests.faults.rig import MediaOrigin
from tests.support.live import LiveServer, import_videos, sign_up
from tests.support.progress_client import ProgressTracker
from tests.support.services import SentinelRig
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess, web_and_worker

pytestmark = pytest.mark.slow

VIDEOS = 40
ORIGIN_DELAY_S = 0.15


@dataclass
class Installation:
    rig: SentinelRig
    web: LiveServer
    worker: WorkerProcess
    origin: MediaOrigin
    samples: list[str]


@pytest.fixture
async def installation(fresh_pg_url: str, tmp_path: Path) -> AsyncIterator[Installation]:
    rig = await asyncio.to_thread(SentinelRig().start)
    origin_dir = tmp_path / "origin"
    origin_dir.mkdir()
    origin = await MediaOrigin(origin_dir).start()
    origin.delay = ORIGIN_DELAY_S
    samples = [
        make_video(origin_dir / "a.mp4").name,
        make_video(origin_dir / "b.webm", codec="libvpx", width=48).name,
    ]
    config = live_config(
        tmp_path,
        fresh_pg_url,
        rig.url,
        stale_job_seconds=3,  # recovers an enqueue the failover lost within seconds
        import_allow_private_hosts=True,
        rate_limit_per_minute=0,
        ws_ping_interval=1.0,
        ws_ping_timeout=2.0,
        ws_presence_ttl=3.0,
        # the worker and the web keep reconnecting for as long as the test waits for a
        # promotion (wait_promoted), so a slow one fails the test there, with a reason
        redis_failover_wait=30.0,
        slice_videos=5,  # the job hands over between RQ jobs through the failover
    )
    try:
        async with web_and_worker(config, "sentinel") as (web, worker):
            yield Installation(rig, web, worker, origin, samples)
    finally:
        await origin.stop()
        await asyncio.to_thread(rig.stop)


async def _get(http: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any) -> Any:
    r = await http.get(path, headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def test_the_queue_redis_fails_over_mid_job_without_losing_anything(
    installation: Installation,
) -> None:
    inst = installation
    name = f"sent{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=inst.web.url, timeout=30) as http:
        uid, token = await sign_up(http, name, "pw-" + name)
        h = {"Authorization": f"Bearer {token}"}
        trackers = [
            ProgressTracker(f"sentinel-{t}", inst.web.url, token=token, transport=t)
            for t in ("websocket", "polling")
        ]
        await asyncio.gather(*(t.start() for t in trackers))
        try:
            rows = [
                {"url": f"{inst.origin.url}/{inst.samples[i % 2]}", "title": f"v{i}"}
                for i in range(VIDEOS)
            ]
            job = await import_videos(http, h, "failover", rows)

            await wait_for(
                lambda: all(t.last_seq(job) >= 6 for t in trackers), 60, "the job moving"
            )
            seq_at_kill = min(t.last_seq(job) for t in trackers)
            live_at_kill = sum(t.live_events for t in trackers)
            t_kill = time.monotonic()
            old = await asyncio.to_thread(inst.rig.kill_master)
            new_port = await asyncio.to_thread(inst.rig.wait_promoted, old.port)
            promoted_s = time.monotonic() - t_kill

            def live_again() -> bool:  # a live event delivered after the promotion
                return sum(t.live_events for t in trackers) > live_at_kill + 2

            try:
                await wait_for(live_again, 30, "live events again after the failover")
            except AssertionError:
                print("WORKER", inst.worker.output()[-6000:], "\nWEB", inst.web.output()[-3000:])
                raise
            live_s = time.monotonic() - t_kill

            async def final() -> bool:
                try:
                    status = (await _get(http, f"/api/jobs/{job}", h))["status"]
                except (AssertionError, httpx.HTTPError):
                    return False
                return status in {"completed", "failed", "cancelled"}

            await wait_for(final, 90, "the job to end", interval=0.2)
            done_s = time.monotonic() - t_kill
            row = await _get(http, f"/api/jobs/{job}", h)
            page = await _get(http, f"/api/jobs/{job}/progress-history", h, after_seq=0, limit=1000)
            history = page["events"] if isinstance(page, dict) else page

            await wait_for(
                lambda: all(t.history(job) == history for t in trackers),
                30,
                "every client equal to the history",
            )
            recovered_s = time.monotonic() - t_kill

            slots = async_client(inst.rig.url, PoolLimits(size=1, timeout=5.0))
            try:

                async def slots_exact() -> bool:
                    now = time.time() - 1  # scores are Redis server times; loopback clock
                    return await slots.zcount(presence_key(uid), now, "+inf") == len(trackers)

                await wait_for(slots_exact, 10, "the user's connection slots == open sockets")
            finally:
                await slots.aclose()
        finally:
            await asyncio.gather(*(t.stop() for t in trackers), return_exceptions=True)

    seqs = [e["seq"] for e in history]
    print(
        f"\nfailover: master :{old.port} SIGKILLed at seq {seq_at_kill}; replica :{new_port}"
        f" promoted after {promoted_s:.1f}s; live events again after {live_s:.1f}s; job"
        f" {row['status']} {done_s:.1f}s after the kill; every client equal to the history"
        f" ({len(history)} events) after {recovered_s:.1f}s; resyncs"
        f" {[t.resyncs for t in trackers]}, reconnects {[t.connects - 1 for t in trackers]}"
    )
    assert row["status"] == "completed", row
    assert row["processed_videos"] == VIDEOS, row
    assert seqs == list(range(1, len(history) + 1)), f"seq not contiguous: {seqs}"
    assert history[-1]["status"] == "completed"
    assert seq_at_kill < len(history) - 3, "the master died after the job, not during it"
    for t in trackers:
        assert not t.conflicts, f"{t.name} saw one seq with two contents"
        assert t.resyncs >= 1, f"{t.name} got no resync after the web's listener moved"
