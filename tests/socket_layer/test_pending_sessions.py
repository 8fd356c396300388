"""engine.io sessions that never send a Socket.IO CONNECT are capped per address and in
total, and closed after ``WS_CONNECT_TIMEOUT``; connected sessions do not count."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import aiohttp

from quart_app.core.tokens import issue_token
from tests.conftest import TEST_SECRET
from tests.support.attackers import from_address, handshake, handshake_url
from tests.support.builders import make_user
from tests.support.live import LiveServer
from tests.support.sio_client import connect_client

Start = Callable[..., Awaitable[LiveServer]]


async def test_one_handshake_past_the_per_address_cap_is_refused(
    db: str, start_live_server: Start
) -> None:
    server = await start_live_server(ws_max_pending_per_address=5, ws_connect_timeout=30)
    async with from_address("127.0.0.3") as crowd, from_address("127.0.0.4") as other:
        for _ in range(5):
            await handshake(crowd, server)
        async with crowd.get(handshake_url(server)) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "30"
            body = await r.json()
            assert body["code"] == 3 and "too many" in body["message"], body
        # another address is not affected
        await handshake(other, server)
        # a websocket handshake past the cap is refused too
        ws_url = handshake_url(server).replace("transport=polling", "transport=websocket")
        try:
            async with crowd.ws_connect(ws_url) as ws:
                msg = await ws.receive(timeout=5)
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status in (403, 429)


async def test_the_total_cap_holds_across_addresses(db: str, start_live_server: Start) -> None:
    server = await start_live_server(ws_max_pending_sessions=6, ws_connect_timeout=30)
    for i in range(3):
        async with from_address(f"127.0.1.{i + 1}") as http:
            await handshake(http, server)
            await handshake(http, server)
    async with from_address("127.0.1.9") as late, late.get(handshake_url(server)) as r:
        assert r.status == 429


async def test_connected_sessions_do_not_count(db: str, start_live_server: Start) -> None:
    server = await start_live_server(ws_max_pending_per_address=2, ws_connect_timeout=30)
    users = [await make_user(), await make_user()]
    clients = [
        await connect_client(
            server.url, token=issue_token(TEST_SECRET, user.id), transports=["polling"]
        )
        for user in users
        for _ in range(3)
    ]
    try:
        async with aiohttp.ClientSession() as http:
            await handshake(http, server)
            await handshake(http, server)
    finally:
        for client in clients:
            await client.close()


async def test_an_abandoned_handshake_is_closed_after_the_connect_timeout(
    db: str, start_live_server: Start
) -> None:
    timeout = 1.0
    server = await start_live_server(
        ws_max_pending_per_address=1,
        ws_connect_timeout=timeout,
        # the ping must not be what closes it
        ws_ping_interval=30.0,
        ws_ping_timeout=30.0,
    )
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        sid = await handshake(http, server)
        async with http.get(handshake_url(server)) as r:
            assert r.status == 429  # the one pending slot of this address is taken
        # the long-poll waiting on the session ends when the server closes it
        async with http.get(handshake_url(server, sid)) as r:
            assert r.status in (200, 400)
            ended = time.monotonic() - started
        assert timeout - 0.1 <= ended < timeout + 1.5, ended
        async with http.get(handshake_url(server, sid)) as r:
            assert r.status == 400  # gone
        # its slot is free again
        await handshake(http, server)
