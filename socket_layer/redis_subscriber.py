"""A raw Redis pub/sub connection for the fan-out listener (RESP2, parsed by hiredis).

redis-py's ``PubSub`` builds a dict per message and wakes a task per read; here each
message goes from ``data_received`` straight to a callback, in the same call.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import hiredis
from redis.connection import parse_url

from quart_app.core.redis_pools import master_url

#: seconds to connect (and to authenticate) before giving up
CONNECT_TIMEOUT_S = 5.0

OnMessage = Callable[[str, str], None]
OnControl = Callable[[str, str], None]


class RedisSubscriber(asyncio.Protocol):
    """One pub/sub connection: ``on_message(channel, payload)`` for every message,
    ``on_control(kind, channel)`` for subscribe/unsubscribe confirmations and pongs;
    other replies (AUTH) land in ``replies``.  ``lost`` resolves when the connection
    closes."""

    def __init__(self, on_message: OnMessage, on_control: OnControl) -> None:
        self.on_message = on_message
        self.on_control = on_control
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.replies: asyncio.Queue[Any] = asyncio.Queue()  # non-pub/sub replies (AUTH)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.lost.done():
            self.lost.set_result(None)

    def command(self, *args: str) -> None:
        """Send one command (dropped when the connection is already gone)."""
        if self.transport is None:
            return
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.transport.write(b"".join(parts))

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        deliver = self.on_message
        while True:
            msg = reader.gets()
            if msg is False:
                return
            if type(msg) is list and msg:
                kind = msg[0]
                if kind == "message":
                    deliver(msg[1], msg[2])
                    continue
                if kind in ("subscribe", "unsubscribe", "pong"):
                    self.on_control(kind, msg[1] if len(msg) > 1 else "")
                    continue
            self.replies.put_nowait(msg)


async def open_subscriber(
    redis_url: str, on_message: OnMessage, on_control: OnControl
) -> RedisSubscriber:
    """Connect (TCP, TLS for ``rediss://``, or a unix socket) and authenticate; a
    ``redis+sentinel://`` URL connects to the master its Sentinels name now (asked on
    every call, so a reconnect follows a failover).

    Raises OSError/TimeoutError when Redis cannot be reached, ConnectionError when AUTH
    is refused or no Sentinel names a master."""
    params = parse_url(await master_url(redis_url))
    loop = asyncio.get_running_loop()
    conn_class = params.get("connection_class")
    proto = RedisSubscriber(on_message, on_control)
    if "path" in params:
        await asyncio.wait_for(
            loop.create_unix_connection(lambda: proto, params["path"]), CONNECT_TIMEOUT_S
        )
    else:
        ctx = ssl.create_default_context() if conn_class and "SSL" in conn_class.__name__ else None
        await asyncio.wait_for(
            loop.create_connection(
                lambda: proto,
                params.get("host", "localhost"),
                params.get("port", 6379),
                ssl=ctx,
            ),
            CONNECT_TIMEOUT_S,
        )
    if params.get("password"):
        auth = [params["username"]] if params.get("username") else []
        proto.command("AUTH", *auth, params["password"])
        reply = await asyncio.wait_for(proto.replies.get(), CONNECT_TIMEOUT_S)
        if isinstance(reply, Exception):
            if proto.transport is not None:
                proto.transport.close()
            raise ConnectionError(f"Redis AUTH failed: {reply}")
    return proto
