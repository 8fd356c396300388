"""One ASGI application per web process: Socket.IO at ``/api/ws/progress`` in front of
the Quart app (REST, static web, metrics)."""

from __future__ import annotations

import socketio

from quart_app.app import create_app
from quart_app.core.config import Config
from socket_layer.protocol import SOCKETIO_PATH
from socket_layer.server import create_sio, layer_of


def create_asgi_app(
    config: Config | None = None, *, client_manager: socketio.AsyncManager | None = None
) -> socketio.ASGIApp:
    """``socketio.ASGIApp(sio, other_asgi_app=quart_app)``.

    The ASGI lifespan is forwarded to Quart (socketio.ASGIApp does that when it has no
    on_startup/on_shutdown of its own), so Quart's ``before_serving`` opens the database
    and then the socket layer starts (Redis listener subscribed, registry heartbeat);
    ``after_serving`` closes them again.  Raises ValueError without ``REDIS_URL``.
    """
    config = config or Config.from_env()
    app = create_app(config)
    sio = create_sio(config, client_manager=client_manager)
    layer = layer_of(sio)
    # registered after create_app's own hooks, so the DB is open before sockets arrive
    app.before_serving(layer.start)
    app.after_serving(layer.stop)
    app.extensions["socketio"] = sio
    return socketio.ASGIApp(sio, other_asgi_app=app, socketio_path=SOCKETIO_PATH.lstrip("/"))
