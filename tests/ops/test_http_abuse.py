"""Abuse of the REST API against a real ``reeltrack serve`` (hypercorn subprocess, real
PostgreSQL and Redis): each limit at its edge, the web process's memory and
``/api/health`` latency watched while it happens.

- real multi-megabyte MP4 uploads (several in one request) stream to disk, one byte
  over MAX_UPLOAD_BYTES is refused;
- huge bodies to /api/auth/login are refused with 413 after a few KB, memory flat;
- the login throttle holds under parallel guesses, password sprays over usernames and
  one username guessed from many addresses; it fails closed, and counts it, without
  Redis;
- password hashing is bounded: 64 concurrent logins are refused early (503 + Retry-After)
  beyond the pool, and other requests stay fast.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import av
import httpx

from quart_app.core.metrics import sample_value
from tests.support.attackers import login_attempt, push_body
from tests.support.builders import PASSWORD, bearer, make_list, make_user
from tests.support.health_watch import HealthWatch
from tests.support.live import LiveServer
from tests.support.media import noise_mp4
from tests.support.services import RedisServer

Start = Callable[..., Awaitable[LiveServer]]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# --- uploads ------------------------------------------------------------------------------


async def test_real_mp4_uploads_stream_to_disk_at_the_size_limit(
    db: str, start_live_server: Start, tmp_path: Path
) -> None:
    big = noise_mp4(tmp_path / "big clip.mp4", seconds=4)
    small = [noise_mp4(tmp_path / f"part {i}.mp4", seconds=1.5) for i in range(3)]
    limit = big.stat().st_size
    assert limit > 2 * 1024 * 1024 and all(p.stat().st_size > 256 * 1024 for p in small)
    server = await start_live_server(max_upload_bytes=limit)
    user = await make_user()
    vlist = await make_list(user)
    path = f"/api/lists/{vlist.id}/videos/upload"
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=60, headers=bearer(user.id)) as http,
        HealthWatch(server.port) as health,
    ):
        # several real files in one request
        files = [("file", (p.name, p.read_bytes(), "video/mp4")) for p in small]
        r = await http.post(path, files=files)
        assert r.status_code == 202, r.text
        assert r.json()["total_videos"] == 3
        # exactly MAX_UPLOAD_BYTES passes, one byte more is refused and nothing is kept
        r = await http.post(path, files=[("file", (big.name, big.read_bytes(), "video/mp4"))])
        assert r.status_code == 202, r.text
        over = big.read_bytes() + b"\0"
        r = await http.post(path, files=[("file", ("over.mp4", over, "video/mp4"))])
        assert r.status_code == 413 and r.json()["code"] == "file_too_large"
    health.assert_fast()

    from models.entities import Video

    videos = await Video.filter(list_id=vlist.id).order_by("created_at", "position")
    assert [v.title for v in videos] == ["part 0", "part 1", "part 2", "big clip"]
    for video, original in zip(videos, [*small, big], strict=True):
        stored = server.config.media_root / video.source.removeprefix("upload:")
        digest = hashlib.sha256(stored.read_bytes()).hexdigest()
        assert digest == hashlib.sha256(original.read_bytes()).hexdigest()
        with av.open(str(stored)) as container:  # still a real video
            assert container.streams.video[0].codec_context.name == "h264"


# --- big bodies -----------------------------------------------------------------------------


async def test_huge_login_bodies_are_refused_early_and_memory_stays_flat(
    live_server: LiveServer,
) -> None:
    assert live_server.proc is not None
    pid = live_server.proc.pid
    size = 300 * 1024 * 1024
    before = rss_bytes(pid)
    async with HealthWatch(live_server.port) as health:
        results = await asyncio.gather(
            *(
                push_body(live_server.port, "/api/auth/login", size, chunked=i % 2 == 0)
                for i in range(4)
            )
        )
        grown = rss_bytes(pid) - before
    for status, sent, seconds in results:
        assert status == 413
        assert sent < 16 * 1024 * 1024, sent  # answered long before the body was sent
        assert seconds < 5
    assert grown < 32 * 1024 * 1024, grown
    health.assert_fast()


# --- login throttle -------------------------------------------------------------------------


def _assert_throttled(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["code"] == "too_many_attempts"
    assert int(r.headers["Retry-After"]) == body["retry_after"] >= 1
    assert f"{body['retry_after']} s" in body["message"]


async def test_parallel_guesses_cannot_outrun_the_throttle(
    db: str, start_live_server: Start
) -> None:
    server = await start_live_server(login_max_attempts=5, login_window=60)
    user = await make_user()
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
        HealthWatch(server.port) as health,
    ):
        guesses = [f"wrong-{i}" for i in range(59)] + [PASSWORD]
        answers = await asyncio.gather(*(login_attempt(http, user.username, g) for g in guesses))
    checked = [r for r in answers if r.status_code in (200, 401)]
    assert len(checked) <= 5, [r.status_code for r in answers]
    for r in answers:
        if r.status_code not in (200, 401):
            _assert_throttled(r)
    health.assert_fast()


async def test_sprays_over_usernames_and_addresses_are_throttled(
    db: str, start_live_server: Start
) -> None:
    per_username, per_address = 12, 20
    # behind one trusted proxy, so the test can speak from many addresses
    server = await start_live_server(
        login_max_attempts=5,
        login_window=60,
        trusted_proxy_hops=1,
        login_max_attempts_per_username=per_username,
        login_max_attempts_per_address=per_address,
    )
    gate = asyncio.Semaphore(4)

    async def guess(username: str, address: str) -> httpx.Response:
        async with gate:
            return await login_attempt(http, username, "Winter2026!", address)

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        # one password over many usernames from one address
        names = [f"spray{i}_{uuid.uuid4().hex[:6]}" for i in range(per_address + 5)]
        answers = await asyncio.gather(*(guess(n, "198.51.100.7") for n in names))
        codes = [r.status_code for r in answers]
        assert codes.count(401) == per_address, codes
        for r in answers:
            if r.status_code != 401:
                _assert_throttled(r)
        # another address is not affected
        assert (
            await login_attempt(http, names[0], "Winter2026!", "198.51.100.8")
        ).status_code == 401

        # one username from many addresses
        user = await make_user()
        addresses = [f"203.0.113.{i}" for i in range(1, per_username + 6)]
        answers = await asyncio.gather(*(guess(user.username, a) for a in addresses))
        codes = [r.status_code for r in answers]
        assert codes.count(401) == per_username, codes
        _assert_throttled(await login_attempt(http, user.username, PASSWORD, "203.0.113.250"))


async def test_login_fails_closed_without_redis_and_counts_it(
    db: str, start_live_server: Start
) -> None:
    redis = RedisServer().start()
    try:
        server = await start_live_server(redis_url=redis.url)
        user = await make_user()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            assert (await login_attempt(http, user.username, PASSWORD)).status_code == 200
            redis.stop()
            r = await login_attempt(http, user.username, PASSWORD)
            assert r.status_code == 503 and r.json()["code"] == "unavailable"
            text = (await http.get("/metrics")).text
        labels = {"process": "web", "operation": "login_throttle"}
        failures = sample_value(text, "reeltrack_redis_connection_failures_total", labels)
        assert failures is not None and failures >= 1
    finally:
        redis.stop()


# --- password hashing -----------------------------------------------------------------------


async def test_concurrent_logins_are_bounded_and_other_requests_stay_fast(
    db: str, start_live_server: Start
) -> None:
    server = await start_live_server(trusted_proxy_hops=1)
    user = await make_user()
    vlist = await make_list(user)
    bulk = {"videos": [{"url": "https://example.com/a.mp4", "title": "a"}]}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=60) as http,
        HealthWatch(server.port) as health,
    ):
        for _ in range(2):  # warm: RQ's connection, the first queries
            warm = await http.post(
                f"/api/lists/{vlist.id}/videos/bulk",
                content=json.dumps(bulk),
                headers={**bearer(user.id), "Content-Type": "application/json"},
            )
            assert warm.status_code == 202, warm.text
        logins = [
            asyncio.create_task(
                login_attempt(
                    http, f"nobody{i}_{uuid.uuid4().hex[:6]}", "guess-guess", f"192.0.2.{i}"
                )
            )
            for i in range(64)
        ]
        # the burst is in once a login is refused for a full hashing pool and queue
        pending: set[asyncio.Task[httpx.Response]] = set(logins)
        refused = False
        while pending and not refused:
            done, pending = await asyncio.wait(
                pending, timeout=30, return_when=asyncio.FIRST_COMPLETED
            )
            assert done, "no login answered within 30 s"
            refused = any(t.result().status_code == 503 for t in done)
        assert refused, "every login was hashed: the pool never filled"
        began = time.perf_counter()
        r = await http.post(
            f"/api/lists/{vlist.id}/videos/bulk",
            content=json.dumps(bulk),
            headers={**bearer(user.id), "Content-Type": "application/json"},
        )
        import_s = time.perf_counter() - began
        answers = await asyncio.gather(*logins)
    assert r.status_code == 202, r.text
    # 15.7 s before the hashing pool (shared default executor); 0.65 s on a lightly
    # loaded box, 1.3-1.6 s with the 2 cores at load 8 from other work
    assert import_s < 2.0, import_s
    health.assert_fast()
    codes = [a.status_code for a in answers]
    assert set(codes) <= {401, 503}, codes
    busy = [a for a in answers if a.status_code == 503]
    assert busy, codes  # more than the pool and its queue: refused early
    for a in busy:
        assert a.json()["code"] == "busy" and int(a.headers["Retry-After"]) >= 1
