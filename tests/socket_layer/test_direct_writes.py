"""DirectWebSocket's direct writes: the frames of one event-loop iteration leave in one
transport write, in order, and nothing overtakes them (a send through the server, a
close); an abort drops them; the backlog counts them meanwhile."""

from __future__ import annotations

import asyncio
from typing import Any

from wsproto.connection import ConnectionState

from socket_layer.direct_websocket import DirectWebSocket


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> Any:
        return None

    def abort(self) -> None:
        self.closing = True


class FakeStream:
    closed = False

    class connection:  # noqa: N801 - wsproto's attribute name
        state = ConnectionState.OPEN


def websocket() -> tuple[DirectWebSocket, FakeTransport, list[Any]]:
    async def handler(ws: Any) -> None:
        return None

    ws = DirectWebSocket(handler, server=None)
    transport = FakeTransport()
    sent: list[Any] = []

    async def asgi_send(message: dict[str, Any]) -> None:
        # what reaches the server's own path, with what the transport had by then
        sent.append((message.get("type"), list(transport.writes)))

    ws.asgi_send = asgi_send
    ws._raw = (FakeStream(), transport, asyncio.Lock())
    return ws, transport, sent


async def test_frames_of_one_iteration_leave_in_one_write_in_order() -> None:
    ws, transport, _ = websocket()
    assert ws.try_write_frame(b"a") and ws.try_write_frame(b"b") and ws.try_write_frame(b"c")
    assert transport.writes == []  # not yet: the iteration is not over
    assert ws.unread_bytes() == 3
    await asyncio.sleep(0)
    assert transport.writes == [b"abc"]
    assert ws.unread_bytes() == 0
    assert ws.try_write_frame(b"d")
    await asyncio.sleep(0)
    assert transport.writes == [b"abc", b"d"]


async def test_a_send_through_the_server_or_a_close_does_not_overtake_corked_frames() -> None:
    ws, transport, sent = websocket()
    ws.try_write_frame(b"first")
    await ws.send_text("second")
    assert sent == [("websocket.send", [b"first"])]
    ws.try_write_frame(b"third")
    await ws.close()
    assert sent[-1] == ("websocket.close", [b"first", b"third"])


async def test_an_abort_drops_corked_frames() -> None:
    ws, transport, _ = websocket()
    ws.try_write_frame(b"never")
    ws.abort()
    await asyncio.sleep(0)
    assert transport.writes == [] and ws.unread_bytes() == 0
