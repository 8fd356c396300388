"""The websocket writer that reaches under hypercorn to its TCP transport.

engine.io's ASGI websocket wrapper, replaced by :class:`DirectWebSocket`, which its
socket can reach (``socket._rt_ws``) so the client manager writes a pre-encoded
message straight into the TCP transport when nothing else is in flight on that
connection, or else through the ASGI ``send`` without engine.io's queue.

This is the one module of the socket layer that imports hypercorn (the forbidden
contract in setup.cfg names it as its only exception): it must recognise hypercorn's
HTTP/1.1 websocket stream to find the transport under it.  Under any other server the
writer falls back to the ASGI path.
"""

from __future__ import annotations

from typing import Any

from engineio.async_drivers import asgi as eio_asgi
from wsproto.connection import ConnectionState

_WS_OPEN = ConnectionState.OPEN


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
