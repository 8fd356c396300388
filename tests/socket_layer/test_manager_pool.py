"""Every Redis client of a web process has a bounded pool that WAITS for a connection:
REDIS_PUBSUB_POOL_SIZE for the client manager's publishes, REDIS_POOL_SIZE for the
others, REDIS_POOL_TIMEOUT for how long a command waits (redis-py's default pool raises
"Too many connections" at once instead)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis
from redis import asyncio as aioredis

from quart_app.core.config import Config
from quart_app.core.redis_pools import PoolLimits, async_client, pool_exhausted, sync_client
from quart_app.services import Services
from socket_layer.server import create_sio, layer_of


@pytest.mark.parametrize("kind", ["user-channels", "stock"])
async def test_pool_settings_reach_the_managers_and_the_registry(
    make_config: Callable[..., Config], kind: str
) -> None:
    config = make_config(
        "sqlite:///unused.sqlite3",
        socketio_manager=kind,
        redis_pubsub_pool_size=3,
        redis_pool_size=7,
        redis_pool_timeout=1.5,
    )
    sio = create_sio(config)
    manager = sio.manager
    manager._redis_connect()
    pool = manager.redis.connection_pool
    assert isinstance(pool, aioredis.BlockingConnectionPool)
    assert (pool.max_connections, pool.timeout) == (3, 1.5)
    registry_pool = layer_of(sio).registry._redis.connection_pool
    assert isinstance(registry_pool, aioredis.BlockingConnectionPool)
    assert (registry_pool.max_connections, registry_pool.timeout) == (7, 1.5)
    await manager.redis.aclose()
    await layer_of(sio).registry._redis.aclose()


async def test_web_services_clients_wait_for_a_connection(
    make_config: Callable[..., Config],
) -> None:
    config = make_config("sqlite:///unused.sqlite3", redis_pool_size=4, redis_pool_timeout=2.0)
    svc = Services.open(config)
    try:
        assert svc.redis is not None and svc.rq_redis is not None
        for pool in (svc.redis.connection_pool, svc.rq_redis.connection_pool):
            assert isinstance(pool, aioredis.BlockingConnectionPool | redis.BlockingConnectionPool)
            assert (pool.max_connections, pool.timeout) == (4, 2.0)
    finally:
        await svc.close()


async def test_a_burst_far_above_the_pool_size_waits_instead_of_failing(redis_url: str) -> None:
    client = async_client(redis_url, PoolLimits(size=5, timeout=10.0))
    try:
        # 1,000 commands at once on 5 connections: each waits its turn
        results = await asyncio.gather(
            *(client.execute_command("PING") for _ in range(1000)), return_exceptions=True
        )
        assert [r for r in results if r is not True] == []
        assert len(client.connection_pool._in_use_connections) == 0
    finally:
        await client.aclose()
    # redis-py's own pool with the same cap raises for the 6th concurrent command
    plain = aioredis.Redis.from_url(redis_url, max_connections=5)
    try:
        results = await asyncio.gather(
            *(plain.execute_command("PING") for _ in range(1000)), return_exceptions=True
        )
        assert any(isinstance(r, redis.exceptions.ConnectionError) for r in results)
    finally:
        await plain.aclose()


def test_the_blocking_client_waits_its_bounded_time_then_raises(redis_url: str) -> None:
    client = sync_client(redis_url, PoolLimits(size=1, timeout=0.2))
    try:
        held = client.connection_pool.get_connection()
        with pytest.raises(
            redis.exceptions.ConnectionError, match="No connection available"
        ) as err:
            client.ping()
        assert pool_exhausted(err.value)
        assert not pool_exhausted(redis.exceptions.ConnectionError("Connection refused"))
        client.connection_pool.release(held)
        assert client.ping() is True
    finally:
        client.close()
