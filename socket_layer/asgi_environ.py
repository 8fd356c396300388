"""The WSGI-style environ python-engineio builds from an ASGI request, without a class
per request.

python-engineio's ASGI ``translate_request`` defines its request-body reader class
inside the function, so every request (every Socket.IO connect, every long-poll)
creates a new class object: about 2.5 KB kept for the life of a websocket (the environ
holds an instance) and a few microseconds of CPU each time.  :func:`translate_request`
builds the same environ with one module-level reader class; :func:`install` makes an
engine.io server use it.

A websocket's environ lives as long as the connection, so it holds only what is read
from it (python-engineio's origin, upgrade and CORS checks, the token, the client
address): the request keys, :data:`WEBSOCKET_HEADERS` and none of the WSGI constants,
which keeps it in CPython's smallest dict table that fits (about 1 KB instead of 2.3).
"""

from __future__ import annotations

import sys
from typing import Any

#: the environ keys that are the same for every HTTP request (``wsgi.errors`` is set
#: per request: python-engineio's is the ``sys.stderr`` of the moment)
_CONSTANT = {
    "wsgi.version": (1, 0),
    "wsgi.async": True,
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    "SERVER_SOFTWARE": "asgi",
    "SCRIPT_NAME": "",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "REMOTE_PORT": "0",
    "SERVER_NAME": "asgi",
    "SERVER_PORT": "0",
}


#: the request headers a websocket's environ keeps (as ``HTTP_*`` keys)
WEBSOCKET_HEADERS = frozenset(
    {
        "HOST",
        "ORIGIN",
        "UPGRADE",
        "CONNECTION",
        "COOKIE",
        "AUTHORIZATION",
        "USER-AGENT",
        "X-FORWARDED-FOR",
        "X-FORWARDED-PROTO",
    }
)


class RequestBody:
    """``environ['wsgi.input']``: the request body, read from the ASGI ``receive``
    (python-engineio's reader, at module level)."""

    __slots__ = ("event", "payload", "receive")

    def __init__(self, event: dict[str, Any], receive: Any) -> None:
        self.event = event
        self.receive = receive
        self.payload: bytes | None = None

    async def read(self, length: int | None = None) -> bytes:
        if self.payload is None and self.event["type"] == "http.request":
            self.payload = self.event.get("body") or b""
            while self.event.get("more_body"):
                self.event = await self.receive()
                if self.event["type"] == "http.request" and (
                    length is None or len(self.payload) < length
                ):
                    self.payload += self.event.get("body") or b""
        payload = self.payload or b""
        if length is None:
            self.payload = b""
            return payload
        self.payload = payload[length:]
        return payload[:length]


async def translate_request(scope: dict[str, Any], receive: Any, send: Any) -> dict[str, Any]:
    """python-engineio's environ for an ASGI ``http`` or ``websocket`` request: the same
    keys (``HTTP_*`` headers, a header sent twice joined by a comma, undecodable ones
    skipped; a websocket's trimmed as the module docstring says), ``{}`` when the first
    event is neither a request nor a connect."""
    event = await receive()
    if event["type"] not in ("http.request", "websocket.connect"):
        return {}
    path = scope["path"]
    query_string = ""
    raw_uri = path
    if scope.get("query_string"):
        try:
            query_string = scope["query_string"].decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            raw_uri = f"{path}?{query_string}"
    websocket = scope["type"] == "websocket"
    environ: dict[str, Any] = {
        **({"REMOTE_ADDR": "127.0.0.1", "SCRIPT_NAME": ""} if websocket else _CONSTANT),
        "wsgi.input": RequestBody(event, receive),
        "REQUEST_METHOD": scope.get("method", "GET"),
        "PATH_INFO": path,
        "QUERY_STRING": query_string,
        "RAW_URI": raw_uri,
        "asgi.receive": receive,
        "asgi.send": send,
        "asgi.scope": scope,
    }
    for raw_name, raw_value in scope["headers"]:
        try:
            name = raw_name.upper().decode("utf-8")
            value = raw_value.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if websocket and name not in WEBSOCKET_HEADERS:
            continue
        if name == "CONTENT-TYPE":
            environ["CONTENT_TYPE"] = value
            continue
        if name == "CONTENT-LENGTH":
            environ["CONTENT_LENGTH"] = value
            continue
        key = "HTTP_" + name.replace("-", "_")
        if key in environ:
            value = f"{environ[key]},{value}"
        environ[key] = value
    environ["wsgi.url_scheme"] = environ.get("HTTP_X_FORWARDED_PROTO", "http")
    if not websocket:
        environ["wsgi.errors"] = sys.stderr
    return environ


def install(eio: Any) -> None:
    """Make ``eio`` (an engineio.AsyncServer in ASGI mode) build environs with
    :func:`translate_request`; its driver table is copied (other servers keep theirs)."""
    eio._async = {**eio._async, "translate_request": translate_request}
