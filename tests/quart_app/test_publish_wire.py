"""The API publishes on the same wire as the web processes' client manager
(``SOCKETIO_MANAGER``), as the worker does: with ``stock`` the first ``pending`` event
of an import must reach python-socketio's one channel, or no client ever sees it live."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis

from socket_layer.protocol import REDIS_CHANNEL, room_channel, user_room
from tests.quart_app.conftest import ApiFactory
from tests.support.builders import make_list, make_user


@pytest.mark.parametrize("manager", ["stock", "user-channels"])
async def test_import_publishes_pending_on_the_configured_wire(
    pg_database_url: str, api_factory: ApiFactory, quart_redis_url: str, manager: str
) -> None:
    async with api_factory(pg_database_url, socketio_manager=manager) as api:
        user = await make_user()
        vlist = await make_list(user)
        channel = REDIS_CHANNEL if manager == "stock" else room_channel(user_room(user.id))
        sub = aioredis.Redis.from_url(quart_redis_url)
        pubsub = sub.pubsub()
        try:
            await pubsub.psubscribe(f"{REDIS_CHANNEL}*")
            await pubsub.get_message(timeout=1)  # the psubscribe confirmation
            body = await api.import_videos(
                user, vlist.id, {"videos": [{"url": "https://example.com/a.mp4", "title": "A"}]}
            )
            async with asyncio.timeout(5):
                while True:
                    message = await pubsub.get_message(timeout=1)
                    if message is not None and message["type"] == "pmessage":
                        break
            assert message["channel"].decode() == channel
            assert body["job_id"] in message["data"].decode()
            if manager == "stock":  # python-socketio's own pub/sub message
                assert json.loads(message["data"])["method"] == "emit"
        finally:
            await pubsub.aclose()
            await sub.aclose()
