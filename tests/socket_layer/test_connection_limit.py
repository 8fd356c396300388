"""The per-user connection slots (``ConnectionRegistry``) against the session Redis:
reserves that arrive together share one pipelined round trip and still hold the limit
exactly; Redis being unreachable fails open; a cancelled connect does not disturb the
others of its batch; a batch costs Redis no SCRIPT EXISTS, and a Redis that lost its
script cache is reloaded and answers the same batch."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis import asyncio as aioredis

from socket_layer.connection_limit import ConnectionRegistry
from socket_layer.protocol import presence_key
from tests.support.services import RedisServer, free_port

LIMIT = 5


@pytest.fixture
async def registry(redis_url: str) -> AsyncIterator[ConnectionRegistry]:
    reg = ConnectionRegistry(redis_url, limit=LIMIT, ttl=30)
    try:
        yield reg
    finally:
        await reg.stop()


def count_pipelines(reg: ConnectionRegistry) -> list[int]:
    """Wrap the registry's client so each pipeline it opens is counted."""
    opened: list[int] = []
    client = reg._redis
    original = client.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        opened.append(1)
        return original(*args, **kwargs)

    client.pipeline = pipeline  # type: ignore[method-assign]
    return opened


async def members(redis: aioredis.Redis, user: str) -> int:
    return int(await redis.zcard(presence_key(user)))


async def test_reserves_arriving_together_share_one_round_trip_and_hold_the_limit(
    registry: ConnectionRegistry, redis: aioredis.Redis
) -> None:
    users = [f"u-{uuid.uuid4().hex}" for _ in range(3)]
    opened = count_pipelines(registry)
    attempts = [(u, f"sid-{u}-{i}") for u in users for i in range(12)]
    results = await asyncio.gather(*(registry.reserve(u, sid) for u, sid in attempts))
    try:
        assert len(opened) == 1  # 36 reserves, one pipeline
        for user in users:
            granted = [ok for (u, _), ok in zip(attempts, results, strict=True) if u == user]
            assert sum(granted) == LIMIT, granted
            assert await members(redis, user) == LIMIT
        # a refused reserve is not counted locally: releasing it changes nothing
        refused = next(sid for (_, sid), ok in zip(attempts, results, strict=True) if not ok)
        await registry.release(refused)
        assert all([await members(redis, u) == LIMIT for u in users])
        # a granted one frees its slot for the next connect of the same user
        owner, granted_sid = next(a for a, ok in zip(attempts, results, strict=True) if ok)
        assert not await registry.reserve(owner, "sid-late")
        await registry.release(granted_sid)
        assert await registry.reserve(owner, "sid-late")
    finally:
        await redis.delete(*(presence_key(u) for u in users))


async def test_a_cancelled_reserve_leaves_the_rest_of_its_batch_answered(
    registry: ConnectionRegistry, redis: aioredis.Redis
) -> None:
    user = f"u-{uuid.uuid4().hex}"
    tasks = [asyncio.ensure_future(registry.reserve(user, f"s{i}")) for i in range(4)]
    await asyncio.sleep(0)  # every reserve is queued for the flush, none answered
    tasks[1].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    try:
        assert isinstance(results[1], asyncio.CancelledError)
        assert [results[0], results[2], results[3]] == [True, True, True]
    finally:
        await redis.delete(presence_key(user))


async def test_an_unreachable_redis_lets_the_connection_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reg = ConnectionRegistry(f"redis://127.0.0.1:{free_port()}/0", limit=LIMIT, ttl=30)
    try:
        with caplog.at_level(logging.WARNING, logger="socket_layer.connection_limit"):
            results = await asyncio.gather(*(reg.reserve("u", f"s{i}") for i in range(3)))
        assert results == [True, True, True]
        assert "connection limit not checked" in caplog.text
    finally:
        await reg.stop()


async def _calls(redis: aioredis.Redis, command: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_batch_of_reserves_is_one_round_trip_even_after_a_script_flush(
    own_redis: RedisServer,
) -> None:
    reg = ConnectionRegistry(own_redis.url, limit=LIMIT, ttl=30)
    admin = aioredis.from_url(own_redis.url)
    try:
        assert await asyncio.gather(*(reg.reserve("u", f"s{i}") for i in range(3))) == [True] * 3
        await admin.config_resetstat()
        assert await asyncio.gather(*(reg.reserve("u", f"t{i}") for i in range(3))) == [
            True,
            True,
            False,
        ]
        assert await _calls(admin, "script|exists") == 0
        assert await _calls(admin, "evalsha") == 3
        # what a restarted Redis forgets: the batch is refused NOSCRIPT, then answered
        await admin.script_flush()
        await reg.release("s0")
        assert await asyncio.gather(*(reg.reserve("u", f"v{i}") for i in range(2))) == [
            True,
            False,
        ]
        assert await members(admin, "u") == LIMIT
    finally:
        await reg.stop()
        await admin.aclose()
