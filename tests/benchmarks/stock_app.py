"""The baseline every benchmark compares against, in the same run: python-socketio's
AsyncServer with the stock AsyncRedisManager under hypercorn, as the python-socketio
documentation shows it.  Auth is trivial (the token is the user id); each socket joins
``user:<id>`` on connect, exactly like reeltrack's rooms.

Run: ``python -m tests.benchmarks.stock_app --port P --redis-url URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import socketio
from hypercorn.asyncio import serve
from hypercorn.config import Config as HyperConfig

from socket_layer.protocol import REDIS_CHANNEL, SOCKETIO_PATH, user_room


class _CountingRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """The stock manager, counting what it takes from Redis (printed at exit)."""

    received = 0

    async def _listen(self) -> Any:
        async for message in super()._listen():
            _CountingRedisManager.received += 1
            yield message


def build_app(
    redis_url: str, ping_interval: float, ping_timeout: float, manager: str = "stock"
) -> Any:
    if manager == "stock":
        client_manager = _CountingRedisManager(redis_url, channel=REDIS_CHANNEL)
    else:  # reeltrack's fast path in the same tiny app: isolates the manager's share
        from socket_layer.server import make_fanout_manager

        client_manager = make_fanout_manager(redis_url, manager)
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=client_manager,
        cors_allowed_origins="*",
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        user = (auth or {}).get("token") if isinstance(auth, dict) else None
        if not user:
            return False
        await sio.enter_room(sid, user_room(user))
        return True

    return socketio.ASGIApp(sio, socketio_path=SOCKETIO_PATH)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--ping-interval", type=float, default=25.0)
    parser.add_argument("--ping-timeout", type=float, default=20.0)
    parser.add_argument("--manager", default="stock", help="stock or user-channels")
    parser.add_argument("--tuned", action="store_true", help="no deflate, gc tuning")
    args = parser.parse_args()
    if args.tuned:
        from quart_app.serve import configure_websockets

        configure_websockets(permessage_deflate=False)
    config = HyperConfig()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.backlog = 4096
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    app = build_app(args.redis_url, args.ping_interval, args.ping_timeout, args.manager)
    if args.tuned:
        from quart_app.serve import tune_gc

        tune_gc()
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    # the scale-out benchmark reads this line (same wording as socket_layer.user_channels)
    print(
        f"pub/sub messages received: 0 on user channels, "
        f"{_CountingRedisManager.received} on the common channel",
        flush=True,
    )


if __name__ == "__main__":
    from tests.benchmarks.common import raise_nofile

    raise_nofile()
    if "--tuned" in sys.argv:
        import uvloop

        uvloop.install()
    asyncio.run(main())
