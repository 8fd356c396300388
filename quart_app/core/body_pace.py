"""The pace a request body must keep while it arrives (BODY_READ_TIMEOUT, BODY_MIN_RATE).

One rule for every body the server reads: the REST views' (:mod:`quart_app.request_body`)
and the Socket.IO long-polling POSTs (:mod:`socket_layer.input_guards`).  No gap longer
than ``timeout`` seconds between its bytes, and at least ``min_rate`` bytes/s over each
window of ``timeout`` seconds (0: no rate).
"""

from __future__ import annotations

import asyncio
from typing import Any


class BodyTooSlowError(Exception):
    """The body broke its pace; the message is the reason, as the client reads it."""


class BodyPace:
    """The clock of one body: :meth:`deadline` is when to look again, :meth:`expired`
    then says why the body is too slow (None: it is not, a new window began)."""

    def __init__(self, timeout: float, min_rate: int) -> None:
        self.timeout = timeout
        self.min_bytes = int(min_rate * timeout)
        self.restart()

    def restart(self) -> None:
        """Begin a new window now (at the start, and after the server made it wait)."""
        now = asyncio.get_running_loop().time()
        self.last_byte = now
        self.window_end = now + self.timeout
        self.window_bytes = 0

    def deadline(self) -> float:
        return min(self.last_byte + self.timeout, self.window_end)

    def received(self, size: int) -> None:
        if size:
            self.last_byte = asyncio.get_running_loop().time()
            self.window_bytes += size

    def expired(self) -> str | None:
        """At :meth:`deadline`: the reason the body is too slow, as the client reads it,
        or None (a new window began)."""
        now = asyncio.get_running_loop().time()
        if now >= self.last_byte + self.timeout:
            return f"no part of the request body arrived for {self.timeout:g} s"
        if self.window_bytes < self.min_bytes:
            return (
                f"the request body arrived at {self.window_bytes / self.timeout:.0f} bytes/s,"
                f" slower than the minimum of {self.min_bytes / self.timeout:.0f} bytes/s"
            )
        self.window_end = now + self.timeout
        self.window_bytes = 0
        return None

    async def next_message(self, receive: Any) -> dict[str, Any]:
        """The next ASGI message from ``receive``, its body bytes counted; raises
        :class:`BodyTooSlowError` once the body falls behind the pace."""
        while True:
            try:
                async with asyncio.timeout_at(self.deadline()):
                    message: dict[str, Any] = await receive()
            except TimeoutError:
                reason = self.expired()
                if reason is not None:
                    raise BodyTooSlowError(reason) from None
                continue
            if message["type"] == "http.request":
                self.received(len(message.get("body") or b""))
            return message
