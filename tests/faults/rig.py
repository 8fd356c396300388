"""The fault-matrix rig: every process of a reeltrack installation, on loopback, owned by
the suite so it may crash any of them.

* a private ``redis-server`` and a private PostgreSQL cluster (initdb) on free ports,
  a freshly migrated database in it;
* one web process (``reeltrack serve``: hypercorn + Socket.IO + Quart) and three RQ
  workers (``reeltrack worker``: parent, work-horse, scheduler, cron child);
* a slow media origin (HTTP, in this process) the imported videos are fetched from, so
  a job lasts ``videos x delay`` seconds without any sleep in product code;
* two users, each with dashboard clients on both transports
  (:class:`tests.support.progress_client.ProgressTracker`) that stay connected, and
  reconnect by themselves, across every fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from redis import Redis
from rq import Worker as RQWorker

from models.db import close_db, open_db
from quart_app.core.config import Config
from tests.conftest import live_config, migrate_in_subprocess
from tests.support.live import LiveServer
from tests.support.media import make_video
from tests.support.progress_client import ProgressTracker
from tests.support.services import PostgresServer, RedisServer, create_database, start_app
from tests.support.workers import WorkerProcess

TRANSPORTS = ("websocket", "polling")
CLIENTS_PER_TRANSPORT = 2
WORKERS = 3
#: the settings every process of the rig gets (besides live_config's test defaults)
RIG_SETTINGS: dict[str, Any] = {
    "stale_job_seconds": 2,  # a killed worker's job is found stale within ~2-3 s
    "import_allow_private_hosts": True,  # the media origin is on loopback
    "rate_limit_per_minute": 0,
    "ws_ping_interval": 1.0,
    "ws_ping_timeout": 2.0,
    "ws_presence_ttl": 3.0,
    # every job is processed in slices of 5 videos: each fault hits jobs that hand over
    # between workers, and a worker killed mid-job is killed mid-slice
    "slice_videos": 5,
}


class MediaOrigin:
    """Serves the sample videos over HTTP, each response after ``delay`` seconds."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.delay = 0.2
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> MediaOrigin:
        async def handler(request: web.Request) -> web.StreamResponse:
            self.requests += 1
            await asyncio.sleep(self.delay)  # the slow origin: what makes a job last
            path = self.directory / request.match_info["name"]
            return web.Response(body=path.read_bytes(), content_type="application/octet-stream")

        app = web.Application()
        app.router.add_get("/{name}", handler)
        self._runner, port = await start_app(app, access_log=None)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Account:
    name: str
    id: str
    token: str
    jobs: set[str] = field(default_factory=set)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextlib.asynccontextmanager
async def database(url: str) -> AsyncIterator[None]:
    """Tortoise open on ``url`` in this process for the block (retried while the
    database comes back up)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            await open_db(url)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    try:
        yield
    finally:
        await close_db()


_SAMPLE = re.compile(r"^([a-z_]+)(?:\{[^}]*\})? ([0-9.eE+-]+)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {metric name: sum over its label sets}."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match:
            totals[match[1]] = totals.get(match[1], 0.0) + float(match[2])
    return totals


class Rig:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.redis = RedisServer()
        self.pg = PostgresServer()
        self.database_url = ""
        self.config: Config | None = None
        self.web: LiveServer | None = None
        self.workers: list[WorkerProcess] = []
        self.retired: list[WorkerProcess] = []
        self.origin = MediaOrigin(base / "origin")
        self.samples: list[str] = []
        self.accounts: list[Account] = []
        self.trackers: list[ProgressTracker] = []
        self.owner: dict[str, Account] = {}  # tracker name -> account
        self.http: httpx.AsyncClient | None = None

    # -- life cycle -------------------------------------------------------------------------
    async def start(self) -> Rig:
        await asyncio.gather(
            asyncio.to_thread(self.redis.start),
            asyncio.to_thread(self.pg.start),
            self.origin.start(),
        )
        self.samples = [
            make_video(self.origin.directory / "a.mp4").name,
            make_video(self.origin.directory / "b.webm", codec="libvpx", width=48).name,
        ]
        self.database_url = await create_database(self.pg.admin_url, prefix="reeltrack_faults")
        await asyncio.to_thread(migrate_in_subprocess, self.database_url)
        self.config = live_config(self.base, self.database_url, self.redis.url, **RIG_SETTINGS)
        self.web = LiveServer(self.config, name="faults-web")
        await self.web.astart(60)
        for _ in range(WORKERS):
            self.start_worker()
        self.http = httpx.AsyncClient(base_url=self.web.url, timeout=30)
        for name in ("alice", "bob"):
            self.accounts.append(await self._account(f"{name}{uuid.uuid4().hex[:6]}"))
        for account in self.accounts:
            for transport in TRANSPORTS:
                for i in range(CLIENTS_PER_TRANSPORT):
                    tracker = ProgressTracker(
                        f"{account.name[:-6]}-{transport[:2]}{i}",
                        self.web.url,
                        token=account.token,
                        transport=transport,
                    )
                    self.trackers.append(tracker)
                    self.owner[tracker.name] = account
        await asyncio.gather(*(t.start() for t in self.trackers))
        return self

    async def close(self) -> None:
        await asyncio.gather(*(t.stop() for t in self.trackers), return_exceptions=True)
        if self.http is not None:
            await self.http.aclose()
        for worker in self.workers + self.retired:
            await asyncio.to_thread(worker.kill_all)
            worker.close()
        if self.web is not None:
            await asyncio.to_thread(self.web.close)
        await self.origin.stop()
        await asyncio.to_thread(self.redis.stop)
        await asyncio.to_thread(self.pg.destroy)

    def start_worker(self) -> WorkerProcess:
        assert self.config is not None
        # numbered over the rig's life: a replacement must not take a live worker's
        # name (the matrix tells workers' logs apart by name)
        number = len(self.workers) + len(self.retired)
        worker = WorkerProcess(self.config, name=f"faults-worker{number}")
        self.workers.append(worker)
        return worker

    # -- REST ---------------------------------------------------------------------------------
    async def _account(self, name: str) -> Account:
        assert self.http is not None
        body = {"username": name, "password": "pw-" + name}
        r = await self.http.post("/api/auth/register", json=body)
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        r = await self.http.post("/api/auth/login", json=body)
        assert r.status_code == 200, r.text
        return Account(name=name, id=uid, token=r.json()["access_token"])

    async def import_job(self, account: Account, videos: int, label: str) -> str:
        """A list of ``videos`` URLs on the slow origin, imported through the REST API;
        returns the job id."""
        assert self.http is not None
        r = await self.http.post("/api/lists", json={"name": label}, headers=account.headers)
        assert r.status_code == 201, r.text
        rows = [
            {"url": f"{self.origin.url}/{self.samples[i % 2]}", "title": f"{label} {i}"}
            for i in range(videos)
        ]
        r = await self.http.post(
            f"/api/lists/{r.json()['id']}/videos/bulk",
            json={"videos": rows},
            headers=account.headers,
        )
        assert r.status_code == 202, r.text
        job_id = str(r.json()["job_id"])
        account.jobs.add(job_id)
        return job_id

    async def metrics(self) -> dict[str, float]:
        """The installation's aggregated /metrics (web + workers), summed per name."""
        assert self.http is not None
        r = await self.http.get("/metrics")
        assert r.status_code == 200, r.text
        return parse_metrics(r.text)

    def workers_on_jobs(self) -> list[WorkerProcess]:
        """The workers whose work-horse is running a processing job now (RQ's view, not
        a stale-job check)."""
        redis = Redis.from_url(self.redis.url)
        try:
            busy = {
                w.pid
                for w in RQWorker.all(connection=redis)
                if (w.get_current_job_id() or "").startswith("process-")
            }
        finally:
            redis.close()
        return [w for w in self.workers if w.pid in busy and w.horses()]

    def trackers_of(self, account: Account) -> list[ProgressTracker]:
        return [t for t in self.trackers if self.owner[t.name] is account]

    def outputs(self) -> str:
        """The last lines each process printed (for failure messages)."""
        parts = []
        if self.web is not None:
            parts.append(f"--- web ---\n{self.web.output()[-3000:]}")
        for worker in self.retired + self.workers:
            parts.append(f"--- {worker.name} (pid {worker.pid}) ---\n{worker.output()[-3000:]}")
        return "\n".join(parts)
