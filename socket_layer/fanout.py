"""The fast fan-out path of a web process (issue 6), built on python-socketio's own
extension point, the client manager.

Where the stock ``AsyncRedisManager`` spends its ~0.5 ms of CPU per delivered event
(profiled with py-spy, see docs/scaling.md): every process receives every message on one
channel and JSON-decodes it; the manager re-encodes the packet, creates an asyncio task
per recipient, which puts it on the engine.io socket's queue, which wakes the socket's
writer task (``asyncio.wait_for`` per wake-up), which hands it to hypercorn; and
hypercorn compresses every ~300-byte message with permessage-deflate (zlib state of
~90 KB per connection).

:class:`UserChannelManager` instead

- subscribes one Redis channel per user room (``reeltrack:socketio:user:<id>``) when the
  first local socket of that user joins, and unsubscribes when the last one leaves, so
  each web process receives only the messages of its own users;
- receives them on a raw asyncio connection parsed by hiredis, and gets each message as
  the final engine.io packet text (``42["progress",{...}]``, encoded once by the
  publisher), so nothing is decoded or re-encoded per message or per recipient;
- writes it straight into each recipient's ASGI websocket ``send`` in the same call,
  with no task and no queue when the socket is idle (order is kept: a socket that has
  packets queued or a send in flight gets the message through its queue instead);
- still speaks python-socketio's pub/sub protocol on the common channel for everything
  else (other rooms, disconnects, callbacks, stock-format emitters);
- after its Redis connection was lost it re-subscribes every local room and sends
  ``resync`` to every local socket (DESIGN section 4 rule 5).

:func:`configure_websockets` turns hypercorn's permessage-deflate off (hypercorn has
no option for it), :func:`tune_gc` freezes the start-up heap and raises the collector's
thresholds (full collections were the p99 spikes).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import hiredis
import socketio
from engineio.async_drivers import asgi as eio_asgi
from engineio.packet import Packet as EioPacket
from redis.connection import parse_url
from wsproto.connection import ConnectionState

from quart_app.core import metrics
from socket_layer.emitter import encode_event_packet, room_channel
from socket_layer.manager import emit_resync
from socket_layer.protocol import NAMESPACE, REDIS_CHANNEL

log = logging.getLogger(__name__)

_WS_OPEN = ConnectionState.OPEN
USER_ROOM_PREFIX = "user:"
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0
#: a subscribe not confirmed within this long lets the connect go on (the resync after
#: the reconnect covers whatever it missed)
SUBSCRIBE_WAIT_S = 5.0
#: the listener pings Redis this often and reconnects when no answer comes in time
HEALTH_INTERVAL_S = 10.0
HEALTH_TIMEOUT_S = 5.0
#: channels per SUBSCRIBE command when re-subscribing everything
SUBSCRIBE_CHUNK = 1000


def user_channel_prefix(channel: str = REDIS_CHANNEL) -> str:
    return f"{channel}:"


# ------------------------------------------------------------------ eager coroutines


def run_eager(coro: Coroutine[Any, Any, Any]) -> None:
    """Run ``coro`` now, synchronously, up to its first real suspension; only then hand
    the rest to a task.  Python 3.12's eager tasks do this; 3.11 has none.

    Sending to an idle socket never suspends (hypercorn only waits when the transport
    buffer is full), so the common case creates no task and costs no loop iteration.
    Exceptions are logged, never raised: one broken socket must not stop the fan-out.
    """
    try:
        yielded = coro.send(None)
    except StopIteration:
        return
    except Exception:
        log.debug("send failed", exc_info=True)
        return
    task = asyncio.ensure_future(_finish(coro, yielded))
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)


_PENDING: set[asyncio.Future[Any]] = set()


async def _finish(coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
    """Drive a coroutine that :func:`run_eager` started, like a Task would."""
    while True:
        # a coroutine yields either None (a bare yield: reschedule) or a future
        try:
            if yielded is None:
                await asyncio.sleep(0)
            else:
                yielded._asyncio_future_blocking = False
                await asyncio.wait([yielded])
        except asyncio.CancelledError:
            coro.close()
            raise
        try:
            yielded = coro.send(None)
        except StopIteration:
            return
        except Exception:
            log.debug("send failed", exc_info=True)
            return


# ------------------------------------------------------------------ websocket driver


class _PreEncoded(EioPacket):  # type: ignore[misc]
    """An engine.io MESSAGE whose text is already final (encoded once, sent N times)."""

    def __init__(self, text: str) -> None:
        self.packet_type = 4
        self.data = text[1:]
        self.binary = False
        self.encode_cache = text


class DirectWebSocket(eio_asgi.WebSocket):  # type: ignore[misc]
    """engine.io's ASGI websocket wrapper, reachable from its socket (``_rt_ws``) so the
    manager can write to it directly, and knowing whether a send is in flight."""

    def __init__(self, handler: Any, server: Any) -> None:
        super().__init__(handler, server)
        self.busy = False
        self.socket = getattr(handler, "__self__", None)
        #: (hypercorn WSStream, its TCP transport, its send lock); None: not resolved
        #: yet; False: not a hypercorn HTTP/1.1 websocket, always use the ASGI path
        self._raw: tuple[Any, Any, Any] | None | bool = None

    def _resolve_raw(self) -> tuple[Any, Any, Any] | bool:
        """Find the TCP transport under hypercorn's websocket (HTTP/1.1 only)."""
        try:
            from hypercorn.asyncio.tcp_server import TCPServer
            from hypercorn.protocol.ws_stream import WSStream

            stream = self.asgi_send.__self__
            tcp = stream.send.__self__.send.__self__
            if isinstance(stream, WSStream) and isinstance(tcp, TCPServer):
                return (stream, tcp.writer.transport, tcp.send_lock)
        except AttributeError:
            pass
        return False

    def try_write_frame(self, frame: bytes) -> bool:
        """Write a complete, final, uncompressed text frame straight to the transport
        when nothing else is in flight on this connection: hypercorn's send lock free,
        the transport's buffer empty (no back-pressure to honour), wsproto's state OPEN.
        Returns False when the caller must take the ASGI path instead.

        Hypercorn's own path for the same bytes costs ~50 us of Python per message
        (ASGI dict, wsproto framing, h11 dispatch, lock, drain); this ~3 us.  An
        uncompressed message is legal even where permessage-deflate was negotiated
        (RFC 7692 section 6), and compression state only covers compressed messages.
        """
        raw = self._raw
        if raw is None:
            raw = self._raw = self._resolve_raw()
        if raw is False or self.busy:
            return False
        stream, transport, lock = raw  # type: ignore[misc]
        if (
            stream.closed
            or stream.connection.state is not _WS_OPEN
            or lock.locked()
            or transport.is_closing()
            or transport.get_write_buffer_size()
        ):
            return False
        transport.write(frame)
        return True

    async def __call__(self, environ: dict[str, Any]) -> Any:
        if self.socket is not None:
            self.socket._rt_ws = self
        try:
            return await super().__call__(environ)
        finally:
            if self.socket is not None:
                self.socket._rt_ws = None

    async def send(self, message: Any) -> None:
        self.busy = True
        try:
            await super().send(message)
        finally:
            self.busy = False

    async def send_text(self, text: str) -> None:
        self.busy = True
        try:
            await self.asgi_send({"type": "websocket.send", "bytes": None, "text": text})
        finally:
            self.busy = False


def text_frame(text: str) -> bytes:
    """A final, unmasked, uncompressed websocket text frame (server to client)."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def install_direct_websockets(eio: Any) -> None:
    """Make ``eio`` (an engineio.AsyncServer in ASGI mode) use :class:`DirectWebSocket`.
    The driver table is copied: other servers in the process keep theirs."""
    if eio._async.get("websocket") is not DirectWebSocket:
        eio._async = {**eio._async, "websocket": DirectWebSocket}


# ------------------------------------------------------------------ Redis listener


class _Subscriber(asyncio.Protocol):
    """A Redis pub/sub connection (RESP2), parsed by hiredis in ``data_received``."""

    def __init__(self, manager: UserChannelManager) -> None:
        self.manager = manager
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.replies: asyncio.Queue[Any] = asyncio.Queue()  # non-pub/sub replies (AUTH)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.lost.done():
            self.lost.set_result(None)

    def command(self, *args: str) -> None:
        if self.transport is None:
            return
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.transport.write(b"".join(parts))

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        deliver = self.manager._deliver_channel
        while True:
            msg = reader.gets()
            if msg is False:
                return
            if type(msg) is list and msg:
                kind = msg[0]
                if kind == "message":
                    deliver(msg[1], msg[2])
                    continue
                if kind in ("subscribe", "unsubscribe", "pong"):
                    self.manager._on_control(kind, msg[1] if len(msg) > 1 else "")
                    continue
            self.replies.put_nowait(msg)


class UserChannelManager(socketio.AsyncRedisManager):  # type: ignore[misc]
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
        pool_size: int = 10,
    ) -> None:
        super().__init__(
            url,
            channel=channel,
            write_only=False,
            # pool for this process's own publishes; the listener has its own connection
            redis_options={
                "socket_connect_timeout": 5,
                "socket_keepalive": True,
                "max_connections": pool_size,
            },
        )
        self.prefix = user_channel_prefix(channel)
        self.direct_writes = direct_writes
        self.subscribed = asyncio.Event()
        self.resyncs = 0
        self.listener_failures = 0
        self.received = 0
        self.received_common = 0
        self._conn: _Subscriber | None = None
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
        for task in (self._listener, getattr(self, "thread", None)):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self.subscribed.clear()
        if self.redis is not None:
            try:
                await asyncio.wait_for(self.redis.aclose(), timeout=2)
            except Exception:  # a broken publish connection: nothing to save
                pass

    async def _listen(self) -> AsyncIterator[str]:
        """Common-channel messages for python-socketio's own dispatch (``_thread``)."""
        while True:
            yield await self._common.get()

    async def _connect(self) -> _Subscriber:
        params = parse_url(self.redis_url)
        loop = asyncio.get_running_loop()
        conn_class = params.get("connection_class")
        proto = _Subscriber(self)
        if "path" in params:
            await asyncio.wait_for(loop.create_unix_connection(lambda: proto, params["path"]), 5)
        else:
            ctx = (
                ssl.create_default_context()
                if conn_class and "SSL" in conn_class.__name__
                else None
            )
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: proto,
                    params.get("host", "localhost"),
                    params.get("port", 6379),
                    ssl=ctx,
                ),
                5,
            )
        if params.get("password"):
            auth = [params["username"]] if params.get("username") else []
            proto.command("AUTH", *auth, params["password"])
            reply = await asyncio.wait_for(proto.replies.get(), 5)
            if isinstance(reply, Exception):
                if proto.transport is not None:
                    proto.transport.close()
                raise ConnectionError(f"Redis AUTH failed: {reply}")
        return proto

    async def _listen_forever(self) -> None:
        retry = RETRY_FIRST_S
        failed_before = False
        while True:
            try:
                conn = await self._connect()
                self._conn = conn
                channels = [self.channel, *self._local_room_channels()]
                waits = [self._request_subscribe(c, force=True) for c in channels]
                await asyncio.wait_for(asyncio.gather(*waits), SUBSCRIBE_WAIT_S * 2)
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

    async def _watch(self, conn: _Subscriber) -> None:
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
        return [
            room_channel(r, self.channel)
            for r in rooms
            if isinstance(r, str) and r.startswith(USER_ROOM_PREFIX)
        ]

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
            and isinstance(room, str)
            and room.startswith(USER_ROOM_PREFIX)
            and self.is_connected_or_pending(sid, namespace)
        ):
            fut = self._request_subscribe(room_channel(room, self.channel))
            if self._conn is None:
                return
            # asyncio.wait: neither a timeout nor a dropped connection raises here
            done, _ = await asyncio.wait({fut}, timeout=SUBSCRIBE_WAIT_S)
            if not done or fut.cancelled():
                log.warning("subscribe to %s not confirmed; continuing", room)

    def is_connected_or_pending(self, sid: str, namespace: str) -> bool:
        return bool(self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace))

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        if (
            namespace == NAMESPACE
            and isinstance(room, str)
            and room.startswith(USER_ROOM_PREFIX)
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
            and isinstance(room, str)
            and room.startswith(USER_ROOM_PREFIX)
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


# ------------------------------------------------------------------ process tuning


class _NoDeflate:
    """Stands in for wsproto's PerMessageDeflate in hypercorn's handshake and declines
    every offer, so no connection pays zlib's memory and CPU for ~300-byte messages."""

    name = "permessage-deflate"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def enabled(self) -> bool:
        return False

    def offer(self) -> bool:
        return False

    def accept(self, offer: str) -> bool:
        return False


def configure_websockets(permessage_deflate: bool) -> None:
    """Hypercorn 0.18 always accepts permessage-deflate when a client offers it (every
    browser does) and has no setting for it; with ``False`` its handshake declines."""
    from hypercorn.protocol import ws_stream
    from wsproto.extensions import PerMessageDeflate

    ws_stream.PerMessageDeflate = PerMessageDeflate if permessage_deflate else _NoDeflate  # type: ignore[assignment,misc]


def tune_gc() -> None:
    """Freeze everything allocated at start-up out of the collector's reach and make
    collections rarer: a full collection over thousands of sockets' objects blocked the
    event loop for 100+ ms (STACK.md), which is what the p99 latency showed."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)


def make_fanout_manager(
    redis_url: str, kind: str, *, channel: str = REDIS_CHANNEL, pool_size: int = 10
) -> Any:
    """The client manager for ``SOCKETIO_MANAGER``: ``user-channels`` (default) or
    ``stock`` (python-socketio's AsyncRedisManager with resync; the baseline).
    ``pool_size`` caps its Redis connection pool (``REDIS_PUBSUB_POOL_SIZE``)."""
    if kind == "stock":
        from socket_layer.manager import make_manager

        return make_manager(redis_url, channel=channel, pool_size=pool_size)
    if kind == "user-channels":
        return UserChannelManager(redis_url, channel=channel, pool_size=pool_size)
    raise ValueError(f"unknown SOCKETIO_MANAGER {kind!r}")
