"""One ASGI application per web process, for its role (``SERVE_ROLE`` / ``--role``):

* ``all``: Socket.IO at ``/api/ws/progress`` in front of the Quart app (REST, the web
  app, metrics);
* ``sockets``: Socket.IO, plus ``/api/health``, ``/api/ready`` and ``/metrics`` from the
  Quart app (the database is still opened: connects check the user and send a snapshot);
* ``api``: the Quart app alone (REST, the web app, metrics); the Socket.IO path answers
  404 JSON.  It still publishes events (cancel, delete) through the emitter: that goes
  through Redis, so the sockets servers deliver them.

Anything a role does not serve answers ``404 {"code": "not_found", ...}`` (a refused
websocket handshake too), so a wrong nginx route shows at once.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import socketio

from quart_app.app import create_app
from quart_app.core.config import Config
from socket_layer.protocol import SOCKETIO_PATH
from socket_layer.server import create_sio, layer_of

Role = Literal["all", "sockets", "api"]
ROLES: tuple[Role, ...] = ("all", "sockets", "api")
#: what a ``sockets`` process answers besides Socket.IO (probes and scrapes)
SOCKETS_ROLE_PATHS = frozenset({"/api/health", "/api/ready", "/metrics"})

Scope = dict[str, Any]
Receive = Any
Send = Any


def _is_socketio_path(path: str) -> bool:
    return path == SOCKETIO_PATH or path.startswith(SOCKETIO_PATH + "/")


class RoleFilter:
    """Passes to ``app`` only what ``allowed(path)`` accepts; the rest gets a JSON 404.
    Lifespan events always pass (the Quart app opens the database in them)."""

    def __init__(self, app: Any, role: Role, allowed: Any) -> None:
        self.app = app
        self.role = role
        self.allowed = allowed
        self.body = json.dumps(
            {"code": "not_found", "message": f"not served by this process (role {role})"}
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or self.allowed(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(self.body)),
        ]
        if scope["type"] == "websocket":
            # the ASGI websocket denial response (hypercorn supports it): a real 404
            await send({"type": "websocket.http.response.start", "status": 404, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": self.body})
            return
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def create_asgi_app(
    config: Config | None = None,
    *,
    client_manager: socketio.AsyncManager | None = None,
    role: Role | None = None,
) -> Any:
    """The ASGI app of one web process for ``role`` (default ``config.serve_role``).

    For ``all`` and ``sockets``: ``socketio.ASGIApp(sio, other_asgi_app=quart_app)``.
    The ASGI lifespan is forwarded to Quart (socketio.ASGIApp does that when it has no
    on_startup/on_shutdown of its own), so Quart's ``before_serving`` opens the database
    and then the socket layer starts (Redis listener subscribed, registry heartbeat);
    ``after_serving`` closes them again.  Raises ValueError without ``REDIS_URL`` (any
    role: the API enqueues jobs and publishes events through Redis too) or for an
    unknown role.
    """
    config = config or Config.from_env()
    role = role or config.serve_role
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    app = create_app(config)
    if role == "api":
        if not config.redis_url:
            raise ValueError("REDIS_URL is required for the api role")
        return RoleFilter(app, role, lambda path: not _is_socketio_path(path))
    sio = create_sio(config, client_manager=client_manager)
    layer = layer_of(sio)
    # registered after create_app's own hooks, so the DB is open before sockets arrive
    app.before_serving(layer.start)
    app.after_serving(layer.stop)
    app.extensions["socketio"] = sio
    other: Any = app if role == "all" else RoleFilter(app, role, SOCKETS_ROLE_PATHS.__contains__)
    return socketio.ASGIApp(sio, other_asgi_app=other, socketio_path=SOCKETIO_PATH.lstrip("/"))


async def disconnect_sockets(asgi: Any) -> None:
    """Close every Socket.IO connection of an app from :func:`create_asgi_app` (none
    for the ``api`` role), so a shutdown does not wait for them."""
    server = getattr(asgi, "engineio_server", None)
    if server is not None:
        await layer_of(server).disconnect_all()
