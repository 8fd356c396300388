"""A client that goes away while its connect handler is still running (slow DB, page
reload during a reconnect storm) must not keep a connection slot: python-socketio does
not call the disconnect handler for a socket that never finished connecting, so the
handler itself has to notice.  In-process server so the handler can be held mid-way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import socketio
from hypercorn.asyncio import serve
from hypercorn.config import Config as HyperConfig

import socket_layer.server as server_module
from quart_app.core.config import Config
from socket_layer.protocol import SOCKETIO_PATH
from socket_layer.server import SocketLayer, create_sio, layer_of
from tests.socket_layer.conftest import token_for
from tests.support.builders import make_user
from tests.support.services import free_port, wait_for_port
from tests.support.sio_client import FastCloseClient
from tests.support.waiting import wait_until


@dataclass
class InProcess:
    url: str
    sio: socketio.AsyncServer
    layer: SocketLayer


@pytest.fixture
async def in_process(db: str, make_config: Callable[..., Config]) -> AsyncIterator[InProcess]:
    config = make_config(db, ws_ping_interval=1, ws_ping_timeout=1)
    sio = create_sio(config)
    layer = layer_of(sio)
    app = socketio.ASGIApp(sio, socketio_path=SOCKETIO_PATH.lstrip("/"))
    port = free_port()
    hyper = HyperConfig()
    hyper.bind = [f"127.0.0.1:{port}"]
    hyper.accesslog = None
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, hyper, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    await layer.start()
    await asyncio.to_thread(wait_for_port, port)
    try:
        yield InProcess(f"http://127.0.0.1:{port}", sio, layer)
    finally:
        await layer.stop()
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


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
