"""Who may use an engine.io session, and how many sessions may wait for a connect.

A long-polling session is addressed by nothing but its ``sid`` in the query string, and
query strings end up in logs (a proxy's access log, for one).  :class:`SessionGuard`
binds every session to the client that opened it:

- the client address (``scope["client"]``, which is the forwarded address behind
  ``TRUSTED_PROXY_HOPS`` proxies): a request naming the session from another address
  is answered like an unknown session (``400 {"code": 1, "message": "Session ID
  unknown"}``, engine.io's own shape; a websocket upgrade is closed);
- a per-browser secret cookie (:data:`COOKIE_NAME`, HttpOnly, path of the Socket.IO
  endpoint) set on the handshake when the client has none.  Browsers send it back on
  same-origin long-polls and on every websocket upgrade; once a request of a session
  came with it, every later request of that session must carry the same value.  A
  client that never returns cookies (a cross-origin page without ``withCredentials``,
  Python's aiohttp on an IP address) is held by the address alone.

Sessions that have not joined the Socket.IO namespace yet ("anonymous": nothing but a
handshake) are capped per address and in total; a handshake past a cap answers ``429``
with engine.io's error shape ``{"code": 3, "message": ...}`` and ``Retry-After``, and an
anonymous session is closed once it has waited ``connect_timeout`` seconds for its
CONNECT (as the reference server's ``connectTimeout`` does).  Nothing here reads or
writes the ``sid`` into a log.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import math
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from quart_app.core import metrics
from socket_layer.input_guards import abort_session
from socket_layer.protocol import NAMESPACE, SOCKETIO_PATH

log = logging.getLogger(__name__)

#: the cookie that binds a browser's sessions to it
COOKIE_NAME = "rt_eio"
#: ``reeltrack_socketio_packets_refused_total`` reasons counted here
REFUSED_FOREIGN_SESSION = "foreign_session"
REFUSED_TOO_MANY_PENDING = "too_many_pending_sessions"
REFUSED_CONNECT_TIMEOUT = "connect_timeout"

Asgi = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@dataclass
class Binding:
    """The client a session belongs to."""

    address: str
    cookie: str
    #: a request of this session carried the cookie: from now on every one must
    cookie_required: bool = False
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    pending: bool = True


#: the binding chosen for the handshake being handled in this task
_handshake: contextvars.ContextVar[Binding | None] = contextvars.ContextVar(
    "eio_handshake", default=None
)


def client_address(scope: dict[str, Any]) -> str:
    """The client's address as the ASGI server (or the proxy fix in front) reports it."""
    client = scope.get("client")
    return str(client[0]) if client else "-"


def request_cookie(scope: dict[str, Any]) -> str | None:
    """The value of :data:`COOKIE_NAME` in the request's Cookie headers, if any."""
    for name, value in scope.get("headers") or ():
        if name.lower() != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key, _, val = part.strip().partition("=")
            if key == COOKIE_NAME and 16 <= len(val) <= 64 and val.isascii():
                return val
    return None


def _query(scope: dict[str, Any]) -> dict[str, list[str]]:
    return parse_qs(scope.get("query_string", b"").decode("latin-1"))


async def _refuse(
    scope: dict[str, Any],
    send: Any,
    status: int,
    code: int,
    message: str,
    retry_after: float | None = None,
) -> None:
    """Answer like engine.io's own handshake errors; a websocket is closed before accept."""
    if scope.get("type") == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"code": code, "message": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(math.ceil(retry_after)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SessionGuard:
    """Binds engine.io sessions to their client and caps anonymous ones (module doc)."""

    def __init__(
        self,
        sio: Any,
        *,
        connect_timeout: float,
        max_pending_per_address: int,
        max_pending: int,
    ) -> None:
        self.sio = sio
        self.eio = sio.eio
        self.connect_timeout = connect_timeout
        self.max_pending_per_address = max_pending_per_address
        self.max_pending = max_pending
        #: eio sid -> binding, for every open session
        self.bindings: dict[str, Binding] = {}
        #: address -> sessions of it still waiting for their CONNECT
        self.pending_by_address: Counter[str] = Counter()
        self.pending = 0

    def install(self) -> None:
        """Wrap the engine.io server's request entry point and its connect/disconnect
        handlers, and python-socketio's namespace connect."""
        eio, sio = self.eio, self.sio
        original_request: Asgi = eio.handle_request
        on_eio_connect = eio.handlers["connect"]
        on_eio_disconnect = eio.handlers["disconnect"]
        sio_connect = sio._handle_connect

        # a plain function returning the coroutine to await: no frame of its own stays
        # in the chain under every websocket for the connection's life
        def handle_request(scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
            kind = scope.get("type")
            if kind not in ("http", "websocket"):
                return original_request(scope, receive, send)
            sids = _query(scope).get("sid")
            sid = sids[0] if sids else None
            if sid is None:
                if scope.get("method", "GET") == "GET" or kind == "websocket":
                    return self._handshake(scope, receive, send, original_request)
            elif not self._allowed(sid, scope):
                metrics.packet_refused(REFUSED_FOREIGN_SESSION)
                return _refuse(scope, send, 400, 1, "Session ID unknown")
            return original_request(scope, receive, send)

        async def eio_connect(eio_sid: str, environ: dict[str, Any]) -> Any:
            binding = _handshake.get()
            if binding is not None:
                _handshake.set(None)  # one session per handshake
                self._opened(eio_sid, binding)
            return await on_eio_connect(eio_sid, environ)

        async def eio_disconnect(eio_sid: str, *args: Any) -> Any:
            self._closed(eio_sid)
            return await on_eio_disconnect(eio_sid, *args)

        async def handle_connect(eio_sid: str, namespace: str | None, data: Any) -> None:
            await sio_connect(eio_sid, namespace, data)
            binding = self.bindings.get(eio_sid)
            if binding is not None and binding.pending and self._joined(eio_sid):
                self._leave_pending(binding)

        eio.handle_request = handle_request
        eio.on("connect", eio_connect)
        eio.on("disconnect", eio_disconnect)
        sio._handle_connect = handle_connect

    # ---------------------------------------------------------------- handshake

    def _handshake(
        self, scope: dict[str, Any], receive: Any, send: Any, app: Asgi
    ) -> Awaitable[None]:
        """The handshake request's coroutine: refused past the pending caps, else
        ``app``'s, with the new session's binding in :data:`_handshake` for the engine.io
        connect handler (read there in this request's task, then cleared).  A plain
        function, so no frame of it stays under every websocket."""
        address = client_address(scope)
        if (
            self.pending_by_address[address] >= self.max_pending_per_address
            or self.pending >= self.max_pending
        ):
            metrics.packet_refused(REFUSED_TOO_MANY_PENDING)
            return _refuse(
                scope,
                send,
                429,
                3,
                "too many Socket.IO sessions waiting for their connect; retry later",
                retry_after=self.connect_timeout,
            )
        cookie = request_cookie(scope)
        new_cookie = cookie is None
        binding = Binding(address=address, cookie=cookie or secrets.token_urlsafe(24))
        # set in this request's task (its own context): the connect handler runs in it
        _handshake.set(binding)
        if new_cookie and scope.get("type") == "http":
            send = self._with_cookie(scope, send, binding.cookie)
        return app(scope, receive, send)

    @staticmethod
    def _with_cookie(scope: dict[str, Any], send: Any, value: str) -> Any:
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        header = f"{COOKIE_NAME}={value}; Path={SOCKETIO_PATH}; HttpOnly; SameSite=Lax{secure}"

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.start" and message.get("status") == 200:
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"set-cookie", header.encode())],
                }
            await send(message)

        return send_with_cookie

    # ---------------------------------------------------------------- binding

    def _allowed(self, sid: str, scope: dict[str, Any]) -> bool:
        """May this request use session ``sid``?  Unknown sessions are engineio's to
        refuse."""
        binding = self.bindings.get(sid)
        if binding is None:
            return True
        if client_address(scope) != binding.address:
            return False
        cookie = request_cookie(scope)
        if cookie is None:
            return not binding.cookie_required
        if not secrets.compare_digest(cookie, binding.cookie):
            return False
        binding.cookie_required = True
        return True

    def _opened(self, eio_sid: str, binding: Binding) -> None:
        self.bindings[eio_sid] = binding
        self.pending_by_address[binding.address] += 1
        self.pending += 1
        loop = asyncio.get_running_loop()
        binding.timer = loop.call_later(self.connect_timeout, self._connect_timed_out, eio_sid)

    def _leave_pending(self, binding: Binding) -> None:
        if not binding.pending:
            return
        binding.pending = False
        if binding.timer is not None:
            binding.timer.cancel()
            binding.timer = None
        self.pending -= 1
        left = self.pending_by_address[binding.address] - 1
        if left > 0:
            self.pending_by_address[binding.address] = left
        else:
            del self.pending_by_address[binding.address]

    def _closed(self, eio_sid: str) -> None:
        binding = self.bindings.pop(eio_sid, None)
        if binding is not None:
            self._leave_pending(binding)

    def _joined(self, eio_sid: str) -> bool:
        """Has the session joined (or is it joining) the Socket.IO namespace?"""
        try:
            return self.sio.manager.sid_from_eio_sid(eio_sid, NAMESPACE) is not None
        except Exception:  # KeyError and friends: not connected
            return False

    def _connect_timed_out(self, eio_sid: str) -> None:
        binding = self.bindings.get(eio_sid)
        if binding is None or not binding.pending:
            return
        if self._joined(eio_sid):  # its connect handler is still running: look again
            binding.timer = asyncio.get_running_loop().call_later(
                self.connect_timeout, self._connect_timed_out, eio_sid
            )
            return
        metrics.packet_refused(REFUSED_CONNECT_TIMEOUT)
        self._closed(eio_sid)
        asyncio.ensure_future(abort_session(self.eio, eio_sid))


def guard_sessions(
    sio: Any, *, connect_timeout: float, max_pending_per_address: int, max_pending: int
) -> SessionGuard:
    """Install a :class:`SessionGuard` on ``sio`` (a python-socketio AsyncServer)."""
    guard = SessionGuard(
        sio,
        connect_timeout=connect_timeout,
        max_pending_per_address=max_pending_per_address,
        max_pending=max_pending,
    )
    guard.install()
    return guard
