"""python-engineio's websocket transport loop without its two tasks per socket.

python-engineio runs, for every websocket, a writer task (waiting on the socket's queue
for as long as the connection lives) and, for every frame it receives, a new task plus
a ``wait_for`` timer around the read.  At 10,000 idle sockets that is 10,000 parked
tasks with their coroutines and futures (about a fifth of a socket's memory) and a
task, a timer and three futures per PONG (most of the idle CPU after the ping itself).

:func:`install_lean_websockets` replaces ``AsyncSocket._websocket_handler`` for
sockets whose queue is a :class:`~socket_layer.send_buffer.SendQueue` and whose
websocket is a :class:`~socket_layer.direct_websocket.DirectWebSocket`:

- the read loop awaits the websocket directly in the connection's own task; the
  liveness timeout it used to wrap each read in is the ping timeout, which
  :class:`~socket_layer.ping_wheel.PingWheel` checks for every socket it pings;
- there is no writer task: the queue writes each packet straight to the transport, or
  queues it for a flush task that lives only while packets wait (:meth:`SendQueue.attach`).

The wire behaviour, the upgrade from long-polling included, is python-engineio's.
"""

from __future__ import annotations

import logging
from typing import Any

from engineio import async_socket, exceptions, packet
from engineio.async_drivers import asgi as eio_asgi

from socket_layer.direct_websocket import DirectWebSocket
from socket_layer.input_guards import client_packet
from socket_layer.send_buffer import SendQueue
from socket_layer.stopping import cancel_and_wait

log = logging.getLogger(__name__)

_original_handler = async_socket.AsyncSocket._websocket_handler


async def _upgraded(sock: Any, ws: DirectWebSocket) -> bool:
    """The probe exchange of an upgrade from long-polling (python-engineio's): True
    when the socket is now on the websocket."""
    sock.upgrading = True  # hold packet sends during the upgrade
    try:
        try:
            probe = packet.Packet(encoded_packet=await ws.wait())
        except Exception:  # closed, or not a packet
            return False
        if probe.packet_type != packet.PING or probe.data != "probe":
            log.info("%s: failed websocket upgrade, no PING probe", sock.sid)
            return False
        await ws.send(packet.Packet(packet.PONG, data="probe").encode())
        await sock.queue.put(packet.Packet(packet.NOOP))  # ends the pending long-poll
        try:
            upgrade = packet.Packet(encoded_packet=await ws.wait())
        except Exception:
            return False
        if upgrade.packet_type != packet.UPGRADE:
            log.info("%s: failed websocket upgrade, no UPGRADE packet", sock.sid)
            sock.upgraded = False
            return False
        sock.upgraded = True
        return True
    finally:
        sock.upgrading = False


async def lean_websocket_handler(self: Any, ws: Any) -> None:
    """The websocket transport of engine.io socket ``self`` (see the module docstring);
    python-engineio's own for sockets it does not apply to."""
    queue = self.queue
    if not (isinstance(queue, SendQueue) and isinstance(ws, DirectWebSocket)):
        await _original_handler(self, ws)
        return
    if self.connected:
        if not await _upgraded(self, ws):
            return
    else:
        self.connected = True
        self.upgraded = True
    limit = self.server.max_http_buffer_size
    queue.attach(ws)
    ws.release_handshake()
    ws.slim_idle_state()
    try:
        while True:
            try:
                # the driver's own read: each frame is decoded once, here (the input
                # guard's wrapper would decode it a second time)
                data = await eio_asgi.WebSocket.wait(ws)
            except Exception:  # the connection ended (an OSError from the driver)
                break
            if data is None or len(data) > limit:
                break
            pkt = client_packet(data)
            if pkt is None:  # garbage: closed, as the input guard does
                break
            try:
                await self.receive(pkt)
            except exceptions.UnknownPacketError:
                pass
            except exceptions.SocketIsClosedError:
                break
            except Exception:  # as python-engineio: log it, keep the connection
                log.exception("engine.io receive error")
    finally:
        await cancel_and_wait(queue.detach())
    await ws.close()
    await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)


def install_lean_websockets() -> None:
    """Use :func:`lean_websocket_handler` for every engine.io socket of this process
    (it falls back to python-engineio's own where it does not apply)."""
    async_socket.AsyncSocket._websocket_handler = lean_websocket_handler  # type: ignore[method-assign]
