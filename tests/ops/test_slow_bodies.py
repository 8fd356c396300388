"""Slow request bodies against a real ``reeltrack serve``: a stalled or trickling upload
is answered 408 and closed after BODY_READ_TIMEOUT, one address has at most
UPLOADS_PER_ADDRESS uploads in flight (the next is 429 + Retry-After, another address
is not affected), and another user's /api/health stays fast meanwhile."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import redis.asyncio as aioredis

from models.entities import Video
from quart_app.upload_slots import _key as upload_slots_key
from socket_layer.protocol import SOCKETIO_PATH
from tests.support.builders import bearer, make_list, make_user
from tests.support.health_watch import HealthWatch
from tests.support.live import LiveServer
from tests.support.media import make_video
from tests.support.waiting import wait_for

Start = Callable[..., Awaitable[LiveServer]]
TIMEOUT_S = 1.0
MIN_RATE = 1000
PER_ADDRESS = 4
BOUNDARY = "slowbodyboundary"


class SlowUpload:
    """An upload sent by hand: headers and the start of a multipart body declared much
    longer; the rest is sent (or not) by the test."""

    def __init__(self, port: int, path: str, user_id: uuid.UUID, forwarded_for: str) -> None:
        self.port, self.path, self.user_id, self.forwarded_for = port, path, user_id, forwarded_for
        self.began = 0.0

    async def open(self) -> SlowUpload:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.began = time.perf_counter()
        start = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="slow.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
        ).encode()
        auth = bearer(self.user_id)["Authorization"]
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n"
            f"X-Forwarded-For: {self.forwarded_for}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {10 * 1024 * 1024}\r\n\r\n"
        )
        self.writer.write(head.encode() + start + b"\0" * 100)
        await self.writer.drain()
        return self

    async def trickle(self, every_s: float) -> None:
        """One byte per ``every_s`` until the server stops taking them."""
        try:
            while True:
                await asyncio.sleep(every_s)
                self.writer.write(b"\0")
                await self.writer.drain()
        except (ConnectionError, RuntimeError):
            return

    async def answer(self, within_s: float) -> tuple[int, dict[str, str], dict, bool, float]:
        """(status, headers, JSON body, closed after it, seconds since open)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), within_s)
        took = time.perf_counter() - self.began
        lines = head.decode("latin1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)}
        body = await asyncio.wait_for(self.reader.readexactly(int(headers["content-length"])), 5)
        rest = await asyncio.wait_for(self.reader.read(), 5)  # EOF: the server closed
        self.writer.close()
        return int(lines[0].split()[1]), headers, json.loads(body), rest == b"", took


def assert_stalled_408(answer: tuple[int, dict[str, str], dict, bool, float]) -> None:
    """A body that stopped arriving: 408 JSON naming the gap, closed after one timeout."""
    status, headers, body, closed, took = answer
    assert status == 408 and body["code"] == "request_timeout", body
    assert body["message"] == f"no part of the request body arrived for {TIMEOUT_S:g} s"
    assert headers["content-type"] == "application/json"
    assert closed
    assert TIMEOUT_S <= took < TIMEOUT_S + 2, took


async def _server(start: Start, min_rate: int = MIN_RATE) -> LiveServer:
    return await start(
        body_read_timeout=TIMEOUT_S,
        body_min_rate=min_rate,
        uploads_per_address=PER_ADDRESS,
        trusted_proxy_hops=1,
    )


async def test_a_stalled_upload_is_408_and_closed_after_the_timeout(
    db: str, start_live_server: Start
) -> None:
    server = await _server(start_live_server, min_rate=0)  # the gap alone
    user = await make_user()
    vlist = await make_list(user)
    path = f"/api/lists/{vlist.id}/videos/upload"
    upload = await SlowUpload(server.port, path, user.id, "203.0.113.1").open()
    assert_stalled_408(await upload.answer(within_s=10))
    # nothing of it is kept
    assert not list((server.config.media_root / "uploads").rglob("*.mp4"))


async def test_trickling_uploads_are_capped_per_address_and_closed_while_health_is_fast(
    db: str, start_live_server: Start, tmp_path: Path, redis_url: str
) -> None:
    """20 uploads of one address trickling 1 byte every 0.2 s (each gap shorter than the
    timeout, the rate far under BODY_MIN_RATE): 4 are let in and answered 408 after
    about one timeout window, the other 16 get 429 at once; another address uploads a
    real video meanwhile, and /api/health stays fast."""
    server = await _server(start_live_server)
    attacker, other = await make_user(), await make_user()
    a_list, o_list = await make_list(attacker), await make_list(other)
    path = f"/api/lists/{a_list.id}/videos/upload"
    clip = make_video(tmp_path / "clip.mp4")

    async with HealthWatch(server.port) as health:
        uploads = [
            await SlowUpload(server.port, path, attacker.id, "203.0.113.7").open()
            for _ in range(20)
        ]
        tricklers = [asyncio.create_task(u.trickle(0.2)) for u in uploads]
        answers = await asyncio.gather(*(u.answer(within_s=15) for u in uploads))
        # another address is not held back by the attacker's slots
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            r = await http.post(
                f"/api/lists/{o_list.id}/videos/upload",
                files=[("file", ("clip.mp4", clip.read_bytes(), "video/mp4"))],
                headers={**bearer(other.id), "X-Forwarded-For": "198.51.100.9"},
            )
        assert r.status_code == 202, r.text
        for task in tricklers:
            task.cancel()

    health.assert_fast()
    refused = [a for a in answers if a[0] == 429]
    timed_out = [a for a in answers if a[0] == 408]
    assert (len(timed_out), len(refused)) == (PER_ADDRESS, 20 - PER_ADDRESS), [
        a[0] for a in answers
    ]
    for _status, headers, body, _closed, took in refused:
        assert body["code"] == "too_many_uploads"
        assert body["message"].startswith(f"at most {PER_ADDRESS} uploads at once")
        assert int(headers["retry-after"]) == body["retry_after"] >= 1
        assert took < 1.0, took
    for _status, _headers, body, closed, took in timed_out:
        assert f"slower than the minimum of {MIN_RATE} bytes/s" in body["message"], body
        assert closed
        assert TIMEOUT_S <= took < 2 * TIMEOUT_S + 2, took
    assert await Video.filter(list_id=a_list.id).count() == 0

    # the slots come back with the answers (given back just after): the same address
    # may upload again
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await wait_for(
            lambda: _equals(lambda: redis.zcard(upload_slots_key("203.0.113.7")), 0),
            2,
            "the slots given back",
        )
    finally:
        await redis.aclose()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        r = await http.post(
            path,
            files=[("file", ("clip.mp4", clip.read_bytes(), "video/mp4"))],
            headers={**bearer(attacker.id), "X-Forwarded-For": "203.0.113.7"},
        )
    assert r.status_code == 202, r.text


async def test_a_slow_but_steady_upload_passes(
    db: str, start_live_server: Start, tmp_path: Path
) -> None:
    """A real MP4 sent in 8 pieces, one every 0.5 s (over BODY_MIN_RATE, gaps under
    BODY_READ_TIMEOUT), takes several timeout windows and is accepted whole."""
    server = await _server(start_live_server)
    user = await make_user()
    vlist = await make_list(user)
    clip = make_video(tmp_path / "steady.mp4", seconds=3.0, width=160, height=120).read_bytes()
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="steady.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
        ).encode()
        + clip
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )

    async def pieces() -> AsyncIterator[bytes]:
        size = len(body) // 8 + 1
        assert size / 0.5 > 2 * MIN_RATE
        for start in range(0, len(body), size):
            yield body[start : start + size]
            await asyncio.sleep(0.5)

    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        r = await http.post(
            f"/api/lists/{vlist.id}/videos/upload",
            content=pieces(),
            headers={
                **bearer(user.id),
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                "Content-Length": str(len(body)),
            },
        )
    assert r.status_code == 202, r.text
    assert time.perf_counter() - began > 3 * TIMEOUT_S
    video = await Video.get(list_id=vlist.id)
    stored = server.config.media_root / video.source.removeprefix("upload:")
    assert stored.read_bytes() == clip


async def _socketio_post(server: LiveServer, head_extra: str, body: bytes) -> SlowUpload:
    """A long-polling session opened over HTTP, then a POST to it sent by hand (with the
    session's cookie): ``head_extra`` headers and the start of its body."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}{SOCKETIO_PATH}/?EIO=4&transport=polling") as r:
            assert r.status == 200
            sid = json.loads((await r.text())[1:])["sid"]
        cookie = "; ".join(f"{c.key}={c.value}" for c in http.cookie_jar)
    post = SlowUpload(server.port, "", uuid.uuid4(), "")
    post.reader, post.writer = await asyncio.open_connection("127.0.0.1", server.port)
    post.began = time.perf_counter()
    post.writer.write(
        (
            f"POST {SOCKETIO_PATH}/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nCookie: {cookie}\r\nContent-Type: text/plain\r\n"
            f"{head_extra}\r\n"
        ).encode()
        + body
    )
    await post.writer.drain()
    return post


async def test_a_stalled_socketio_post_is_408_like_a_rest_body(
    db: str, start_live_server: Start
) -> None:
    """A long-polling POST is held to the same pace as a REST body: a client that
    declares 100 bytes and sends 10 is answered 408 and closed after BODY_READ_TIMEOUT
    (python-engineio would wait for the rest for ever)."""
    server = await start_live_server(body_read_timeout=TIMEOUT_S, body_min_rate=0)
    post = await _socketio_post(server, "Content-Length: 100\r\n", b'40{"token":')
    assert_stalled_408(await post.answer(within_s=10))


async def test_a_socketio_post_without_a_length_is_411(db: str, start_live_server: Start) -> None:
    server = await start_live_server(body_read_timeout=TIMEOUT_S)
    post = await _socketio_post(server, "Transfer-Encoding: chunked\r\n", b"3\r\n40{\r\n")
    status, _headers, body, closed, took = await post.answer(within_s=5)
    assert status == 411 and body["code"] == "length_required", body
    assert closed
    assert took < TIMEOUT_S, took  # answered at once, not after the body


async def test_the_upload_cap_of_an_address_holds_across_web_processes(
    db: str, start_live_server: Start, redis_url: str
) -> None:
    """Behind nginx an address's uploads may land on any web process: the cap is on
    Redis.  4 stalled uploads on one process, the 5th on another is 429 at once; when
    the 4 are answered (408) their slots are back, on both."""
    first = await _server(start_live_server, min_rate=0)
    second = await _server(start_live_server, min_rate=0)
    user = await make_user()
    vlist = await make_list(user)
    path = f"/api/lists/{vlist.id}/videos/upload"
    address = "203.0.113.42"
    redis = aioredis.Redis.from_url(redis_url)
    try:

        async def leases() -> int:
            return int(await redis.zcard(upload_slots_key(address)))

        held = [await SlowUpload(first.port, path, user.id, address).open() for _ in range(4)]
        await wait_for(lambda: _equals(leases, PER_ADDRESS), 10, "4 upload leases on Redis")
        status, headers, body, _closed, took = await (
            await SlowUpload(second.port, path, user.id, address).open()
        ).answer(within_s=5)
        assert status == 429 and body["code"] == "too_many_uploads", body
        assert int(headers["retry-after"]) >= 1 and took < 1.0, took
        for upload in held:
            assert_stalled_408(await upload.answer(within_s=10))
        await wait_for(lambda: _equals(leases, 0), 5, "the leases given back")
        assert_stalled_408(
            await (await SlowUpload(second.port, path, user.id, address).open()).answer(10)
        )
    finally:
        await redis.aclose()


async def _equals(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() == n
