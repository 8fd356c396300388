"""python-socketio's stock Redis manager plus ``resync`` (``SOCKETIO_MANAGER=stock``).

The baseline the default manager (:mod:`socket_layer.user_channels`) is measured
against: every process receives every message on one channel.  Its listener emits
``resync`` (:func:`socket_layer.resync.emit_resync`) to local sockets whenever it had to
re-subscribe, since anything published while it was not subscribed is gone (DESIGN
section 4, rule 5).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import socketio

from quart_app.core import metrics
from quart_app.core.redis_pools import PoolLimits
from socket_layer.pooled_redis import DEFAULT_LIMITS, WaitingPool
from socket_layer.protocol import EVENT_PROGRESS, REDIS_CHANNEL, RETRY_FIRST_S, RETRY_MAX_S
from socket_layer.resync import emit_resync
from socket_layer.room_index import RoomIndex
from socket_layer.stopping import aclose_quietly, cancel_and_wait

log = logging.getLogger(__name__)


class ResyncingRedisManager(RoomIndex, WaitingPool, socketio.AsyncRedisManager):  # type: ignore[misc]
    """``AsyncRedisManager`` whose listener emits ``resync`` to local sockets after it
    re-subscribed following any failure, and which reports when it is subscribed.

    ``subscribed`` is set while the listener holds a confirmed subscription (the
    server waits for it at start-up so no event falls between a client's connect and
    the subscription); ``resyncs`` counts the resyncs sent (metrics, tests).
    """

    name = "reeltrack-redis"

    def __init__(
        self,
        url: str,
        *,
        channel: str = REDIS_CHANNEL,
        redis_options: dict[str, Any] | None = None,
        pool_limits: PoolLimits = DEFAULT_LIMITS,
    ) -> None:
        options = {"socket_connect_timeout": 5, "socket_keepalive": True}
        options.update(redis_options or {})
        super().__init__(url, channel=channel, write_only=False, redis_options=options)
        self.pool_limits = pool_limits
        self._listen_redis: Any = None
        self._listen_pubsub: Any = None
        self.subscribed = asyncio.Event()
        self.resyncs = 0
        self.listener_failures = 0

    def initialize(self) -> None:
        """Start the listener (idempotent: the server also calls this on first connect)."""
        if getattr(self, "_started", False):
            return
        self._started = True
        super().initialize()

    async def _redis_listen_with_retries(self) -> AsyncIterator[dict[str, Any]]:
        retry = RETRY_FIRST_S
        failed_before = False
        while True:
            try:
                # a connection of its own: the base class's _publish may replace
                # self.redis/self.pubsub at any time
                self._listen_redis = self._get_redis_module().Redis.from_url(
                    self.redis_url, **self.redis_options
                )
                # see subscribe confirmations: they mark the moment nothing more is lost
                self._listen_pubsub = self._listen_redis.pubsub(ignore_subscribe_messages=False)
                await self._listen_pubsub.subscribe(self.channel)
                async for message in self._listen_pubsub.listen():
                    if message.get("type") == "subscribe":
                        retry = RETRY_FIRST_S
                        self.subscribed.set()
                        if failed_before:
                            failed_before = False
                            await self._resync("redis listener reconnected")
                        continue
                    yield message
                raise ConnectionError("pubsub listen() ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # redis raises several unrelated types
                self.subscribed.clear()
                failed_before = True
                self.listener_failures += 1
                metrics.redis_failure("web", "listen")
                log.warning(
                    "Socket.IO Redis listener lost (%s: %s); retrying in %.1fs",
                    type(exc).__name__,
                    exc,
                    retry,
                )
                await self._close_quietly()
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX_S)

    async def _listen(self) -> AsyncIterator[Any]:
        channel = self.channel.encode("utf-8")
        async for message in self._redis_listen_with_retries():
            if message["channel"] == channel and message["type"] == "message" and "data" in message:
                yield message["data"]

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        await super()._handle_emit(message)
        if message.get("event") == EVENT_PROGRESS:
            metrics.observe_forward(message.get("data"))

    async def _resync(self, reason: str) -> None:
        self.resyncs += 1
        try:
            await emit_resync(self.server, reason)
        except Exception:  # a failing socket must not stop the listener
            log.exception("sending resync failed")

    async def _close_quietly(self) -> None:
        pubsub, redis = self._listen_pubsub, self._listen_redis
        self._listen_pubsub = self._listen_redis = None
        for closing in (pubsub, redis):
            await aclose_quietly(closing)

    async def close(self) -> None:
        """Stop the listener task and close the Redis connections."""
        await cancel_and_wait(getattr(self, "thread", None))
        await self._close_quietly()
        self.subscribed.clear()
        await aclose_quietly(self.redis)


def make_manager(
    redis_url: str, *, channel: str = REDIS_CHANNEL, pool_limits: PoolLimits = DEFAULT_LIMITS
) -> ResyncingRedisManager:
    """python-socketio's stock manager with resync (``SOCKETIO_MANAGER=stock``)."""
    return ResyncingRedisManager(
        redis_url,
        channel=channel,
        redis_options={"max_connections": pool_limits.size},
        pool_limits=pool_limits,
    )
