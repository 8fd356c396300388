"""Socket.IO accepts the same browser origins as the REST API (CORS_ORIGINS plus the
app's own origin, quart_app.core.origins.origin_allowed): with CORS_ORIGINS set, the
dashboard served by reeltrack itself must still be able to open its socket."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from socket_layer.protocol import SOCKETIO_PATH
from tests.support.live import LiveServer

LISTED = "https://app.example"


def eio_url(server: LiveServer, transport: str) -> str:
    ws = server.url.replace("http://", "ws://") if transport == "websocket" else server.url
    return f"{ws}{SOCKETIO_PATH}/?EIO=4&transport={transport}"


async def opens(
    http: aiohttp.ClientSession, url: str, transport: str, headers: dict[str, str]
) -> bool:
    """Whether the engine.io handshake of ``transport`` succeeds with ``headers``."""
    if transport == "websocket":
        try:
            async with http.ws_connect(url, headers=headers) as ws:
                return str((await ws.receive(timeout=5)).data).startswith("0")
        except aiohttp.WSServerHandshakeError:
            return False
    async with http.get(url, headers=headers) as response:
        return response.status == 200


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_socket_origins_match_the_rest_api(
    start_live_server: Callable[..., Awaitable[LiveServer]], transport: str
) -> None:
    server = await start_live_server(cors_origins=(LISTED,))
    url = eio_url(server, transport)
    async with aiohttp.ClientSession() as http:
        assert await opens(http, url, transport, {}), "no Origin (not a browser) is fine"
        for origin, allowed in (
            (LISTED, True),
            (server.url, True),
            ("https://evil.example", False),
        ):
            got = await opens(http, url, transport, {"Origin": origin})
            assert got is allowed, (origin, got)
            # the REST API answers the same origin the same way
            async with http.get(f"{server.url}/api/health", headers={"Origin": origin}) as r:
                assert (r.status != 403) is allowed, (origin, r.status)
