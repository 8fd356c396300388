"""Fixtures for the Socket.IO tests: transports, tokens, the ProgressEmitter (``db``,
Tortoise open on the session PostgreSQL database, comes from tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import socketio
from hypercorn.asyncio import serve
from hypercorn.config import Config as HyperConfig
from redis import asyncio as aioredis

from models.entities import User
from quart_app.core.config import Config
from quart_app.core.tokens import issue_token
from socket_layer.emitter import ProgressEmitter
from socket_layer.protocol import SOCKETIO_PATH
from socket_layer.server import SocketLayer, create_sio, layer_of
from tests.conftest import TEST_SECRET
from tests.support.live import LiveServer
from tests.support.services import free_port, wait_for_port
from tests.support.sio_client import TRANSPORT_IDS, TRANSPORTS


@pytest.fixture(params=TRANSPORTS, ids=TRANSPORT_IDS)
def transports(request: pytest.FixtureRequest) -> list[str]:
    """Every socket test runs once over websocket and once over long-polling only."""
    value: list[str] = request.param
    return value


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the session Redis (the one the session web process uses)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def emitter(live_server: LiveServer) -> AsyncIterator[ProgressEmitter]:
    """The emitter a worker would use for the session web process (same wire)."""
    em = ProgressEmitter.for_config(live_server.config)
    try:
        yield em
    finally:
        await em.close()


def token_for(user: User) -> str:
    return issue_token(TEST_SECRET, user.id)


@dataclass
class InProcess:
    """A Socket.IO server under hypercorn in the test's own event loop."""

    url: str
    sio: socketio.AsyncServer
    layer: SocketLayer


@contextlib.asynccontextmanager
async def serve_in_process(config: Config) -> AsyncIterator[InProcess]:
    """The Socket.IO server ``create_sio(config)`` builds, served by hypercorn in this
    loop (so a test can look at its sockets and tasks), stopped on exit."""
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
