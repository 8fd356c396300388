"""REDIS_PUBSUB_POOL_SIZE reaches the client manager's Redis pool, for both managers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from quart_app.core.config import Config
from socket_layer.server import create_sio


@pytest.mark.parametrize("kind", ["user-channels", "stock"])
def test_pool_size_setting_caps_the_managers_redis_pool(
    make_config: Callable[..., Config], kind: str
) -> None:
    config = make_config(
        "sqlite:///unused.sqlite3", socketio_manager=kind, redis_pubsub_pool_size=3
    )
    sio = create_sio(config)
    assert sio.manager.redis_options["max_connections"] == 3
