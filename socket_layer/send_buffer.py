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


class SendQueue(asyncio.Queue[Any]):
    """An engine.io socket's packet queue that knows the bytes in it and refuses, by
    closing the socket, a packet that finds more than ``limit`` bytes waiting for the
    client (see the module docstring).  ``None``, engine.io's "closed" marker, always
    passes."""

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

    def put_nowait(self, item: Any) -> None:
        if item is None or self.admit():
            super().put_nowait(item)

    def _put(self, item: Any) -> None:
        super()._put(item)
        if item is not None:
            self.queued_bytes += packet_bytes(item)

    def _get(self) -> Any:
        item = super()._get()
        if item is not None:
            self.queued_bytes -= packet_bytes(item)
        return item

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


def bound_send_buffers(eio: Any, limit: int) -> None:
    """Give every socket ``eio`` (an engineio.AsyncServer) creates from now on a
    :class:`SendQueue` bounded at ``limit`` bytes."""

    def create_queue(*args: Any, **kwargs: Any) -> SendQueue:
        return SendQueue(eio, limit)

    eio.create_queue = create_queue
