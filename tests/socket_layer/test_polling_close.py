"""A long-polling client that sends CLOSE gets the GET it left pending answered with a
CLOSE packet, as Node's engine.io answers it, instead of a 400 once the poll times out
(ping interval + ping timeout: a server connection held that long, and a web process
stopping meanwhile sitting out its graceful timeout for the request)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp

from quart_app.core.config import Config
from socket_layer.protocol import SOCKETIO_PATH
from tests.socket_layer.conftest import serve_in_process
from tests.support.waiting import wait_for


async def test_a_clients_close_answers_its_pending_poll_with_close(
    db: str, make_config: Callable[..., Config]
) -> None:
    # a poll timeout (10 s + 10 s) longer than the test waits for the answer
    config = make_config(db, ws_ping_interval=10, ws_ping_timeout=10)
    async with serve_in_process(config) as server, aiohttp.ClientSession() as http:
        base = f"{server.url}{SOCKETIO_PATH}/?EIO=4&transport=polling"
        async with http.get(base) as r:
            assert r.status == 200
            sid = json.loads((await r.text())[1:])["sid"]
        sock = server.sio.eio.sockets[sid]

        async def pending_get() -> tuple[int, str]:
            async with http.get(f"{base}&sid={sid}") as r:
                return r.status, await r.text()

        poll = asyncio.ensure_future(pending_get())
        await wait_for(lambda: bool(sock.queue._getters), 5, "the GET parked on the queue")
        async with http.post(f"{base}&sid={sid}", data="1") as r:  # the client's CLOSE
            assert r.status == 200
        assert await asyncio.wait_for(poll, 5) == (200, "1")
        assert sid not in server.sio.eio.sockets
