"""The default client manager of a web process: a Redis channel per user room.

Where python-socketio's stock ``AsyncRedisManager`` spends its ~0.5 ms of CPU per
delivered event (profiled with py-spy, see docs/scaling.md): every process receives
every message on one channel and JSON-decodes it; the manager re-encodes the packet,
creates an asyncio task per recipient, which puts it on the engine.io socket's queue,
which wakes the socket's writer task (``asyncio.wait_for`` per wake-up), which hands it
to hypercorn.

:class:`UserChannelManager` instead

- subscribes one Redis channel per user room (``reeltrack:socketio:user:<id>``) when the
  first local socket of that user joins, and unsubscribes when the last one leaves, so
  each web process receives only the messages of its own users;
- receives them on a raw asyncio connection parsed by hiredis
  (:mod:`socket_layer.redis_subscriber`),
  and gets each message as the final engine.io packet text (``42["progress",{...}]``,
  encoded once by the publisher), so nothing is decoded or re-encoded per message or
  per recipient;
- writes it straight into each recipient's websocket in the same call
  (:mod:`socket_layer.direct_websocket`, :mod:`socket_layer.eager`), with no task and no
  queue when the socket is idle (order is kept: a socket that has packets queued or a
  send in flight gets the message through its queue instead);
- still speaks python-socketio's pub/sub protocol on the common channel for everything
  else (other rooms, disconnects, callbacks, stock-format emitters);
- after its Redis connection was lost it re-subscribes every local room and sends
  ``resync`` to every local socket (DESIGN section 4 rule 5).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import socketio
from engineio.packet import Packet as EioPacket

from quart_app.core import metrics
from quart_app.core.redis_pools import PoolLimits
from socket_layer.direct_websocket import install_direct_websockets
from socket_layer.eager import run_eager
from socket_layer.emitter import encode_event_packet
from socket_layer.pooled_redis import DEFAULT_LIMITS, WaitingPool
from socket_layer.protocol import (
    NAMESPACE,
    REDIS_CHANNEL,
    RETRY_FIRST_S,
    RETRY_MAX_S,
    is_user_room,
    room_channel,
)
from socket_layer.redis_subscriber import RedisSubscriber, open_subscriber
from socket_layer.resync import emit_resync
from socket_layer.room_index import RoomIndex
from socket_layer.send_buffer import text_frame
from socket_layer.stopping import aclose_quietly, cancel_and_wait

log = logging.getLogger(__name__)

#: a room's subscribe not confirmed within this long lets the connect go on (the resync
#: after the reconnect covers whatever it missed)
ROOM_SUBSCRIBE_WAIT_S = 5.0
#: after (re)connecting, the listener waits this long for every subscription at once
RESUBSCRIBE_WAIT_S = 10.0
#: the listener pings Redis this often and reconnects when no answer comes in time
HEALTH_INTERVAL_S = 10.0
HEALTH_TIMEOUT_S = 5.0
#: channels per UNSUBSCRIBE command
SUBSCRIBE_CHUNK = 1000


class _PreEncoded(EioPacket):  # type: ignore[misc]
    """An engine.io MESSAGE whose text is already final (encoded once, sent N times)."""

    def __init__(self, text: str) -> None:
        self.packet_type = 4
        self.data = text[1:]
        self.binary = False
        self.encode_cache = text


class UserChannelManager(RoomIndex, WaitingPool, socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio client manager with a Redis channel per user room (see module
    docstring).  Publishing on the common channel (python-socketio's protocol) goes
    through the base class; receiving is this class's own listener.

    ``subscribed`` is set while the listener holds its subscriptions (the server waits
    for it at start-up); ``resyncs`` counts the resyncs sent, ``listener_failures`` the
    lost connections, ``received`` the messages taken from user channels.
    """

    name = "reeltrack-user-channels"

    def __init__(
        self,
        url: str,
        *,
        channel: str = REDIS_CHANNEL,
        direct_writes: bool = True,
        pool_limits: PoolLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(
            url,
            channel=channel,
            write_only=False,
            # pool for this process's own publishes; the listener has its own connection
            redis_options={
                "socket_connect_timeout": 5,
                "socket_keepalive": True,
                "max_connections": pool_limits.size,
            },
        )
        self.pool_limits = pool_limits
        self.prefix = room_channel("", channel)
        self.direct_writes = direct_writes
        self.subscribed = asyncio.Event()
        self.resyncs = 0
        self.listener_failures = 0
        self.received = 0
        self.received_common = 0
        self._conn: RedisSubscriber | None = None
        #: channel -> future resolved when Redis confirmed the subscription
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._to_unsubscribe: set[str] = set()
        self._flush_scheduled = False
        self._common: asyncio.Queue[str] = asyncio.Queue()
        self._pong: asyncio.Event = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._started = False

    # -------------------------------------------------------------- life cycle

    def initialize(self) -> None:
        """Start the listener (idempotent: the server also calls this on first connect)."""
        if self._started:
            return
        self._started = True
        install_direct_websockets(self.server.eio)
        super().initialize()  # starts self._thread: python-socketio's dispatch loop
        self._listener = asyncio.ensure_future(self._listen_forever())

    async def close(self) -> None:
        """Stop the listener and close the Redis connections."""
        # the scale-out benchmark reads this line: what THIS process took from Redis
        log.info(
            "pub/sub messages received: %d on user channels, %d on the common channel",
            self.received,
            self.received_common,
        )
        await cancel_and_wait(self._listener, getattr(self, "thread", None))
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self.subscribed.clear()
        await aclose_quietly(self.redis)

    async def _listen(self) -> AsyncIterator[str]:
        """Common-channel messages for python-socketio's own dispatch (``_thread``)."""
        while True:
            yield await self._common.get()

    async def _connect(self) -> RedisSubscriber:
        return await open_subscriber(self.redis_url, self._deliver_channel, self._on_control)

    async def _listen_forever(self) -> None:
        retry = RETRY_FIRST_S
        failed_before = False
        while True:
            try:
                conn = await self._connect()
                self._conn = conn
                channels = [self.channel, *self._local_room_channels()]
                waits = [self._request_subscribe(c, force=True) for c in channels]
                await asyncio.wait_for(asyncio.gather(*waits), RESUBSCRIBE_WAIT_S)
                retry = RETRY_FIRST_S
                self.subscribed.set()
                if failed_before:
                    failed_before = False
                    self.resyncs += 1
                    try:
                        await emit_resync(self.server, "redis listener reconnected")
                    except Exception:  # a failing socket must not stop the listener
                        log.exception("sending resync failed")
                await self._watch(conn)
                raise ConnectionError("Redis closed the pub/sub connection")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # OSError, TimeoutError, ConnectionError...
                self.subscribed.clear()
                failed_before = True
                self.listener_failures += 1
                metrics.redis_failure("web", "listen")
                self._drop_connection()
                log.warning(
                    "Socket.IO Redis listener lost (%s: %s); retrying in %.1fs",
                    type(exc).__name__,
                    exc,
                    retry,
                )
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX_S)

    async def _watch(self, conn: RedisSubscriber) -> None:
        """Return when the connection is lost or stops answering pings."""
        while not conn.lost.done():
            try:
                await asyncio.wait_for(asyncio.shield(conn.lost), HEALTH_INTERVAL_S)
                return
            except TimeoutError:
                pass
            self._pong.clear()
            conn.command("PING")
            try:
                await asyncio.wait_for(self._pong.wait(), HEALTH_TIMEOUT_S)
            except TimeoutError:
                raise ConnectionError("Redis did not answer PING") from None

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.abort()
        for fut in self._confirm.values():
            if not fut.done():
                fut.cancel()
        self._confirm.clear()
        self._to_unsubscribe.clear()

    # -------------------------------------------------------------- subscriptions

    def _local_room_channels(self) -> list[str]:
        rooms = self.rooms.get(NAMESPACE, {})
        return [room_channel(r, self.channel) for r in rooms if is_user_room(r)]

    def _request_subscribe(self, channel: str, force: bool = False) -> asyncio.Future[None]:
        fut = self._confirm.get(channel)
        if fut is not None and not force and not fut.cancelled():
            return fut
        fut = asyncio.get_running_loop().create_future()
        self._confirm[channel] = fut
        self._to_unsubscribe.discard(channel)
        if self._conn is not None:
            self._conn.command("SUBSCRIBE", channel)
        return fut

    def _on_control(self, kind: str, channel: str) -> None:
        if kind == "subscribe":
            fut = self._confirm.get(channel)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif kind == "pong":
            self._pong.set()

    def _schedule_unsubscribe(self, channel: str) -> None:
        self._confirm.pop(channel, None)
        self._to_unsubscribe.add(channel)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_unsubscribes)

    def _flush_unsubscribes(self) -> None:
        self._flush_scheduled = False
        channels = [c for c in self._to_unsubscribe if c not in self._confirm]
        self._to_unsubscribe.clear()
        if self._conn is None or not channels:
            return
        for i in range(0, len(channels), SUBSCRIBE_CHUNK):
            self._conn.command("UNSUBSCRIBE", *channels[i : i + SUBSCRIBE_CHUNK])

    async def enter_room(
        self, sid: str, namespace: str, room: str, eio_sid: str | None = None
    ) -> None:
        """Join ``room``; for a user room, return only once this process is subscribed
        to its channel (or Redis is unreachable: the reconnect's resync covers that),
        so an event persisted and published after this returns is delivered live."""
        await super().enter_room(sid, namespace, room, eio_sid=eio_sid)
        if (
            namespace == NAMESPACE
            and is_user_room(room)
            and self.is_connected_or_pending(sid, namespace)
        ):
            fut = self._request_subscribe(room_channel(room, self.channel))
            if self._conn is None:
                return
            # asyncio.wait: neither a timeout nor a dropped connection raises here
            done, _ = await asyncio.wait({fut}, timeout=ROOM_SUBSCRIBE_WAIT_S)
            if not done or fut.cancelled():
                log.warning("subscribe to %s not confirmed; continuing", room)

    def is_connected_or_pending(self, sid: str, namespace: str) -> bool:
        return bool(self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace))

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        if (
            namespace == NAMESPACE
            and is_user_room(room)
            and room not in self.rooms.get(namespace, {})
        ):
            self._schedule_unsubscribe(room_channel(room, self.channel))

    # -------------------------------------------------------------- delivery

    def _deliver_channel(self, channel: str, payload: str) -> None:
        if channel == self.channel:
            self.received_common += 1
            self._common.put_nowait(payload)
            return
        if not channel.startswith(self.prefix) or not payload:
            return
        self.received += 1
        room = channel[len(self.prefix) :]
        if payload[0] == "4":
            if self.deliver_packet(room, payload):
                metrics.observe_forward_packet(payload)
        else:  # a python-socketio message addressed to this room's channel
            self._common.put_nowait(payload)

    def deliver_packet(self, room: str, text: str) -> int:
        """Send the final engine.io packet ``text`` to every local socket in ``room``
        (namespace ``/``); returns the number of sockets it was handed to."""
        members = self.rooms.get(NAMESPACE, {}).get(room)
        if not members:
            return 0
        sockets = self.server.eio.sockets
        packet: _PreEncoded | None = None
        frame: bytes | None = None
        sent = 0
        for eio_sid in list(members.values()):
            s = sockets.get(eio_sid)
            if s is None or s.closed or s.closing:
                continue
            ws = getattr(s, "_rt_ws", None)
            if ws is not None and s.upgraded and not ws.busy and not s.queue.qsize():
                if self.direct_writes:
                    if frame is None:
                        frame = text_frame(text)
                    if ws.try_write_frame(frame):
                        sent += 1
                        continue
                run_eager(ws.send_text(text))
            else:  # polling, upgrading, or packets queued before this one: keep order
                if packet is None:
                    packet = _PreEncoded(text)
                run_eager(s.send(packet))
            sent += 1
        return sent

    # -------------------------------------------------------------- emitting

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        """An emit to a whole user room is published once, pre-encoded, on that room's
        channel (every process holding sockets of the user delivers it, this one
        included); everything else is python-socketio's own behaviour."""
        room = to or room
        if (
            not kwargs.get("ignore_queue")
            and is_user_room(room)
            and (namespace or NAMESPACE) == NAMESPACE
            and skip_sid is None
            and callback is None
            and not isinstance(data, tuple)
            and not socketio.packet.Packet.data_is_binary(data)
        ):
            await self._publish_raw(
                room_channel(room, self.channel), encode_event_packet(event, data)
            )
            return
        await super().emit(
            event,
            data,
            namespace=namespace,
            room=room,
            skip_sid=skip_sid,
            callback=callback,
            **kwargs,
        )

    async def _publish_raw(self, channel: str, text: str) -> None:
        for attempt in range(2):
            try:
                if not self.connected:  # type: ignore[has-type]
                    self._redis_connect()
                await self.redis.publish(channel, text)
                return
            except Exception as exc:  # redis raises several unrelated types
                self.connected = False
                if attempt:
                    log.error("publish to %s failed: %s", channel, exc)
