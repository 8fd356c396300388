"""The test client's polling transport survives a long-poll response cut mid-body,
and its close() leaves no engine.io loop behind.

A web process SIGKILLed between writing the response headers and the body of a pending
long-poll makes nginx close the client connection mid-response.  python-engineio's own
client then stops reading without reporting a disconnect, so it never reconnects; the
topology and fault tests depend on ours reporting it (as socket.io-client does).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import engineio
import pytest
from aiohttp import web

from quart_app.core.tokens import issue_token
from tests.conftest import TEST_SECRET
from tests.support.builders import make_user
from tests.support.live import LiveServer
from tests.support.sio_client import (
    TRANSPORT_IDS,
    TRANSPORTS,
    _PollingEngineIOClient,
    connect_client,
)

OPEN = "0" + json.dumps(
    {"sid": "s1", "upgrades": [], "pingInterval": 25000, "pingTimeout": 20000, "maxPayload": 10**6}
)


@pytest.fixture
async def truncating_server() -> AsyncIterator[str]:
    """An engine.io endpoint: the handshake works, the first long-poll is cut mid-body."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if "sid" not in request.query:
            return web.Response(text=OPEN, content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Length": "100"})
        response.content_type = "text/plain"
        await response.prepare(request)
        await response.write(b'4"hel')  # 5 of the 100 promised bytes, then the crash
        assert request.transport is not None
        request.transport.close()
        return response

    app = web.Application()
    app.router.add_route("*", "/engine.io/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_truncated_long_poll_is_reported_as_a_disconnect(truncating_server: str) -> None:
    client = _PollingEngineIOClient()
    disconnected = asyncio.Event()
    client.on("disconnect", lambda reason=None: disconnected.set())
    await client.connect(truncating_server, transports=["polling"])
    try:
        await asyncio.wait_for(disconnected.wait(), 5)
    finally:
        await client.disconnect(abort=True)


async def test_stock_engineio_client_misses_the_truncated_long_poll(
    truncating_server: str,
) -> None:
    """The negative control: python-engineio's read loop dies of the cut unreported."""
    client = engineio.AsyncClient()
    disconnected = asyncio.Event()
    client.on("disconnect", lambda reason=None: disconnected.set())
    await client.connect(truncating_server, transports=["polling"])
    read_loop = client.read_loop_task
    try:
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(read_loop, 5)
        assert not disconnected.is_set()
        assert client.state == "connected"  # it still believes it is connected
    finally:
        await client.disconnect(abort=True)


@pytest.mark.parametrize("transports", TRANSPORTS, ids=TRANSPORT_IDS)
async def test_a_closed_client_leaves_no_engineio_loop_running(
    live_server: LiveServer, db: str, transports: list[str]
) -> None:
    """close() ends the engine.io read and write loops: a write loop left waiting on
    its queue logs "packet queue is empty, aborting" 7 s later into another test (it
    failed test_direct_websocket's no-errors check in CI)."""
    user = await make_user()
    client = await connect_client(
        live_server.url, token=issue_token(TEST_SECRET, user.id), transports=transports
    )
    await client.wait_for("snapshot")
    eio = client.sio.eio
    loops = [eio.read_loop_task, eio.write_loop_task]
    assert all(t is not None and not t.done() for t in loops)
    await client.close()
    assert all(t.done() for t in loops), "an engine.io loop outlived close()"
