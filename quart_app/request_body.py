"""Request bodies in bounded memory, with a size limit per route.

Quart's own receiver copies every chunk the server hands it into the request's body
buffer whether the view reads it or not, so a client can park a body of any size in
memory while the view waits (on a password hash, on the database).  Here:

- the receiver stops taking chunks from the server while more than
  :data:`HIGH_WATER_BYTES` wait unread (the server then stops reading the socket: TCP
  flow control makes the client wait), unless the view asked for the whole body, which
  it may only do up to its route's limit;
- every route has a body limit (:func:`body_limit` on the view; otherwise
  :data:`DEFAULT_BODY_BYTES`), never above ``MAX_REQUEST_BYTES``.  A declared
  ``Content-Length`` over it answers 413 JSON before any of the body is read; a body
  without one is cut off with 413 as soon as it passes the limit;
- a body must keep arriving (:class:`~quart_app.core.body_pace.BodyPace`): no gap of
  ``BODY_READ_TIMEOUT`` seconds between its bytes and at least ``BODY_MIN_RATE``
  bytes/s over each such window, else the view reads a 408 JSON error and the
  connection is closed after it.  Time the receiver spends waiting for the view to
  take what it buffered is not counted: that wait is the server's, not the client's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from quart import Quart, current_app, request
from quart.asgi import ASGIHTTPConnection
from quart.wrappers.request import Body, Request
from werkzeug.exceptions import RequestEntityTooLarge

from quart_app.core.body_pace import BodyPace, BodyTooSlowError
from quart_app.core.config import Config
from quart_app.errors import ApiError

#: unread body bytes buffered per request before the server is asked to wait
HIGH_WATER_BYTES = 256 * 1024
#: the body limit of a route that declares none (every JSON body of the API fits)
DEFAULT_BODY_BYTES = 64 * 1024
_LIMIT_ATTR = "_reeltrack_body_limit"
#: app.config key of the body pace: (BODY_READ_TIMEOUT, BODY_MIN_RATE)
_PACE_KEY = "REELTRACK_BODY_PACE"

V = TypeVar("V", bound=Callable[..., Any])


def too_large(limit: int) -> RequestEntityTooLarge:
    return RequestEntityTooLarge(description=f"the request body may hold at most {limit} bytes")


class BoundedBody(Body):
    """Quart's body buffer that tells its receiver when to wait (see the module doc)."""

    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._room = asyncio.Event()
        self._room.set()
        self._whole = False

    def append(self, data: bytes) -> None:
        super().append(data)
        if not self._whole and len(self._data) >= HIGH_WATER_BYTES:
            self._room.clear()

    async def __anext__(self) -> bytes:
        try:
            return await super().__anext__()
        except StopAsyncIteration:
            # Quart's iterator checks for an error only before it waits: one set while
            # it waited (a body cut off) must not read as the body's end
            if self._must_raise is not None:
                raise self._must_raise from None
            raise
        finally:
            self._room.set()

    def __await__(self) -> Generator[Any, None, Any]:
        # the whole body is wanted: buffer it (the route's limit bounds it)
        self._whole = True
        self._room.set()
        return super().__await__()

    def set_complete(self) -> None:
        super().set_complete()
        self._room.set()

    async def room(self) -> bool:
        """Return once the reader has taken what was buffered (or wants it all); True
        when that meant waiting."""
        if self._room.is_set():
            return False
        await self._room.wait()
        return True

    def limit_to(self, limit: int) -> None:
        """Apply the route's limit (also to what arrived before the route was known)."""
        self._max_content_length = limit
        if self._must_raise is None and len(self._data) > limit:
            self._must_raise = too_large(limit)
            self.set_complete()


class BoundedRequest(Request):
    body_class = BoundedBody


class BodyTooSlow(ApiError):
    """408: the client stopped sending its body, or sends it too slowly."""

    def __init__(self, message: str) -> None:
        # the rest of the body is not read: the connection cannot serve another request
        super().__init__(408, "request_timeout", message, headers={"Connection": "close"})


class BoundedHTTPConnection(ASGIHTTPConnection):
    """Quart's HTTP connection whose receiver waits while the body buffer is full and
    times the client while it sends the body (:class:`BodyPace`)."""

    async def handle_messages(self, request: Request, receive: Any) -> None:
        body = request.body
        timeout, min_rate = self.app.config.get(_PACE_KEY, (None, 0))
        pace = BodyPace(timeout, min_rate) if timeout else None
        complete = False
        while True:
            if complete or pace is None:
                message = await receive()
            else:
                try:
                    message = await pace.next_message(receive)
                except BodyTooSlowError as slow:
                    complete = True
                    _fail(body, BodyTooSlow(str(slow)))
                    continue
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    complete = True
                    body.set_complete()
                if isinstance(body, BoundedBody) and not complete:
                    waited = await body.room()
                    if waited and pace is not None:
                        pace.restart()
            elif message["type"] == "http.disconnect":
                return


def _fail(body: Body, error: Exception) -> None:
    """Make the view's next read of ``body`` raise ``error``."""
    if body._must_raise is None:
        body._must_raise = error
    body.set_complete()


def body_limit(limit: Callable[[Config], int]) -> Callable[[V], V]:
    """Declare a view's body limit (bytes, from the config); put it right under the
    route decorator so it marks the function the route calls."""

    def mark(view: V) -> V:
        setattr(view, _LIMIT_ATTR, limit)
        return view

    return mark


def route_body_limit(config: Config) -> int:
    """The body limit of the current request's route (min with MAX_REQUEST_BYTES)."""
    view = current_app.view_functions.get(request.endpoint or "")
    declared: Callable[[Config], int] | None = getattr(view, _LIMIT_ATTR, None)
    limit = declared(config) if declared is not None else DEFAULT_BODY_BYTES
    return min(limit, config.max_request_bytes)


def install_body_limits(app: Quart, config: Config) -> None:
    """Bounded, paced body buffers for every request and the per-route limit (before
    each)."""
    app.request_class = BoundedRequest
    app.asgi_http_class = BoundedHTTPConnection
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    app.config[_PACE_KEY] = (config.body_read_timeout, config.body_min_rate)

    @app.before_request
    async def _limit_body() -> None:
        limit = route_body_limit(config)
        length = request.content_length
        if length is not None and length > limit:
            raise ApiError(
                413,
                "request_entity_too_large",
                f"the request body may hold at most {limit} bytes",
                limit=limit,
            )
        if isinstance(request.body, BoundedBody):
            request.body.limit_to(limit)
