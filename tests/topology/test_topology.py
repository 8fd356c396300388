"""The scale-out topology on loopback: nginx (deploy/nginx.conf) in front of two web
processes, two RQ workers, a private Redis and the session's PostgreSQL.

Clients of three users, over websocket and long-polling, on both web processes, watch
their jobs; one web process is SIGKILLed mid-run; its clients reconnect through nginx
to the other and, through ``resume``, end with exactly their user's complete history.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import live_config
from tests.support.live import LiveServer, import_videos, sign_up
from tests.support.media import make_video
from tests.support.progress_client import ProgressTracker
from tests.support.services import RedisServer
from tests.support.waiting import wait_for, wait_until
from tests.support.workers import WorkerProcess
from tests.topology.nginx import Nginx, nginx_binary

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(nginx_binary() is None, reason="nginx not installed (make system-deps)"),
]

VIDEOS_PER_JOB = 30
USERS = 3
DEADLINE_S = 60.0


@dataclass
class Client:
    """One browser tab: a dashboard-like tracker pinned to a web process by its address."""

    user: str
    upstream: str
    source_ip: str
    tracker: ProgressTracker


@pytest.fixture
async def topology(
    pg_database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Nginx, list[LiveServer], Path]]:
    redis = RedisServer().start()  # private: the workers must see only these jobs
    config = live_config(
        tmp_path,
        pg_database_url,
        redis.url,
        ws_ping_interval=2.0,
        ws_ping_timeout=3.0,
        rate_limit_per_minute=0,
    )
    for d in (config.var_dir, config.media_root, config.import_root):
        d.mkdir(parents=True, exist_ok=True)
    webs = [LiveServer(config, name=f"web{i}") for i in range(2)]
    workers: list[WorkerProcess] = []
    nginx: Nginx | None = None
    try:
        await asyncio.gather(*(w.astart(60) for w in webs))
        workers = [WorkerProcess(config, name=f"topology-worker{i}") for i in range(2)]
        nginx = Nginx([w.port for w in webs]).start()
        yield nginx, webs, config.import_root
    finally:
        if nginx is not None:
            nginx.stop()
        for wk in workers:
            wk.close()
        for web in webs:
            await asyncio.to_thread(web.close)
        redis.stop()


async def _upstream_of(base: str, ip: str) -> str:
    async with httpx.AsyncClient(
        base_url=base, transport=httpx.AsyncHTTPTransport(local_address=ip)
    ) as c:
        r = await c.get("/api/health")
        assert r.status_code == 200, r.text
        return r.headers["x-reeltrack-upstream"]


async def test_two_web_processes_behind_nginx_survive_one_killed(
    topology: tuple[Nginx, list[LiveServer], Path],
) -> None:
    nginx, webs, import_root = topology
    samples = [
        make_video(import_root / "a.mp4"),
        make_video(import_root / "b.webm", codec="libvpx"),
    ]
    for i in range(VIDEOS_PER_JOB):
        shutil.copyfile(samples[i % 2], import_root / f"clip{i:03d}{samples[i % 2].suffix}")

    # source addresses that nginx's sticky hash sends to each web process
    by_upstream: dict[str, list[str]] = {}
    for last in range(30, 120):
        ip = f"127.0.0.{last}"
        by_upstream.setdefault(await _upstream_of(nginx.url, ip), []).append(ip)
        if len(by_upstream) == 2 and all(len(v) >= 2 * USERS for v in by_upstream.values()):
            break
    assert len(by_upstream) == 2, f"nginx sent everything to one process: {by_upstream}"
    (addr_a, ips_a), (addr_b, ips_b) = sorted(by_upstream.items())
    victim = next(w for w in webs if addr_a.endswith(f":{w.port}"))

    clients: list[Client] = []
    job_of: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=nginx.url, timeout=30) as http:
        names = [f"topo{uuid.uuid4().hex[:8]}" for _ in range(USERS)]
        users = [await sign_up(http, name, "pw-" + name) for name in names]
        try:
            # each user: websocket and polling clients on BOTH web processes
            for uid, token in users:
                for transport in ("websocket", "polling"):
                    for addr, ips in ((addr_a, ips_a), (addr_b, ips_b)):
                        ip = ips.pop()
                        tracker = ProgressTracker(
                            f"{uid[:8]}-{transport}-{ip}",
                            nginx.url,
                            token=token,
                            transport=transport,
                            source_ip=ip,
                        )
                        clients.append(Client(uid, addr, ip, tracker))
            await asyncio.gather(*(c.tracker.start() for c in clients))

            for uid, token in users:
                h = {"Authorization": f"Bearer {token}"}
                videos = [
                    {"url": f"clip{i:03d}{samples[i % 2].suffix}", "title": f"Clip {i}"}
                    for i in range(VIDEOS_PER_JOB)
                ]
                job_of[uid] = await import_videos(http, h, "topology", videos)

            # every client saw its job move, then one web process crashes
            await wait_for(
                lambda: all(c.tracker.last_seq(job_of[c.user]) >= 2 for c in clients),
                30,
                "first progress events on every client",
            )
            victim.kill()
            t_kill = time.monotonic()

            async def finished() -> bool:
                for uid, token in users:
                    r = await http.get(
                        f"/api/jobs/{job_of[uid]}", headers={"Authorization": f"Bearer {token}"}
                    )
                    if r.status_code != 200 or r.json()["status"] not in {"completed", "failed"}:
                        return False
                return True

            deadline = time.monotonic() + DEADLINE_S  # one budget for both waits
            await wait_for(finished, DEADLINE_S, "every job to finish", interval=0.2)
            history: dict[str, list[dict[str, Any]]] = {}
            for uid, token in users:
                r = await http.get(
                    f"/api/jobs/{job_of[uid]}/progress-history",
                    params={"after_seq": 0, "limit": 1000},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 200, r.text
                body = r.json()
                history[uid] = body["events"] if isinstance(body, dict) else body
                assert [e["seq"] for e in history[uid]] == list(range(1, VIDEOS_PER_JOB + 3)), (
                    "history is not gapless"
                )

            def complete() -> bool:
                return all(
                    c.tracker.last_seq(job_of[c.user]) == len(history[c.user]) for c in clients
                )

            await wait_for(complete, max(5.0, deadline - time.monotonic()), "clients complete")
            recovery = time.monotonic() - t_kill
            print(f"kill -> every client complete: {recovery:.1f}s")
            moved = [c for c in clients if c.upstream == addr_a]
            # a client can be complete before it notices the crash (the job may end first)
            reconnected = await wait_until(lambda: all(c.tracker.connects >= 2 for c in moved), 10)
            assert reconnected, "the victim's clients did not all reconnect: " + ", ".join(
                f"{c.tracker.name} connects={c.tracker.connects}" for c in moved
            )
        finally:
            await asyncio.gather(*(c.tracker.stop() for c in clients), return_exceptions=True)

    for c in clients:
        job = job_of[c.user]
        assert c.tracker.history(job) == history[c.user], f"{c.tracker.name} differs from history"
        assert not c.tracker.conflicts, f"{c.tracker.name} saw one seq with two contents"
        assert c.tracker.seen_jobs == {job}, "a client received another user's event"
    assert moved, "no client was on the killed process"
    assert all(c.tracker.connects == 1 for c in clients if c.upstream == addr_b), (
        "clients of the surviving process were disturbed"
    )
    assert recovery < DEADLINE_S
