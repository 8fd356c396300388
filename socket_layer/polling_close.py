"""A client's own CLOSE over long-polling answers the GET it left pending, at once.

python-engineio closes such a socket as aborted: it queues no packet, so the GET the
client left waiting is answered only when the poll times out (ping interval + ping
timeout: 45 s with the defaults), holding a server connection that long, and a web
process stopping meanwhile sits out its graceful timeout for that request.  Node's
engine.io answers the pending GET with a CLOSE packet; :func:`install` makes
python-engineio's sockets do the same.
"""

from __future__ import annotations

import contextlib
from typing import Any

from engineio import async_socket, packet

_original_close = async_socket.AsyncSocket.close


async def _close(self: Any, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
    first = not self.closed and not self.closing
    await _original_close(self, wait=wait, abort=abort, reason=reason)
    # only the client's own CLOSE on long-polling: a server-side abort wakes the queue
    # itself (input_guards.abort_session), and no GET can wait on a websocket's
    if first and reason == self.server.reason.CLIENT_DISCONNECT and not self.upgraded:
        with contextlib.suppress(Exception):  # a queue that refuses: nothing waits on it
            self.queue.put_nowait(packet.Packet(packet.CLOSE))


def install() -> None:
    """Answer a long-polling client's CLOSE on its pending GET (idempotent)."""
    async_socket.AsyncSocket.close = _close  # type: ignore[method-assign]
