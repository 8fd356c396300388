"""Redis clients whose connection pools are bounded AND wait for a free connection.

redis-py's default pool (asyncio and blocking alike) opens connections up to
``max_connections`` (100 unless told) and then raises ``Too many connections`` at
once.  Under a burst (thousands of sockets closing together, a flood of REST requests
each checking the rate limit) that turned into failed slot releases and a rate limit
that let everything through.  Every Redis client of reeltrack is built here instead:
its pool holds at most ``size`` connections and a command that finds none free waits
up to ``timeout`` seconds for one (then raises :class:`redis.exceptions.ConnectionError`
"No connection available.").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from redis import asyncio as aioredis


@dataclass(frozen=True)
class PoolLimits:
    """How many connections a pool may hold and how long a command waits for one."""

    size: int
    timeout: float

    @classmethod
    def of(cls, config: Any, size: int | None = None) -> PoolLimits:
        """``REDIS_POOL_SIZE`` / ``REDIS_POOL_TIMEOUT`` of ``config`` (``size`` overrides
        the size, e.g. with ``REDIS_PUBSUB_POOL_SIZE``)."""
        return cls(size or config.redis_pool_size, config.redis_pool_timeout)


def async_client(url: str, limits: PoolLimits, **options: Any) -> aioredis.Redis:
    """An asyncio client on its own waiting pool (closed with the client's ``aclose``).

    ``options`` are connection options (``socket_timeout``...), as for ``from_url``.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=limits.size, timeout=limits.timeout, **options
    )
    return aioredis.Redis.from_pool(pool)


def sync_client(url: str, limits: PoolLimits, **options: Any) -> redis.Redis:
    """A blocking client (for threads) on its own waiting pool."""
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=limits.size, timeout=limits.timeout, **options
    )
    return redis.Redis.from_pool(pool)


def pool_exhausted(exc: BaseException) -> bool:
    """Whether ``exc`` is a pool's bounded wait running out (every connection busy for
    ``timeout`` seconds: the process is saturated), not Redis being unreachable."""
    return (
        isinstance(exc, redis.exceptions.ConnectionError) and str(exc) == "No connection available."
    )
