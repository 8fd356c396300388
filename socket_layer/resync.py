"""``resync``: what a web process tells its sockets after its Redis listener lost events
(DESIGN section 4, rule 5).

Anything published while a process was not subscribed is gone, so every client
manager calls :func:`emit_resync` after it re-subscribed following a failure, and
every local socket then asks (``resume``) for what it missed.
"""

from __future__ import annotations

import socketio

from quart_app.core import metrics
from socket_layer.protocol import EVENT_RESYNC, NAMESPACE


async def emit_resync(server: socketio.AsyncServer, reason: str) -> None:
    """Send ``resync`` to every socket connected to THIS process (never through Redis)."""
    metrics.resyncs_sent(len(getattr(server.eio, "sockets", ())))
    await server.emit(EVENT_RESYNC, {"reason": reason}, namespace=NAMESPACE, ignore_queue=True)


async def emit_resync_to_rooms(server: socketio.AsyncServer, rooms: list[str], reason: str) -> int:
    """Send ``resync`` to the sockets of THIS process in ``rooms`` only (a shard of the
    fan-out moved: the other rooms lost nothing); returns how many sockets it went to."""
    members = server.manager.rooms.get(NAMESPACE, {})
    count = sum(len(members.get(room, ())) for room in rooms)
    metrics.resyncs_sent(count)
    for room in rooms:
        await server.emit(
            EVENT_RESYNC, {"reason": reason}, namespace=NAMESPACE, to=room, ignore_queue=True
        )
    return count
