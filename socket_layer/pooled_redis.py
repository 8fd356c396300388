"""python-socketio Redis managers on a bounded, waiting connection pool.

``AsyncRedisManager._redis_connect`` builds its publish client with ``Redis.from_url``,
whose pool raises ``Too many connections`` once ``max_connections`` are busy instead of
waiting; a burst of emits (a disconnect per socket of a mass disconnect, callbacks...)
then fails.  Managers that mix :class:`WaitingPool` in get a client from
:func:`quart_app.core.redis_pools.async_client` instead.
"""

from __future__ import annotations

from typing import Any

from quart_app.core.redis_pools import PoolLimits, async_client

#: the pool of a manager built without explicit limits
DEFAULT_LIMITS = PoolLimits(size=10, timeout=5.0)


class WaitingPool:
    """Mixin for ``socketio.AsyncRedisManager`` subclasses: set ``pool_limits`` before
    the first publish; ``redis_options`` are still passed as connection options
    (``max_connections`` in them is replaced by ``pool_limits.size``)."""

    redis_url: str
    redis_options: dict[str, Any]
    pool_limits: PoolLimits = DEFAULT_LIMITS

    def _redis_connect(self) -> None:
        options = {k: v for k, v in self.redis_options.items() if k != "max_connections"}
        self.redis = async_client(self.redis_url, self.pool_limits, **options)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True
