"""The client manager of a web process whose fan-out runs on a Redis Cluster.

:class:`ShardedChannelManager` is :class:`~socket_layer.user_channels.UserChannelManager`
with each user room's channel moved to the cluster (``FANOUT_REDIS_CLUSTER``): the
channel ``reeltrack:socketio:{user:<id>}`` (the room is the hash tag, so one user's
channel is on one slot) is subscribed with SSUBSCRIBE on the master owning its slot
(:class:`~socket_layer.cluster_pubsub.ShardedSubscriptions`), and publishers SPUBLISH
on it.  Messages are the same final engine.io packets and are delivered the same way.

When a shard's subscriptions are lost (a slot migrated, a master failed over) and
placed again, ``resync`` goes to the sockets of the rooms whose channels were on it,
and only to them.  python-socketio's common channel (disconnects, callbacks, other
rooms) stays on ``REDIS_URL`` with the base class's listener.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio.cluster import RedisCluster

from quart_app.core import metrics
from quart_app.core.redis_pools import PoolLimits
from socket_layer.cluster_pubsub import Addr, ShardedSubscriptions, cluster_client
from socket_layer.pooled_redis import DEFAULT_LIMITS
from socket_layer.protocol import (
    NAMESPACE,
    REDIS_CHANNEL,
    is_user_room,
    sharded_channel,
    sharded_room,
)
from socket_layer.resync import emit_resync_to_rooms
from socket_layer.user_channels import ROOM_SUBSCRIBE_WAIT_S, UserChannelManager

log = logging.getLogger(__name__)


class ShardedChannelManager(UserChannelManager):
    """User rooms on sharded channels of a Redis Cluster (see the module docstring).
    ``restored_rooms`` counts the rooms resynced after their shard moved."""

    name = "reeltrack-sharded-channels"

    def __init__(
        self,
        url: str,
        cluster_nodes: list[Addr],
        *,
        channel: str = REDIS_CHANNEL,
        direct_writes: bool = True,
        pool_limits: PoolLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(url, channel=channel, direct_writes=direct_writes, pool_limits=pool_limits)
        self.cluster_nodes = cluster_nodes
        self.shards = ShardedSubscriptions(cluster_nodes, self._deliver_sharded, self._on_restored)
        self.restored_rooms = 0
        self._cluster: RedisCluster | None = None
        self._resync_tasks: set[asyncio.Task[None]] = set()

    def initialize(self) -> None:
        if self._started:
            return
        super().initialize()
        self.shards.start()

    async def close(self) -> None:
        await self.shards.close()
        await super().close()
        if self._cluster is not None:
            try:
                await asyncio.wait_for(self._cluster.aclose(), timeout=2)
            except Exception:  # a broken publish connection: nothing to save
                pass

    # -------------------------------------------------------------- subscriptions

    def _local_room_channels(self) -> list[str]:
        return []  # the REDIS_URL listener keeps only the common channel

    async def enter_room(
        self, sid: str, namespace: str, room: str, eio_sid: str | None = None
    ) -> None:
        """Join ``room``; for a user room, return only once its channel is subscribed
        on its shard (or after ROOM_SUBSCRIBE_WAIT_S: the room is then resynced once
        the subscription is confirmed)."""
        # the base's own enter_room subscribes on REDIS_URL: skip to the room index's
        await super(UserChannelManager, self).enter_room(sid, namespace, room, eio_sid=eio_sid)
        if not (
            namespace == NAMESPACE
            and is_user_room(room)
            and self.is_connected_or_pending(sid, namespace)
        ):
            return
        channel = sharded_channel(room, self.channel)
        fut = self.shards.subscribe(channel)
        done, _ = await asyncio.wait({fut}, timeout=ROOM_SUBSCRIBE_WAIT_S)
        if not done:
            self.shards.mark_gap(channel)
            log.warning("sharded subscribe to %s not confirmed; continuing", room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super(UserChannelManager, self).basic_leave_room(sid, namespace, room)
        if (
            namespace == NAMESPACE
            and is_user_room(room)
            and room not in self.rooms.get(namespace, {})
        ):
            self.shards.unsubscribe(sharded_channel(room, self.channel))

    def _on_restored(self, channels: list[str]) -> None:
        rooms = [r for c in channels if (r := sharded_room(c, self.channel)) is not None]
        self.restored_rooms += len(rooms)
        self.resyncs += 1
        task = asyncio.ensure_future(self._resync(rooms))
        self._resync_tasks.add(task)
        task.add_done_callback(self._resync_tasks.discard)

    async def _resync(self, rooms: list[str]) -> None:
        try:
            sent = await emit_resync_to_rooms(self.server, rooms, "fan-out shard moved")
            log.info("resync sent to %d sockets of %d rooms whose shard moved", sent, len(rooms))
        except Exception:  # a failing socket must not stop the others' resync
            log.exception("sending resync failed")

    # -------------------------------------------------------------- delivery

    def _deliver_sharded(self, channel: str, payload: str) -> None:
        room = sharded_room(channel, self.channel)
        if room is None or not payload:
            return
        self.received += 1
        if payload[0] == "4":
            if self.deliver_packet(room, payload):
                metrics.observe_forward_packet(payload)

    # -------------------------------------------------------------- emitting

    async def _publish_raw(self, channel: str, text: str) -> None:
        """An emit to a user room (already its packet text): SPUBLISH on the cluster."""
        target = sharded_channel(channel[len(self.prefix) :], self.channel)
        for attempt in range(2):
            try:
                if self._cluster is None:
                    self._cluster = cluster_client(self.cluster_nodes, self.pool_limits.size)
                await self._cluster.spublish(target, text)
                return
            except Exception as exc:  # redis raises several unrelated types
                cluster, self._cluster = self._cluster, None
                if cluster is not None:
                    try:
                        await asyncio.wait_for(cluster.aclose(), timeout=2)
                    except Exception:  # closing a dead client is not worth raising
                        pass
                if attempt:
                    log.error("spublish to %s failed: %s", target, exc)
