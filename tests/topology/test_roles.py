"""Dedicated roles: ``reeltrack serve --role sockets`` next to ``--role api``.

The socket server answers Socket.IO (and /api/health, /metrics) and 404 JSON for
REST; the API server answers REST and the web app and 404 JSON for the Socket.IO path
(polling request and websocket handshake alike).  A job submitted through the API
server reaches a dashboard client on the socket server, and nginx (deploy/nginx.conf)
routes each path to its role.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from quart_app.sample_video import make_video
from tests.conftest import live_config
from tests.support.live import LiveServer, import_videos, sign_up
from tests.support.progress_client import ProgressTracker
from tests.support.services import RedisServer
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess
from tests.topology.nginx import Nginx, nginx_binary

pytestmark = pytest.mark.slow

VIDEOS = 6
POLLING = "/api/ws/progress/?EIO=4&transport=polling"


@pytest.fixture
async def roles(fresh_pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[LiveServer, LiveServer]]:
    redis = RedisServer().start()  # private: the worker must see only this test's job
    config = live_config(tmp_path, fresh_pg_url, redis.url, rate_limit_per_minute=0)
    for d in (config.var_dir, config.media_root, config.import_root):
        d.mkdir(parents=True, exist_ok=True)
    sockets = LiveServer(config.with_overrides(serve_role="sockets"), name="role-sockets")
    api = LiveServer(config.with_overrides(serve_role="api"), name="role-api")
    worker: WorkerProcess | None = None
    try:
        await asyncio.gather(sockets.astart(60), api.astart(60))
        worker = WorkerProcess(config, name="role-worker")
        yield sockets, api
    finally:
        if worker is not None:
            worker.close()
        for server in (sockets, api):
            await asyncio.to_thread(server.close)
        redis.stop()


async def _account(http: httpx.AsyncClient) -> dict[str, str]:
    name = f"role{uuid.uuid4().hex[:8]}"
    _uid, token = await sign_up(http, name, "pw-" + name)
    return {"Authorization": f"Bearer {token}"}


async def _websocket_status(base: str) -> int:
    url = base.replace("http", "ws", 1) + "/api/ws/progress/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def test_socket_and_api_servers_serve_only_their_paths_and_share_events(
    roles: tuple[LiveServer, LiveServer],
) -> None:
    sockets, api = roles
    async with (
        httpx.AsyncClient(base_url=api.url, timeout=30) as rest,
        httpx.AsyncClient(base_url=sockets.url, timeout=30) as sio_http,
    ):
        h = await _account(rest)

        # each role: what it serves, and a JSON 404 for the rest
        for client in (rest, sio_http):
            assert (await client.get("/api/health")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200
        assert (await rest.get("/api/jobs", headers=h)).status_code == 200
        for path in ("/api/jobs", "/api/auth/options", "/"):
            r = await sio_http.get(path, headers=h)
            assert r.status_code == 404, (path, r.text)
            assert r.json()["code"] == "not_found"
        r = await rest.get(POLLING)
        assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
        assert (await sio_http.get(POLLING)).status_code == 200  # an engine.io open packet
        assert await _websocket_status(api.url) == 404
        assert await _websocket_status(sockets.url) == 101

        # a job submitted through the API server, watched on the socket server
        token = h["Authorization"].removeprefix("Bearer ")
        tracker = ProgressTracker("role-client", sockets.url, token=token, transport="websocket")
        await tracker.start()
        try:
            import_root = api.config.import_root
            sample = make_video(import_root / "role-sample.mp4")
            for i in range(VIDEOS):
                shutil.copyfile(sample, import_root / f"role{i}.mp4")
            rows = [{"url": f"role{i}.mp4", "title": f"r{i}"} for i in range(VIDEOS)]
            job = await import_videos(rest, h, "roles", rows)

            async def done() -> bool:
                r = await rest.get(f"/api/jobs/{job}", headers=h)
                return r.json()["status"] in {"completed", "failed"}

            await wait_for(done, 60, "the job to end", interval=0.2)
            r = await rest.get(
                f"/api/jobs/{job}/progress-history", params={"after_seq": 0}, headers=h
            )
            body = r.json()
            history = body["events"] if isinstance(body, dict) else body
            assert history[-1]["status"] == "completed"
            await wait_for(lambda: tracker.history(job) == history, 15, "live events")
            assert tracker.live_events >= 1, "nothing reached the socket server live"
        finally:
            await tracker.stop()

    if nginx_binary() is None:
        return
    # nginx: Socket.IO to the socket server, everything else to the API server
    nginx = Nginx([sockets.port], api_upstreams=[api.port]).start()
    try:
        async with httpx.AsyncClient(base_url=nginx.url, timeout=30) as front:
            r = await front.get("/api/jobs", headers=h)
            assert r.status_code == 200, r.text
            assert r.headers["x-reeltrack-upstream"].endswith(f":{api.port}")
            assert (await front.get(POLLING)).status_code == 200
        assert await _websocket_status(nginx.url) == 101
    finally:
        nginx.stop()
