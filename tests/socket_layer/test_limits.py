"""Per-user connection limit (WS_MAX_CONNECTIONS_PER_USER=5), counted in Redis across
web processes and self-healing when a process dies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from redis import asyncio as aioredis

from socket_layer.protocol import REASON_TOO_MANY_CONNECTIONS, presence_key, refusal
from tests.socket_layer.conftest import token_for
from tests.support.builders import make_user
from tests.support.live import LiveServer
from tests.support.sio_client import RecordingClient, connect_client
from tests.support.waiting import wait_for

TOO_MANY = refusal(REASON_TOO_MANY_CONNECTIONS)


async def close_all(clients: list[RecordingClient]) -> None:
    await asyncio.gather(*(c.close() for c in clients))


async def test_sixth_connection_is_refused_and_accepted_again_after_one_closes(
    live_server: LiveServer, db: str, transports: list[str], redis: aioredis.Redis
) -> None:
    user = await make_user()
    token = token_for(user)
    limit = live_server.config.ws_max_connections_per_user
    assert limit == 5
    clients = [
        await connect_client(live_server.url, token=token, transports=transports)
        for _ in range(limit)
    ]
    try:
        assert await redis.zcard(presence_key(user.id)) == limit
        refused = await connect_client(
            live_server.url, token=token, transports=transports, expect_refusal=True
        )
        assert refused.refusal == TOO_MANY
        assert refused.refusal_message == REASON_TOO_MANY_CONNECTIONS
        assert refused.events("snapshot") == []

        # another user is not affected by this user's limit
        other = await connect_client(
            live_server.url, token=token_for(await make_user()), transports=transports
        )
        await other.close()

        await clients.pop().close()

        async def slot_free() -> bool:
            return await redis.zcard(presence_key(user.id)) == limit - 1

        await wait_for(slot_free, 5, "the closed socket's slot is released")
        clients.append(await connect_client(live_server.url, token=token, transports=transports))
        assert await clients[-1].wait_for("snapshot") == {"jobs": []}
        again = await connect_client(
            live_server.url, token=token, transports=transports, expect_refusal=True
        )
        assert again.refusal == TOO_MANY
    finally:
        await close_all(clients)
    await wait_for(
        lambda: _is_zero(redis, presence_key(user.id)), 5, "all slots released after closing"
    )


async def _is_zero(redis: aioredis.Redis, key: str) -> bool:
    return await redis.zcard(key) == 0


async def test_two_web_processes_share_the_limit_and_a_killed_one_frees_its_slots(
    start_live_server: Callable[..., Awaitable[LiveServer]],
    db: str,
    transports: list[str],
    redis: aioredis.Redis,
) -> None:
    web_a, web_b = await asyncio.gather(start_live_server(), start_live_server())
    ttl = web_a.config.ws_presence_ttl
    user = await make_user()
    token = token_for(user)
    on_a = [await connect_client(web_a.url, token=token, transports=transports) for _ in range(3)]
    on_b = [await connect_client(web_b.url, token=token, transports=transports) for _ in range(2)]
    try:
        for server in (web_a, web_b):
            refused = await connect_client(
                server.url, token=token, transports=transports, expect_refusal=True
            )
            assert refused.refusal == TOO_MANY, server.name

        # a slot freed on B can be taken on A
        await on_b.pop().close()

        async def four_left() -> bool:
            return await redis.zcard(presence_key(user.id)) == 4

        await wait_for(four_left, 5, "slot released on B")
        on_a.append(await connect_client(web_a.url, token=token, transports=transports))
        refused = await connect_client(
            web_b.url, token=token, transports=transports, expect_refusal=True
        )
        assert refused.refusal == TOO_MANY

        # SIGKILL A (4 sockets): no shutdown code runs; its slots count until they expire
        web_a.kill()
        killed_at = time.monotonic()
        await close_all(on_a)
        on_a = []
        refused = await connect_client(
            web_b.url, token=token, transports=transports, expect_refusal=True
        )
        assert refused.refusal == TOO_MANY
        assert time.monotonic() - killed_at < ttl / 2, "the check above came too late"

        # each dead slot expires at most ttl after A's last heartbeat: B fills all five.
        # The bound is on the first slot B gets back (A's four share that heartbeat);
        # the connects after it only measure how loaded the machine is
        healed_at: list[float] = []

        async def five_on_b() -> bool:
            try:
                on_b.append(await connect_client(web_b.url, token=token, transports=transports))
            except Exception:
                return False
            healed_at.append(time.monotonic())
            return len(on_b) == 5

        await wait_for(five_on_b, ttl + 5, "a dead process's slots expire")
        healed_after = healed_at[0] - killed_at
        assert healed_after <= ttl + 2, healed_after
        refused = await connect_client(
            web_b.url, token=token, transports=transports, expect_refusal=True
        )
        assert refused.refusal == TOO_MANY
    finally:
        await close_all(on_a + on_b)
