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
  each web process receives only the messages of its own users; the (un)subscribes
  requested in one event-loop iteration go out as one command (a connect storm of
  10,000 users: ten SUBSCRIBE commands and ten timers, not 10,000 of each);
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
#: channels per SUBSCRIBE / UNSUBSCRIBE command
SUBSCRIBE_CHUNK = 1000

#: the state of a channel nobody asked for (``_subs`` has no entry)
_ABSENT: Any = object()


def _wake(waiters: list[asyncio.Future[bool]], confirmed: bool) -> None:
    for w in waiters:
        if not w.done():  # a cancelled waiter (its connect handler was cancelled)
            w.set_result(confirmed)


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
        #: every channel this process wants subscribed -> True once Redis confirmed it;
        #: while its SUBSCRIBE is in flight, the futures of those waiting for it (each
        #: waiter its own: cancelling one leaves the others waiting); False when not
        #: sent (no connection) or given up (its wait expired): the next request re-sends
        self._subs: dict[str, bool | list[asyncio.Future[bool]]] = {}
        #: SUBSCRIBEs sent and not answered yet, per channel (replies come in order:
        #: a channel is confirmed by the reply to the LAST SUBSCRIBE sent for it)
        self._unanswered: dict[str, int] = {}
        #: channels to send in the next flush (one command per SUBSCRIBE_CHUNK)
        self._to_subscribe: dict[str, None] = {}
        self._to_unsubscribe: set[str] = set()
        #: the longest wait asked for by a request of the next flush
        self._batch_wait = 0.0
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
                waits = [
                    self._request_subscribe(c, force=True, wait=RESUBSCRIBE_WAIT_S)
                    for c in channels
                ]
                confirmed = await asyncio.wait_for(
                    asyncio.gather(*[w for w in waits if w is not None]), RESUBSCRIBE_WAIT_S
                )
                if not all(confirmed):
                    raise TimeoutError(
                        f"{confirmed.count(False)} of {len(channels)} subscriptions not confirmed"
                    )
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
        subs, self._subs = self._subs, {}
        for state in subs.values():
            if type(state) is list:
                _wake(state, False)
        self._unanswered.clear()
        self._to_subscribe.clear()
        self._to_unsubscribe.clear()

    # -------------------------------------------------------------- subscriptions

    def _local_room_channels(self) -> list[str]:
        rooms = self.rooms.get(NAMESPACE, {})
        return [room_channel(r, self.channel) for r in rooms if is_user_room(r)]

    def _request_subscribe(
        self, channel: str, force: bool = False, wait: float | None = None
    ) -> asyncio.Future[bool] | None:
        """Want ``channel`` subscribed; returns a future of this caller's own (True once
        Redis confirmed it or the channel is no longer wanted, False when the wait
        expired or the connection was lost), or None when there is nothing to wait for
        (already confirmed, or no connection: the reconnect subscribes it).

        A channel confirmed or in flight is not sent again unless ``force``; the others
        are sent by the next flush (one SUBSCRIBE for every request of this event-loop
        iteration), which gives up on them after ``wait`` (ROOM_SUBSCRIBE_WAIT_S)."""
        state = self._subs.get(channel, _ABSENT)
        if state is True and not force:
            return None
        if self._conn is None:
            if state is _ABSENT:
                self._subs[channel] = False
                self._to_unsubscribe.discard(channel)
            return None
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if type(state) is list:
            state.append(waiter)
            if not force:
                return waiter
        else:
            self._subs[channel] = [waiter]
            self._to_unsubscribe.discard(channel)
        self._to_subscribe[channel] = None
        wait = ROOM_SUBSCRIBE_WAIT_S if wait is None else wait
        if wait > self._batch_wait:
            self._batch_wait = wait
        self._schedule_flush()
        return waiter

    def _on_control(self, kind: str, channel: str) -> None:
        if kind == "subscribe":
            unanswered = self._unanswered.pop(channel, 0)
            if unanswered > 1:  # a later SUBSCRIBE of this channel is still unanswered
                self._unanswered[channel] = unanswered - 1
                return
            state = self._subs.get(channel, _ABSENT)
            if state is _ABSENT or state is True:  # no longer wanted (UNSUBSCRIBE queued)
                return
            self._subs[channel] = True
            if type(state) is list:
                _wake(state, True)
        elif kind == "pong":
            self._pong.set()

    def _schedule_unsubscribe(self, channel: str) -> None:
        state = self._subs.pop(channel, None)
        if type(state) is list:  # nobody left to wait for it
            _wake(state, True)
        self._to_subscribe.pop(channel, None)
        self._to_unsubscribe.add(channel)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Send this iteration's requests: UNSUBSCRIBE the channels left and not wanted
        again, SUBSCRIBE the channels requested (disjoint lists: a channel requested
        after it was scheduled for unsubscribe stays subscribed), and start ONE timer
        giving up on the SUBSCRIBEs not confirmed in time."""
        self._flush_scheduled = False
        subs = self._subs
        leave = [c for c in self._to_unsubscribe if c not in subs]
        self._to_unsubscribe.clear()
        join = list(self._to_subscribe)
        self._to_subscribe.clear()
        wait, self._batch_wait = self._batch_wait, 0.0
        conn = self._conn
        if conn is None:  # the reconnect subscribes every local room again
            return
        for i in range(0, len(leave), SUBSCRIBE_CHUNK):
            conn.command("UNSUBSCRIBE", *leave[i : i + SUBSCRIBE_CHUNK])
        if not join:
            return
        unanswered = self._unanswered
        for c in join:
            unanswered[c] = unanswered.get(c, 0) + 1
        for i in range(0, len(join), SUBSCRIBE_CHUNK):
            conn.command("SUBSCRIBE", *join[i : i + SUBSCRIBE_CHUNK])
        waiting: list[Any] = [subs[c] for c in join]  # each a list of waiters
        asyncio.get_running_loop().call_later(wait, self._give_up, join, waiting, wait)

    def _give_up(
        self, channels: list[str], waiting: list[list[asyncio.Future[bool]]], wait: float
    ) -> None:
        """The wait of a flushed batch expired: wake whoever still waits for one of its
        channels (the connect goes on; a later request sends the SUBSCRIBE again).  A
        channel whose waiters are no longer this batch's (confirmed, left, or requested
        again on a new connection) is not touched."""
        subs = self._subs
        late = []
        for c, waiters in zip(channels, waiting, strict=True):
            if subs.get(c) is waiters:
                late.append(c)
                subs[c] = False
                _wake(waiters, False)
        if late:
            log.warning(
                "%d of %d channel subscribes not confirmed within %.1fs (%s%s); continuing",
                len(late),
                len(channels),
                wait,
                late[0],
                ", ..." if len(late) > 1 else "",
            )

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
            waiter = self._request_subscribe(room_channel(room, self.channel))
            if waiter is not None:
                # resolved (never raising) by the confirmation, by the batch's timer
                # after ROOM_SUBSCRIBE_WAIT_S (which logs it) or by a lost connection
                await waiter

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
