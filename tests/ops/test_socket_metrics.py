"""The web process's Socket.IO metrics, read from a real ``reeltrack serve``'s /metrics:
connections by transport (an upgraded socket moves to websocket), connects, refusals,
disconnect reasons, resyncs after a Redis restart, and the login throttle's 429s."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx

from quart_app.core.metrics import sample_value
from quart_app.core.tokens import issue_token
from tests.conftest import TEST_SECRET
from tests.support.builders import make_user
from tests.support.live import LiveServer
from tests.support.services import RedisServer
from tests.support.sio_client import RecordingClient, connect_client
from tests.support.waiting import wait_until


class Scraper:
    def __init__(self, server: LiveServer) -> None:
        self.server = server

    async def text(self) -> str:
        async with httpx.AsyncClient(base_url=self.server.url, timeout=10) as http:
            r = await http.get("/metrics")
            assert r.status_code == 200
            return r.text

    async def value(self, name: str, **labels: str) -> float:
        found = sample_value(await self.text(), name, labels)
        assert found is not None, (name, labels)
        return found

    async def wait_value(
        self, name: str, expected: float, wait_s: float = 10.0, **labels: str
    ) -> None:
        async def reached() -> bool:
            return await self.value(name, **labels) == expected

        if not await wait_until(reached, wait_s, interval=0.1):
            got = await self.value(name, **labels)
            raise AssertionError(f"{name}{labels} = {got}, wanted {expected}")


async def test_connection_metrics_follow_the_sockets(
    db: str, start_live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    redis = RedisServer().start()  # restarted below: the server's own Redis
    try:
        server = await start_live_server(redis_url=redis.url, login_max_attempts=1)
        m = Scraper(server)
        user = await make_user()
        token = issue_token(TEST_SECRET, user.id)
        assert await m.value("reeltrack_socketio_connections", transport="websocket") == 0

        ws = await connect_client(server.url, token=token, transports=["websocket"])
        polling = await connect_client(server.url, token=token, transports=["polling"])
        upgrading = await connect_client(
            server.url, token=token, transports=["polling", "websocket"]
        )
        clients: list[RecordingClient] = [ws, polling, upgrading]
        # the upgraded socket is re-counted under websocket within the refresh period
        await m.wait_value("reeltrack_socketio_connections", 2, transport="websocket")
        assert await m.value("reeltrack_socketio_connections", transport="polling") == 1
        # (the upgrading client may finish its upgrade before or after the connect)
        ws_connects = await m.value("reeltrack_socketio_connects_total", transport="websocket")
        polling_connects = await m.value("reeltrack_socketio_connects_total", transport="polling")
        assert ws_connects >= 1 and polling_connects >= 1 and ws_connects + polling_connects == 3

        # refusals by reason
        await connect_client(
            server.url, token="junk", transports=["websocket"], expect_refusal=True
        )
        assert await m.value("reeltrack_socketio_refusals_total", reason="invalid_token") == 1

        # Redis restarted: every local socket is told to resync
        await asyncio.to_thread(redis.restart)
        await m.wait_value("reeltrack_socketio_resyncs_total", 3, wait_s=20)
        assert (
            await m.value(
                "reeltrack_redis_connection_failures_total", process="web", operation="listen"
            )
            >= 1
        )
        for client in clients:
            await client.wait_for("resync")

        # disconnect reasons: a clean client close, and a transport cut under the socket
        await ws.close()
        await m.wait_value("reeltrack_socketio_disconnects_total", 1, reason="client_disconnect")
        transport = upgrading.sio.eio.ws
        await transport.close()  # the websocket drops without a Socket.IO goodbye
        await m.wait_value("reeltrack_socketio_disconnects_total", 1, reason="transport_close")
        await m.wait_value("reeltrack_socketio_connections", 0, transport="websocket")
        assert await m.value("reeltrack_socketio_connections", transport="polling") == 1
        await polling.close()
        await m.wait_value("reeltrack_socketio_connections", 0, transport="polling")
        await upgrading.close()

        # the login throttle's refusals are counted as rate limiting of kind "login"
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            body = {"username": user.username, "password": "wrong-wrong"}
            assert (await http.post("/api/auth/login", json=body)).status_code == 401
            assert (await http.post("/api/auth/login", json=body)).status_code == 429
        assert await m.value("reeltrack_http_rate_limited_total", kind="login") == 1
    finally:
        redis.stop()
