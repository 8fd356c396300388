"""A client that goes away while its connect handler is still running (slow DB, page
reload during a reconnect storm) must not keep a connection slot: python-socketio does
not call the disconnect handler for a socket that never finished connecting, so the
handler itself has to notice.  In-process server so the handler can be held mid-way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import socket_layer.server as server_module
from quart_app.core.config import Config
from socket_layer.protocol import SOCKETIO_PATH
from tests.socket_layer.conftest import InProcess, serve_in_process, token_for
from tests.support.builders import make_user
from tests.support.sio_client import FastCloseClient
from tests.support.waiting import wait_until


@pytest.fixture
async def in_process(db: str, make_config: Callable[..., Config]) -> AsyncIterator[InProcess]:
    async with serve_in_process(make_config(db, ws_ping_interval=1, ws_ping_timeout=1)) as server:
        yield server


async def test_client_gone_during_connect_releases_its_slot(
    in_process: InProcess, transports: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    entered = asyncio.Event()
    gate = asyncio.Event()
    real = server_module.build_snapshot

    async def held_snapshot(user_id: Any) -> dict[str, Any]:
        entered.set()
        await gate.wait()
        return await real(user_id)

    monkeypatch.setattr(server_module, "build_snapshot", held_snapshot)
    user = await make_user()
    uid = str(user.id)
    client = FastCloseClient(reconnection=False, logger=False, engineio_logger=False)
    connecting = asyncio.create_task(
        client.connect(
            in_process.url,
            auth={"token": token_for(user)},
            transports=transports,
            socketio_path=SOCKETIO_PATH,
            wait_timeout=10,
        )
    )
    try:
        async with asyncio.timeout(10):
            await entered.wait()
        assert in_process.layer.registry.count_local(uid) == 1
        await client.disconnect()  # the page went away mid-connect
        connecting.cancel()
        with contextlib.suppress(BaseException):
            await connecting
        assert await wait_until(lambda: not in_process.sio.eio.sockets, 10), (
            "the server never saw the client go"
        )
    finally:
        gate.set()
    layer = in_process.layer
    released = await wait_until(
        lambda: layer.registry.count_local(uid) == 0 and uid not in layer.users.values(), 5
    )
    assert released, f"slot kept: local={layer.registry.count_local(uid)} users={layer.users}"
