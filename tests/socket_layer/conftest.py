"""Fixtures for the Socket.IO tests: transports, tokens, the ProgressEmitter (``db``,
Tortoise open on the session PostgreSQL database, comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis import asyncio as aioredis

from models.entities import User
from quart_app.core.tokens import issue_token
from socket_layer.emitter import ProgressEmitter
from tests.conftest import TEST_SECRET
from tests.support.live import LiveServer
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
