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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import socketio

from socket_layer.protocol import SOCKETIO_PATH
from tests.conftest import live_config
from tests.support.live import LiveServer
from tests.support.media import make_video
from tests.support.services import RedisServer
from tests.support.waiting import wait_for
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
class Tracker:
    """One browser tab: a python-socketio client that applies events by seq and asks
    for what it missed on every (re)connect, on ``resync`` and on a gap."""

    user: str
    token: str
    transport: str
    source_ip: str
    upstream: str
    jobs: set[str] = field(default_factory=set)
    events: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    connects: int = 0
    sio: Any = None
    session: aiohttp.ClientSession | None = None

    def contiguous(self, job: str) -> int:
        got = self.events.get(job, {})
        n = 0
        while n + 1 in got:
            n += 1
        return n

    def apply(self, event: dict[str, Any]) -> bool:
        # kept whatever the job: the first (`pending`) event of a job may arrive before
        # the test told this client about the job; the end checks who got what
        job = event["job_id"]
        gap = job in self.jobs and event["seq"] > self.contiguous(job) + 1
        self.events.setdefault(job, {})[event["seq"]] = event
        return gap

    async def resume(self) -> None:
        try:
            reply = await self.sio.call(
                "resume", {"jobs": {j: self.contiguous(j) for j in self.jobs}}, timeout=10
            )
        except Exception:  # disconnected meanwhile: the next connect resumes again
            return
        for ev in reply.get("events", []):
            self.apply(ev)

    async def start(self, url: str) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(self.source_ip, 0), force_close=True)
        )
        self.sio = socketio.AsyncClient(
            reconnection=True,
            reconnection_delay=0.2,
            reconnection_delay_max=1.0,
            http_session=self.session,
            logger=False,
            engineio_logger=False,
        )

        @self.sio.event
        async def connect() -> None:
            self.connects += 1
            asyncio.get_running_loop().create_task(self.resume())

        @self.sio.on("progress")
        async def progress(data: dict[str, Any]) -> None:
            if self.apply(data):
                asyncio.get_running_loop().create_task(self.resume())

        @self.sio.on("resync")
        async def resync(data: Any = None) -> None:
            asyncio.get_running_loop().create_task(self.resume())

        await self.sio.connect(
            url,
            auth={"token": self.token},
            transports=[self.transport],
            socketio_path=SOCKETIO_PATH,
            wait_timeout=10,
        )

    async def stop(self) -> None:
        if self.sio is not None:
            try:
                await asyncio.wait_for(self.sio.disconnect(), 3)
            except Exception:  # a polling client may hang on its pending GET; cut it
                pass
        if self.session is not None:
            await self.session.close()


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


async def _user(http: httpx.AsyncClient, name: str) -> tuple[str, str]:
    r = await http.post("/api/auth/register", json={"username": name, "password": "pw-" + name})
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    r = await http.post("/api/auth/login", json={"username": name, "password": "pw-" + name})
    assert r.status_code == 200, r.text
    return uid, r.json()["access_token"]


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

    trackers: list[Tracker] = []
    job_of: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=nginx.url, timeout=30) as http:
        users = [await _user(http, f"topo{uuid.uuid4().hex[:8]}") for _ in range(USERS)]
        try:
            # each user: websocket and polling clients on BOTH web processes
            for uid, token in users:
                for transport in ("websocket", "polling"):
                    for addr, ips in ((addr_a, ips_a), (addr_b, ips_b)):
                        trackers.append(Tracker(uid, token, transport, ips.pop(), addr))
            await asyncio.gather(*(t.start(nginx.url) for t in trackers))

            for uid, token in users:
                h = {"Authorization": f"Bearer {token}"}
                r = await http.post("/api/lists", json={"name": "topology"}, headers=h)
                assert r.status_code == 201, r.text
                videos = [
                    {"url": f"clip{i:03d}{samples[i % 2].suffix}", "title": f"Clip {i}"}
                    for i in range(VIDEOS_PER_JOB)
                ]
                r = await http.post(
                    f"/api/lists/{r.json()['id']}/videos/bulk", json={"videos": videos}, headers=h
                )
                assert r.status_code == 202, r.text
                job_of[uid] = r.json()["job_id"]
            for t in trackers:
                t.jobs.add(job_of[t.user])

            # every client saw its job move, then one web process crashes
            await wait_for(
                lambda: all(len(t.events.get(job_of[t.user], {})) >= 2 for t in trackers),
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
                return all(t.contiguous(job_of[t.user]) == len(history[t.user]) for t in trackers)

            await wait_for(complete, max(5.0, deadline - time.monotonic()), "clients complete")
            recovery = time.monotonic() - t_kill
            print(f"kill -> every client complete: {recovery:.1f}s")
        finally:
            await asyncio.gather(*(t.stop() for t in trackers), return_exceptions=True)

    for t in trackers:
        job = job_of[t.user]
        got = [t.events[job][s] for s in sorted(t.events[job])]
        assert got == history[t.user], f"{t.transport} client of {t.user} differs from history"
        assert set(t.events) == {job}, "a client received another user's event"
    moved = [t for t in trackers if t.upstream == addr_a]
    assert moved and all(t.connects >= 2 for t in moved), "victim's clients did not reconnect"
    assert all(t.connects == 1 for t in trackers if t.source_ip in by_upstream[addr_b]), (
        "clients of the surviving process were disturbed"
    )
    assert recovery < DEADLINE_S
