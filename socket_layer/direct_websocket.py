"""The websocket writer that reaches under hypercorn to its TCP transport.

engine.io's ASGI websocket wrapper, replaced by :class:`DirectWebSocket`, which its
socket can reach (``socket._rt_ws``) so the client manager writes a pre-encoded
message straight into the TCP transport when nothing else is in flight on that
connection, or else through the ASGI ``send`` without engine.io's queue.

This is the one module of the socket layer that imports hypercorn (the forbidden
contract in setup.cfg names it as its only exception): it must recognise hypercorn's
HTTP/1.1 websocket stream to find the transport under it.  Under any other server the
writer falls back to the ASGI path.

It also keeps the websocket's share of the socket's send backlog
(:mod:`socket_layer.send_buffer`): the bytes of sends handed to hypercorn that have not
returned (hypercorn waits in its drain while the client does not read) plus the TCP
transport's buffer; a ``send_text`` that finds the backlog over the bound closes the
socket instead.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from engineio.async_drivers import asgi as eio_asgi
from wsproto.connection import ConnectionState

from socket_layer.lean_queue import LeanQueue
from socket_layer.send_buffer import SendQueue

_WS_OPEN = ConnectionState.OPEN
#: SO_LINGER on, 0 s: close() resets the connection instead of draining the send queue
_LINGER_RESET = struct.pack("ii", 1, 0)


class DirectWebSocket(eio_asgi.WebSocket):  # type: ignore[misc]
    """engine.io's ASGI websocket wrapper, reachable from its socket (``_rt_ws``) so the
    manager can write to it directly, knowing whether a send is in flight and how many
    bytes wait for the client."""

    def __init__(self, handler: Any, server: Any) -> None:
        super().__init__(handler, server)
        #: sends handed to hypercorn that have not returned, and their bytes
        self.in_flight = 0
        self.in_flight_bytes = 0
        self.socket = getattr(handler, "__self__", None)
        queue = getattr(self.socket, "queue", None)
        #: the socket's bounded queue (None: no bound installed)
        self.queue: SendQueue | None = queue if isinstance(queue, SendQueue) else None
        #: (hypercorn WSStream, its TCP transport, its send lock); None: not resolved
        #: yet; False: not a hypercorn HTTP/1.1 websocket, always use the ASGI path
        self._raw: tuple[Any, Any, Any] | None | bool = None
        #: frames written directly in this event-loop iteration, sent together at its
        #: end (one write system call, e.g. a connect's snapshot and its CONNECT answer)
        self._corked: list[bytes] | None = None
        self._corked_bytes = 0

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

    def _connection(self) -> tuple[Any, Any, Any] | None:
        """(hypercorn's WSStream, its TCP transport, its send lock), resolved on first
        use after the accept; None before it and under anything but hypercorn's
        HTTP/1.1 websocket."""
        raw = self._raw
        if raw is None:
            if self.asgi_send is None:  # not accepted yet: nothing to resolve
                return None
            raw = self._raw = self._resolve_raw()
        return raw or None  # type: ignore[return-value]

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
        raw = self._connection()
        if raw is None or self.busy:
            return False
        stream, transport, lock = raw
        if (
            stream.closed
            or stream.connection.state is not _WS_OPEN
            or lock.locked()
            or transport.is_closing()
        ):
            return False
        corked = self._corked
        if corked is not None:  # joins this iteration's write, after what is in it
            corked.append(frame)
            self._corked_bytes += len(frame)
            return True
        if transport.get_write_buffer_size():
            return False
        self._corked = [frame]
        self._corked_bytes = len(frame)
        asyncio.get_running_loop().call_soon(self.uncork)
        return True

    def uncork(self) -> None:
        """Write the frames gathered in this iteration (now, in order).  Every other
        way out of this connection (a send through hypercorn, a close, an abort)
        uncorks first, so nothing overtakes them."""
        frames = self._corked
        if frames is None:
            return
        self._corked = None
        self._corked_bytes = 0
        raw = self._connection()
        if raw is None or raw[1].is_closing():
            return
        raw[1].write(frames[0] if len(frames) == 1 else b"".join(frames))

    @property
    def busy(self) -> bool:
        """A send is in flight: a direct write now would overtake it."""
        return self.in_flight > 0

    def unread_bytes(self) -> int:
        """Bytes given to hypercorn that have not reached the kernel: sends in flight
        plus the TCP transport's buffer (a sent message already in that buffer counts
        twice until hypercorn's drain returns)."""
        raw = self._connection()
        buffered = raw[1].get_write_buffer_size() if raw is not None else 0
        return self.in_flight_bytes + buffered + self._corked_bytes

    def release_handshake(self) -> None:
        """Drop the HTTP/1.1 parser hypercorn keeps under an accepted websocket (about
        2 KB of h11 state per connection): once the stream is CONNECTED hypercorn only
        passes frames through it and never sends an HTTP response on it again."""
        raw = self._connection()
        if raw is None:
            return
        from hypercorn.protocol.h11 import H11WSConnection
        from hypercorn.protocol.ws_stream import ASGIWebsocketState

        stream = raw[0]
        connection = getattr(getattr(stream.send, "__self__", None), "connection", None)
        if (
            isinstance(connection, H11WSConnection)
            and stream.state is ASGIWebsocketState.CONNECTED
            and not connection.buffer
        ):
            connection.h11_connection = None  # type: ignore[assignment]

    def slim_idle_state(self) -> None:
        """Swap the empty deques hypercorn's stack keeps under every connection for
        lists: wsproto's event queue, the stream protocol's drain waiters and the HTTP/1.1
        protocol's can-read event's waiters (an empty deque is ~620 B, an empty list 56:
        ~1.7 KB per idle websocket).  Only what they are used for is needed (append,
        remove, iteration, ``popleft`` for wsproto's), and they hold a few items at most.
        Anything not found as expected is left alone."""
        raw = self._connection()
        if raw is None:
            return
        stream = raw[0]
        connection = getattr(stream, "connection", None)
        if _empty_deque(getattr(connection, "_events", None)):
            connection._events = _EventList()  # type: ignore[union-attr]
        h11 = getattr(stream.send, "__self__", None)
        event = getattr(getattr(h11, "can_read", None), "_event", None)
        if isinstance(event, asyncio.Event) and _empty_deque(getattr(event, "_waiters", None)):
            event._waiters = []  # type: ignore[assignment]
        tcp = getattr(getattr(h11, "send", None), "__self__", None)
        protocol = getattr(getattr(tcp, "writer", None), "_protocol", None)
        if _empty_deque(getattr(protocol, "_drain_waiters", None)):
            protocol._drain_waiters = []  # type: ignore[union-attr]

    def abort(self) -> None:
        """Reset the TCP connection, unsent bytes dropped: every send waiting in
        hypercorn's drain ends and hypercorn tells the handler the client is gone.  The
        zero linger makes the kernel send a RST and free its send queue at once (a plain
        close would leave the socket lingering in FIN_WAIT1 with megabytes queued for a
        peer that never reads)."""
        raw = self._connection()
        self._corked = None  # unsent, as everything else in the transport
        self._corked_bytes = 0
        if raw is None:
            return
        transport = raw[1]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:  # already closed: nothing left to reset
                pass
        transport.abort()

    async def __call__(self, environ: dict[str, Any]) -> Any:
        # engine.io's WebSocket.__call__, inlined: one coroutine frame less held under
        # every websocket for its life
        if self.socket is not None:
            self.socket._rt_ws = self
        if self.queue is not None:
            self.queue.writer = self
        try:
            self.asgi_receive = environ["asgi.receive"]
            self.asgi_send = environ["asgi.send"]
            await self.asgi_send({"type": "websocket.accept"})
            await self.handler(self)
            return ""  # the response body: nothing
        finally:
            if self.socket is not None:
                self.socket._rt_ws = None
            if self.queue is not None and self.queue.writer is self:
                self.queue.writer = None

    async def close(self) -> None:
        self.uncork()
        await super().close()

    async def _handed_over(self, message: dict[str, Any], size: int) -> None:
        self.uncork()
        self.in_flight += 1
        self.in_flight_bytes += size
        try:
            await self.asgi_send(message)
        finally:
            self.in_flight -= 1
            self.in_flight_bytes -= size

    async def send(self, message: Any) -> None:
        """engine.io's own writes (its queue's packets, already admitted there)."""
        if isinstance(message, bytes):
            event = {"type": "websocket.send", "bytes": message, "text": None}
        else:
            event = {"type": "websocket.send", "bytes": None, "text": message}
        await self._handed_over(event, len(message))

    async def send_text(self, text: str) -> None:
        """A pre-encoded message, past engine.io's queue; when more than the bound
        already waits for this client the socket is closed instead (see
        :mod:`socket_layer.send_buffer`)."""
        if self.queue is not None and not self.queue.admit():
            return
        await self._handed_over({"type": "websocket.send", "bytes": None, "text": text}, len(text))


class _EventList(list[Any]):
    """wsproto's pending-event deque as a list (append, ``popleft``, truthiness)."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


def _empty_deque(value: object) -> bool:
    return isinstance(value, collections.deque) and not value


#: per event loop: the executor spawner and thread-safe caller hypercorn hands every
#: ASGI application (made once, not per connection)
_LOOP_HELPERS: dict[asyncio.AbstractEventLoop, tuple[Any, Any]] = {}


def _loop_helpers(loop: asyncio.AbstractEventLoop) -> tuple[Any, Any]:
    helpers = _LOOP_HELPERS.get(loop)
    if helpers is None:

        def call_soon(func: Callable[..., Any], *args: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(func(*args), loop).result()

        if len(_LOOP_HELPERS) > 16:  # loops of finished runs (tests): forget them
            _LOOP_HELPERS.clear()
        helpers = _LOOP_HELPERS[loop] = (functools.partial(loop.run_in_executor, None), call_soon)
    return helpers


def install_lean_app_inboxes() -> None:
    """Give every connection hypercorn (asyncio) serves a :class:`LeanQueue` as the
    application's inbox instead of an ``asyncio.Queue``: the same bound
    (``max_app_queue_size``), no deques and event kept while a websocket idles.
    Idempotent; the rest of ``TaskGroup.spawn_app`` is hypercorn 0.18's."""
    from hypercorn.asyncio import task_group

    if getattr(task_group.TaskGroup.spawn_app, "_reeltrack_lean", False):
        return

    async def spawn_app(
        self: Any, app: Any, config: Any, scope: Any, send: Any
    ) -> Callable[[Any], Awaitable[None]]:
        inbox = LeanQueue(config.max_app_queue_size)
        sync_spawn, call_soon = _loop_helpers(self._loop)
        self.spawn(task_group._handle, app, config, scope, inbox.get, send, sync_spawn, call_soon)
        return inbox.put

    spawn_app._reeltrack_lean = True  # type: ignore[attr-defined]
    task_group.TaskGroup.spawn_app = spawn_app  # type: ignore[method-assign]


def install_direct_websockets(eio: Any) -> None:
    """Make ``eio`` (an engineio.AsyncServer in ASGI mode) use :class:`DirectWebSocket`
    (idempotent: a subclass already installed, the input guard's wrapper of it, stays).
    The driver table is copied: other servers in the process keep theirs."""
    current = eio._async.get("websocket")
    if not (isinstance(current, type) and issubclass(current, DirectWebSocket)):
        eio._async = {**eio._async, "websocket": DirectWebSocket}
