"""Publishing progress from processes that hold no sockets (the RQ worker, the API).

Two wires, matching the web processes' client manager (``SOCKETIO_MANAGER``):

- ``user-channels`` (default): the event is encoded ONCE here into its final engine.io
  packet text (``42["progress",{...}]``) and published on the user's own channel
  (``reeltrack:socketio:user:<id>``); only web processes holding a socket of that user
  are subscribed to it, and they forward the text as it is
  (:class:`socket_layer.user_channels.UserChannelManager`).
- ``stock``: python-socketio's own pub/sub message on its one channel, as its
  write-only ``AsyncRedisManager`` publishes it (for ``SOCKETIO_MANAGER=stock``).

With ``FANOUT_REDIS_CLUSTER`` the ``user-channels`` packet goes with SPUBLISH to the
user's sharded channel on that Redis Cluster instead (``reeltrack:socketio:{user:<id>}``,
:class:`socket_layer.sharded_channels.ShardedChannelManager` on the web side).

python-socketio's write-only manager only logs "giving up" when a publish fails;
:class:`ProgressEmitter` raises :class:`PublishError` instead so the publisher knows
(DESIGN section 4, rule 4).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import redis.asyncio as aioredis
import socketio
from redis.asyncio.cluster import RedisCluster

from quart_app.core.redis_pools import PoolLimits, async_client
from socket_layer.cluster_pubsub import cluster_client, parse_nodes
from socket_layer.pooled_redis import DEFAULT_LIMITS, WaitingPool
from socket_layer.protocol import (
    EVENT_PROGRESS,
    NAMESPACE,
    REDIS_CHANNEL,
    WIRE_STOCK,
    WIRE_USER_CHANNELS,
    WIRES,
    room_channel,
    sharded_channel,
    user_room,
)
from socket_layer.stopping import aclose_quietly

log = logging.getLogger(__name__)

#: how long one SPUBLISH is retried while the cluster moves (a master's replica was
#: promoted 2.1-2.6 s after the kill on loopback), and the pauses between attempts
PUBLISH_RETRY_S = 6.0
PUBLISH_RETRY_FIRST_S = 0.05
PUBLISH_RETRY_MAX_S = 0.5


class PublishError(RuntimeError):
    """The message did not reach Redis; the caller decides what to do."""


def encode_event_packet(event: str, data: Any, namespace: str = NAMESPACE) -> str:
    """The engine.io text packet of a socket.io EVENT without ack id, byte for byte as
    python-socketio encodes it (``4`` + ``2`` + [namespace ","] + JSON array)."""
    body = json.dumps([event, data], separators=(",", ":"))
    if namespace and namespace != "/":
        return f"42{namespace},{body}"
    return f"42{body}"


def encode_user_emit(
    user_id: object, event: str, data: Any, channel: str = REDIS_CHANNEL
) -> tuple[str, str]:
    """(Redis channel, message) publishing ``event`` to every socket of ``user_id``."""
    return room_channel(user_room(user_id), channel), encode_event_packet(event, data)


class _ReportingRedisManager(WaitingPool, socketio.AsyncRedisManager):  # type: ignore[misc]
    """A write-only AsyncRedisManager whose failed publish raises."""

    async def _publish(self, data: Any) -> Any:
        last: Exception | None = None
        for _attempt in range(2):
            try:
                if not self.connected:  # type: ignore[has-type]
                    self._redis_connect()
                return await self.redis.publish(self.channel, self.json.dumps(data))
            except Exception as exc:  # redis raises several unrelated types
                last = exc
                self.connected = False
        raise PublishError(f"publish to Redis failed: {type(last).__name__}: {last}") from last


class ProgressEmitter:
    """Emits events into users' rooms through Redis, one instance per event loop."""

    def __init__(
        self,
        redis_url: str,
        *,
        channel: str = REDIS_CHANNEL,
        wire: str = WIRE_USER_CHANNELS,
        pool_limits: PoolLimits = DEFAULT_LIMITS,
        cluster_nodes: tuple[str, ...] = (),
    ) -> None:
        """``cluster_nodes`` (``host:port`` items): publish with SPUBLISH on that Redis
        Cluster (``user-channels`` wire only, else ValueError)."""
        if wire not in WIRES:
            raise ValueError(f"wire must be one of {WIRES}, got {wire!r}")
        if cluster_nodes and wire != WIRE_USER_CHANNELS:
            raise ValueError(f"a Redis Cluster fan-out needs the {WIRE_USER_CHANNELS} wire")
        self._cluster_nodes = parse_nodes(cluster_nodes) if cluster_nodes else []
        self._cluster: RedisCluster | None = None
        self._cluster_failing = False
        #: SPUBLISH attempts that failed and were retried
        self.publish_retries = 0
        self.channel = channel
        self.wire = wire
        self._redis_url = redis_url
        self._options: dict[str, Any] = {"socket_timeout": 2, "socket_connect_timeout": 2}
        self._pool_limits = pool_limits
        self._redis: aioredis.Redis | None = None
        self._manager: _ReportingRedisManager | None = None
        if wire == WIRE_STOCK:
            self._manager = _ReportingRedisManager(
                redis_url, channel=channel, write_only=True, redis_options=self._options
            )
            self._manager.pool_limits = pool_limits

    @classmethod
    def for_config(cls, config: Any) -> ProgressEmitter:
        """The emitter matching ``config.socketio_manager`` (the web processes' side)."""
        kind = getattr(config, "socketio_manager", WIRE_USER_CHANNELS)
        return cls(
            config.redis_url,
            wire=WIRE_STOCK if kind == WIRE_STOCK else kind,
            pool_limits=PoolLimits.of(config),
            cluster_nodes=getattr(config, "fanout_redis_cluster", ()),
        )

    async def emit_to_user(self, user_id: object, event: str, data: Any) -> None:
        """Publish ``event`` to every socket of ``user_id`` on any web process.

        Raises :class:`PublishError` when Redis did not accept the message.
        """
        if self._manager is not None:
            await self._manager.emit(event, data, namespace=NAMESPACE, room=user_room(user_id))
            return
        if self._cluster_nodes:
            await self._spublish(user_id, event, data)
            return
        channel, message = encode_user_emit(user_id, event, data, self.channel)
        last: Exception | None = None
        for _attempt in range(2):
            try:
                if self._redis is None:
                    self._redis = async_client(self._redis_url, self._pool_limits, **self._options)
                await self._redis.publish(channel, message)
                return
            except Exception as exc:  # redis raises several unrelated types
                last = exc
                await self._drop()
        raise PublishError(f"publish to Redis failed: {type(last).__name__}: {last}") from last

    async def _spublish(self, user_id: object, event: str, data: Any) -> None:
        """SPUBLISH, retried for up to PUBLISH_RETRY_S while the cluster moves (MOVED
        past redis-py's own attempts, CLUSTERDOWN, a lost or not yet promoted master).
        The event is persisted before it is published, so a retry never duplicates the
        history; a message that did reach Redis before the error is delivered twice,
        which clients drop by seq.  After a publish has given up, the next ones try once
        until one goes through: a cluster that stays down costs one attempt per event."""
        channel = sharded_channel(user_room(user_id), self.channel)
        message = encode_event_packet(event, data)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + (0.0 if self._cluster_failing else PUBLISH_RETRY_S)
        delay = PUBLISH_RETRY_FIRST_S
        attempts = 0
        last: Exception | None = None
        while True:
            attempts += 1
            try:
                if self._cluster is None:
                    self._cluster = cluster_client(self._cluster_nodes, self._pool_limits.size)
                await self._cluster.spublish(channel, message)
            except Exception as exc:  # redis raises several unrelated types
                last = exc
                await self._drop()
                if loop.time() + delay > deadline:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, PUBLISH_RETRY_MAX_S)
                continue
            self._cluster_failing = False
            if attempts > 1:
                self.publish_retries += attempts - 1
                log.warning(
                    "spublish to %s went through after %d attempts (%.1f s): %s",
                    channel,
                    attempts,
                    loop.time() - started,
                    type(last).__name__,
                )
            return
        self._cluster_failing = True
        raise PublishError(
            f"spublish to Redis Cluster failed after {attempts} attempts: "
            f"{type(last).__name__}: {last}"
        ) from last

    async def publish_progress(self, user_id: object, event: dict[str, Any]) -> None:
        """Publish one progress event (already validated and persisted)."""
        await self.emit_to_user(user_id, EVENT_PROGRESS, event)

    async def _drop(self) -> None:
        redis, self._redis = self._redis, None
        cluster, self._cluster = self._cluster, None
        for client in (redis, cluster):
            await aclose_quietly(client)

    async def close(self) -> None:
        await self._drop()
        await aclose_quietly(getattr(self._manager, "redis", None))
