"""The real stack for browser tests: web process + RQ worker + private Redis, a media
origin the test controls video by video, and headless Debian Chromium via Playwright.

Nothing here sleeps to synchronise: the media origin holds each video's download until
the test releases it, so "mid-job" is a state the test creates, not a race it hopes to
win; every wait is a poll on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from socket_layer.protocol import presence_key
from tests.conftest import live_config
from tests.support.live import ROOT, LiveServer
from tests.support.media import make_video
from tests.support.services import RedisServer, start_app
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess
from tests.topology.nginx import Nginx

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WEB_DIST = ROOT / "web" / "dist"
#: where the tests' screenshots go: the README's pictures in docs/screenshots only when
#: asked for (``make screenshots``), so a plain test run leaves the tree unchanged
#: (Playwright creates the folder when it writes the first one)
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "reeltrack-screenshots"
)

#: colours of web/src/components/ProgressBar.tsx, as the browser reports them
GREEN = "rgb(22, 163, 74)"
BLUE = "rgb(37, 99, 235)"
AMBER = "rgb(217, 119, 6)"


class MediaOrigin:
    """An HTTP origin for the worker's downloads (``/v/<name>``). ``hold(name)`` makes the
    download of ``name`` wait until ``release(name)``, so the test decides when each
    video finishes."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.requested: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    async def start(self) -> MediaOrigin:
        app = web.Application()
        app.router.add_get("/v/{name}", self._handle)
        self._runner, self.port = await start_app(app)
        return self

    async def stop(self) -> None:
        self.release_all()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.requested.append(name)
        gate = self.gates.get(name)
        if gate is not None:
            await gate.wait()
        body = self.files.get(name)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="video/mp4")

    def hold(self, *names: str) -> None:
        for name in names:
            self.gates.setdefault(name, asyncio.Event())

    def release(self, *names: str) -> None:
        for name in names:
            self.gates.setdefault(name, asyncio.Event()).set()

    def release_all(self) -> None:
        for gate in self.gates.values():
            gate.set()

    async def wait_requested(self, name: str, within_s: float = 20.0) -> None:
        """Until the worker has asked for ``name`` (so every earlier video is done)."""
        await wait_for(lambda: name in self.requested, within_s, what=f"the worker to fetch {name}")


@dataclass
class Account:
    username: str
    password: str
    user_id: str
    token: str


@dataclass
class Stack:
    """The running processes and how to talk to them."""

    web: LiveServer
    worker: WorkerProcess
    redis_url: str
    media: MediaOrigin
    sample: bytes
    #: every web process (``web`` is the first)
    webs: list[LiveServer] = field(default_factory=list)
    #: what stands in front of the web processes (nginx), when something does
    front_url: str | None = None
    #: the stack's PostgreSQL database (tests that must age a job write to it)
    database_url: str = ""
    client: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.AsyncClient(base_url=self.url, timeout=10)

    @property
    def url(self) -> str:
        """Where the browser and the REST client go: nginx when scaled out."""
        return self.front_url or self.web.url

    async def account(self) -> Account:
        """A fresh user (registered over REST) with a token."""
        username = f"e2e-{uuid.uuid4().hex[:10]}"
        password = "correct horse battery staple"
        r = await self.client.post(
            "/api/auth/register", json={"username": username, "password": password}
        )
        assert r.status_code == 201, r.text
        user_id = r.json()["id"]
        r = await self.client.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
        assert r.status_code == 200, r.text
        return Account(username, password, user_id, r.json()["access_token"])

    async def create_list(self, account: Account, name: str) -> str:
        r = await self.client.post(
            "/api/lists",
            json={"name": name},
            headers={"Authorization": f"Bearer {account.token}"},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def jobs(self, account: Account, **params: str) -> list[dict[str, Any]]:
        """The first page of the user's jobs (newest first), filtered by ``params``."""
        r = await self.client.get(
            "/api/jobs", params=params, headers={"Authorization": f"Bearer {account.token}"}
        )
        assert r.status_code == 200, r.text
        jobs: list[dict[str, Any]] = r.json()["items"]
        return jobs

    async def job(self, account: Account, job_id: str) -> dict[str, Any]:
        r = await self.client.get(
            f"/api/jobs/{job_id}", headers={"Authorization": f"Bearer {account.token}"}
        )
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        return job

    async def videos(self, account: Account, list_id: str) -> list[dict[str, Any]]:
        """Every video of a list (all pages)."""
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
            r = await self.client.get(
                f"/api/lists/{list_id}/videos",
                params=params,
                headers={"Authorization": f"Bearer {account.token}"},
            )
            assert r.status_code == 200, r.text
            out.extend(r.json()["items"])
            cursor = r.json()["next_cursor"]
            if not cursor:
                return out

    async def backdate_job(self, job_id: str, by_s: float) -> None:
        """Move a job's timestamps and its events' ``by_s`` seconds into the past, as if
        it had run that long ago (no clock is faked: the database says so)."""
        import asyncpg

        conn = await asyncpg.connect(self.database_url)
        try:
            async with conn.transaction():
                await conn.execute(
                    "UPDATE processing_jobs SET created_at = created_at - $2::interval,"
                    " started_at = started_at - $2::interval,"
                    " finished_at = finished_at - $2::interval WHERE id = $1",
                    uuid.UUID(job_id),
                    timedelta(seconds=by_s),
                )
                rows = await conn.fetch(
                    "SELECT id, created_at, progress_data FROM job_progress_events"
                    " WHERE job_id = $1",
                    uuid.UUID(job_id),
                )
                for row in rows:
                    when = row["created_at"] - timedelta(seconds=by_s)
                    data = row["progress_data"]
                    event = json.loads(data) if isinstance(data, str) else dict(data)
                    event["created_at"] = when.astimezone(UTC).isoformat().replace("+00:00", "Z")
                    await conn.execute(
                        "UPDATE job_progress_events SET created_at = $2, progress_data = $3"
                        " WHERE id = $1",
                        row["id"],
                        when,
                        json.dumps(event) if isinstance(data, str) else event,
                    )
        finally:
            await conn.close()

    def add_videos(self, prefix: str, count: int, broken: set[int] | None = None) -> list[str]:
        """``count`` videos ``<prefix>-01.mp4`` ... on the media origin (``broken``
        numbers get bytes that are no video); returns their names."""
        names = []
        for i in range(1, count + 1):
            name = f"{prefix}-{i:02d}.mp4"
            self.media.files[name] = (
                b"this is not a video, just bytes\n" * 64 if broken and i in broken else self.sample
            )
            names.append(name)
        return names

    def csv(self, names: list[str]) -> str:
        rows = ["url,title"] + [f"{self.media.url(n)},{n.removesuffix('.mp4')}" for n in names]
        return "\n".join(rows) + "\n"

    async def live_connections(self, user_id: str) -> int:
        """Socket.IO connections of ``user_id`` counted server-side (the cross-process
        presence registry in Redis, expired entries excluded)."""
        from redis import asyncio as aioredis

        redis = aioredis.Redis.from_url(self.redis_url)
        try:
            now_s, now_us = await redis.time()
            return int(await redis.zcount(presence_key(user_id), now_s + now_us / 1e6, "+inf"))
        finally:
            await redis.aclose()

    async def restart_web(self, down: Callable[[], Awaitable[None]] | None = None) -> None:
        """SIGTERM the web process, run ``down`` while it is gone, start it again on the
        same port."""
        await self.web.astop()
        if down is not None:
            await down()
        await self.web.astart()


def check_prerequisites() -> None:
    """Fail (not skip) with the fix when the browser or the built app is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(f"{CHROMIUM} is missing: run `make system-deps` (Debian's chromium)")
    if not (WEB_DIST / "index.html").is_file():
        raise RuntimeError("web/dist is not built: run `make web/dist/index.html`")


def fresh_profile_dir() -> str:
    return tempfile.mkdtemp(prefix="rt-chromium-")


def remove_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


@contextlib.asynccontextmanager
async def running_stack(
    pg_database_url: str, base: Path, *, web_processes: int = 1, **overrides: Any
) -> AsyncIterator[Stack]:
    """Web process(es) + one worker on a PRIVATE Redis (so the worker takes no other
    test's jobs) and the session's PostgreSQL database; the worker may fetch from
    loopback (the media origin); ``overrides`` are settings of its Config.  With more
    than one web process, nginx with deploy/nginx.conf stands in front and is the
    stack's ``url``.  Everything is stopped at the end of the block."""
    check_prerequisites()
    redis = RedisServer().start()
    media = await MediaOrigin().start()
    config = live_config(
        base, pg_database_url, redis.url, **{"import_allow_private_hosts": True, **overrides}
    )
    webs = [LiveServer(config, name=f"e2e-web{i}") for i in range(web_processes)]
    worker: WorkerProcess | None = None
    nginx: Nginx | None = None
    stack: Stack | None = None
    try:
        await asyncio.gather(*(w.astart() for w in webs))
        worker = WorkerProcess(webs[0].config, name="e2e-worker")
        if web_processes > 1:
            nginx = Nginx([w.port for w in webs]).start()
        sample = make_video(base / "sample.mp4", width=64, height=48, fps=10, seconds=1.0)
        stack = Stack(
            web=webs[0],
            worker=worker,
            redis_url=redis.url,
            media=media,
            sample=sample.read_bytes(),
            webs=webs,
            front_url=nginx.url if nginx is not None else None,
            database_url=pg_database_url,
        )
        yield stack
    finally:
        if stack is not None:
            await stack.client.aclose()
        await media.stop()
        if nginx is not None:
            nginx.stop()
        if worker is not None:
            worker.close()
        for web_process in webs:
            await asyncio.to_thread(web_process.close)
        redis.stop()
