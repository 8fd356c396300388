"""A bounded send buffer per engine.io socket: what may wait for a client that does not read.

hypercorn has no write timeout and python-engineio's per-socket queue no bound, so a
client that stops reading (a websocket whose TCP window stays shut, a long-polling
client that stops polling) used to keep every message published for it in the web
process.  :func:`bound_send_buffers` gives every socket a :class:`SendQueue` (through
``eio.create_queue``), which counts the bytes waiting in it.  A websocket's writer
(:class:`socket_layer.direct_websocket.DirectWebSocket`) registers itself with the
queue and adds what it has handed to hypercorn that has not returned plus the TCP
transport's buffer.  Together that is the socket's backlog.

Every message for a socket passes :meth:`SendQueue.admit` before it is queued or
written (the queue's ``put``, the writer's ``send_text``; the manager's direct frame
write happens only when the backlog is empty).  A message that finds the backlog above
the bound is not sent: the socket is closed instead, at once (its TCP transport
aborted, so every send held in hypercorn's drain ends; its queue emptied; its engine.io
session ended through the normal disconnect path), and counted in
``reeltrack_socketio_slow_consumers_closed_total{transport}``.  The client resumes from
the history when it reconnects.

The check comes before a message is added, so one message larger than the bound still
reaches a client that keeps up (a large ``resume`` answer): what is held for one socket
is at most the bound plus one message (a message handed to hypercorn and already in the
transport's buffer counts twice until hypercorn's drain returns), plus the kernel's
socket send buffer, which the kernel bounds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from quart_app.core import metrics
from socket_layer.input_guards import abort_session
from socket_layer.lean_queue import LeanQueue

log = logging.getLogger(__name__)

#: ``reeltrack_socketio_slow_consumers_closed_total`` transports
TRANSPORT_WEBSOCKET = "websocket"
TRANSPORT_POLLING = "polling"

#: session aborts in progress, held so they are not collected
_CLOSING: set[asyncio.Future[Any]] = set()


class Writer(Protocol):
    """A websocket writer's side of the backlog."""

    def unread_bytes(self) -> int:
        """Bytes handed to the server that have not reached the kernel yet."""

    def abort(self) -> None:
        """Drop the connection now, unsent bytes included."""


def packet_bytes(pkt: Any) -> int:
    """The size of an engine.io packet on the wire (text characters are bytes here:
    python-socketio and the emitter encode JSON as ASCII); control packets count 1."""
    encoded = getattr(pkt, "encode_cache", None)
    if encoded:
        return len(encoded)
    data = getattr(pkt, "data", None)
    if isinstance(data, str | bytes | bytearray):
        return len(data) + 1
    return 1


class Sink(Protocol):
    """Where a websocket socket's queue writes (:class:`DirectWebSocket`)."""

    def try_write_frame(self, frame: bytes) -> bool:
        """Write one complete frame now, or False when something is in flight."""

    async def send(self, message: Any) -> None:
        """Hand one encoded packet to the server (waits while the client does not read)."""

    async def close(self) -> None:
        """Close the websocket."""


class SendQueue(LeanQueue):
    """An engine.io socket's packet queue that knows the bytes in it and refuses, by
    closing the socket, a packet that finds more than ``limit`` bytes waiting for the
    client (see the module docstring).  ``None``, engine.io's "closed" marker, always
    passes.

    It is what python-engineio expects of ``asyncio.Queue`` (a :class:`LeanQueue`: no
    deques or event kept while idle).  While a websocket is attached (:meth:`attach`,
    by the lean websocket handler) there is no writer task: a packet put when nothing
    waits before it is written to the transport at once (:meth:`Sink.try_write_frame`);
    otherwise it waits here and a short-lived flush task hands the queued packets to the
    server in order, then ends.  ``None`` closes the websocket after what is queued
    before it.
    """

    __slots__ = ("eio", "limit", "queued_bytes", "writer", "overflowed", "_sink", "_flusher")

    def __init__(self, eio: Any, limit: int) -> None:
        super().__init__()
        self.eio = eio
        self.limit = limit
        #: bytes of the packets in the queue
        self.queued_bytes = 0
        #: the socket's websocket writer while it has one
        self.writer: Writer | None = None
        #: the bound was passed: the socket is being closed, nothing more is queued
        self.overflowed = False
        self._sink: Sink | None = None
        self._flusher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ the bound

    def backlog(self) -> int:
        """Bytes waiting for the client: queued, plus the websocket writer's share."""
        writer = self.writer
        return self.queued_bytes + (writer.unread_bytes() if writer is not None else 0)

    def admit(self) -> bool:
        """May one more message be sent to this socket?  When the backlog is above the
        bound, no: the socket is closed (once; counted) and False returned, as it is
        for every later message."""
        if self.overflowed:
            return False
        backlog = self.backlog()
        if backlog <= self.limit:
            return True
        self._overflow(backlog)
        return False

    # ------------------------------------------------------------ the queue

    def put_nowait(self, item: Any) -> None:
        if item is not None and not self.admit():
            return
        sink = self._sink
        if sink is None:
            super().put_nowait(item)
            return
        if self._flusher is None:
            if item is not None and not self._items and _write_now(sink, item):
                return
            self._append(item)
            self._start_flush()
            return
        self._append(item)  # behind the packets being flushed

    def _append(self, item: Any) -> None:
        super()._append(item)
        if item is not None:
            self.queued_bytes += packet_bytes(item)

    def _taken(self, item: Any) -> None:
        if item is not None:
            self.queued_bytes -= packet_bytes(item)

    # ------------------------------------------------------------ the websocket sink

    def attach(self, sink: Sink) -> None:
        """Write to ``sink`` from now on (no writer task); what is queued goes first,
        straight to the transport while it takes it (the OPEN packet of a new socket:
        no flush task per connect), the rest through a flush."""
        self._sink = sink
        if self._flusher is not None:
            return
        items = self._items
        while items and items[0] is not None and _write_now(sink, items[0]):
            self.get_nowait()
            self.task_done()
            items = self._items
        if self._items:
            self._start_flush()

    def detach(self) -> asyncio.Task[None] | None:
        """Stop writing to the sink (its connection ended); the flush in progress, if
        any, is returned so the caller can wait for it."""
        self._sink = None
        return self._flusher

    def _start_flush(self) -> None:
        self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Hand the queued packets to the sink in order; ``None`` closes it.  Ends when
        the queue is empty (or the sink detached: a new connection flushes the rest)."""
        try:
            while self._items and self._sink is not None:
                sink = self._sink
                item = self.get_nowait()
                try:
                    if item is None:
                        self._sink = None
                        await sink.close()
                        return
                    await sink.send(item.encode())
                except Exception:  # the connection is gone: its handler ends the socket
                    log.debug("websocket send failed", exc_info=True)
                    self._sink = None
                    return
                finally:
                    self.task_done()
        finally:
            self._flusher = None

    # ------------------------------------------------------------ overflow

    def _overflow(self, backlog: int) -> None:
        self.overflowed = True
        writer = self.writer
        transport = TRANSPORT_POLLING if writer is None else TRANSPORT_WEBSOCKET
        metrics.slow_consumer_closed(transport)
        log.info("closing a %s socket that stopped reading (%d bytes waiting)", transport, backlog)
        while not self.empty():  # nothing queued will be sent: free it now
            self.get_nowait()
            self.task_done()
        if writer is not None:
            writer.abort()
        # found once per closed socket (the queue is created before it knows its socket)
        sid = next((sid for sid, s in self.eio.sockets.items() if s.queue is self), None)
        if sid is not None:
            task = asyncio.ensure_future(abort_session(self.eio, sid))
            _CLOSING.add(task)
            task.add_done_callback(_CLOSING.discard)


def _write_now(sink: Sink, item: Any) -> bool:
    """Write a text packet straight to the transport when the sink allows it."""
    encoded = item.encode()
    if not isinstance(encoded, str):
        return False
    return sink.try_write_frame(text_frame(encoded))


def text_frame(text: str) -> bytes:
    """A final, unmasked, uncompressed websocket text frame (server to client)."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def bound_send_buffers(eio: Any, limit: int) -> None:
    """Give every socket ``eio`` (an engineio.AsyncServer) creates from now on a
    :class:`SendQueue` bounded at ``limit`` bytes."""

    def create_queue(*args: Any, **kwargs: Any) -> SendQueue:
        return SendQueue(eio, limit)

    eio.create_queue = create_queue
