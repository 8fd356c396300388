"""Redis restarted under a running web process: every connected socket gets ``resync``
(messages published while the listener was away are gone), live delivery resumes and
the connection registry heals (DESIGN section 4 rule 5)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis import asyncio as aioredis

from socket_layer.emitter import ProgressEmitter
from socket_layer.protocol import presence_key
from tests.socket_layer.conftest import token_for
from tests.support.builders import add_event, make_empty_job, make_user
from tests.support.live import LiveServer
from tests.support.services import RedisServer
from tests.support.sio_client import connect_client
from tests.support.waiting import wait_for


@pytest.fixture
async def private_redis() -> AsyncIterator[RedisServer]:
    """A Redis only this test uses, so it may restart it."""
    server = await asyncio.to_thread(RedisServer().start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.mark.parametrize("manager", ["user-channels", "stock"])
async def test_redis_restart_sends_resync_to_every_local_socket(
    start_live_server: Callable[..., Awaitable[LiveServer]],
    private_redis: RedisServer,
    db: str,
    manager: str,
) -> None:
    web = await start_live_server(redis_url=private_redis.url, socketio_manager=manager)
    user = await make_user()
    job = await make_empty_job(user)
    token = token_for(user)
    clients = [
        await connect_client(web.url, token=token, transports=["websocket"]),
        await connect_client(web.url, token=token, transports=["polling"]),
    ]
    emitter = ProgressEmitter.for_config(web.config)
    redis = aioredis.Redis.from_url(private_redis.url)
    try:
        first = await add_event(job, status="pending")
        await emitter.publish_progress(user.id, first)
        for client in clients:
            assert await client.wait_for("progress") == first
            assert client.events("resync") == []

        await asyncio.to_thread(private_redis.restart)  # same port, empty

        for client in clients:
            resync = await client.wait_for("resync", wait_s=15)
            assert isinstance(resync, dict) and isinstance(resync.get("reason"), str)
            assert client.sio.connected

        # the listener is subscribed again: live delivery works
        second = await add_event(job)
        await emitter.publish_progress(user.id, second)
        for client in clients:
            assert (await client.wait_for("progress", count=2))[1] == second

        # the restarted Redis lost the registry; the heartbeat re-adds both sockets
        async def healed() -> bool:
            return bool(await redis.zcard(presence_key(user.id)) == 2)

        await wait_for(healed, web.config.ws_presence_ttl + 3, "the registry to heal", 0.1)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        await emitter.close()
        await redis.aclose()
