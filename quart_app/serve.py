"""``reeltrack serve``: one web process (REST + Socket.IO) under hypercorn on HOST:PORT.

Hypercorn runs in this process (no fork), so SIGTERM/SIGINT reach the process that
holds the sockets.  On either signal: stop accepting, close every Socket.IO connection
(clients reconnect to another process and resume), finish in-flight requests within
the graceful timeout, then run the lifespan shutdown (registry slots released, Redis
and the database closed).

Requests are logged only with ``ACCESS_LOG=true`` or ``LOG_LEVEL=DEBUG``.  The access
log never contains a ``token=``, ``sid=`` (engine.io session) or ``sig=``
(thumbnail capability) value nor an ``Authorization`` or ``Cookie`` header:
hypercorn's access atoms are rebuilt by :class:`RedactingAccessLogger`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HyperConfig
from hypercorn.logging import Logger as HyperLogger

from quart_app.core.config import Config
from quart_app.core.logs import (
    REDACTED,
    JsonFormatter,
    RedactingFilter,
    configure_logging,
    redact,
)

log = logging.getLogger(__name__)

#: remote address, request line with the (redacted) query string, status, size, seconds
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(Uq)s %(H)s" %(s)s %(b)s %(L)s'
GRACEFUL_TIMEOUT_S = 5.0
_SECRET_HEADERS = frozenset({"{authorization}i", "{cookie}i", "{set-cookie}o"})


class RedactedAccessLogAtoms(dict[str, str]):
    """The atoms of :data:`ACCESS_LOG_FORMAT`, with ``token=`` values redacted, plus the
    request headers (secret ones replaced); no environment variables (SECRET_KEY lives
    there: any ``{NAME}e`` atom reads as ``-``).

    Built directly rather than from hypercorn's ``AccessLogAtoms``: that one
    copies every environment variable and header into each request's atoms and the
    redaction then ran four regular expressions over each of them, ~18 % of the CPU
    of a Socket.IO connect and of every long-poll.
    """

    def __init__(self, request: Any, response: Any, request_time: float) -> None:
        super().__init__()
        for name, value in request["headers"]:
            key = f"{{{name.decode('latin1').lower()}}}i"
            self[key] = REDACTED if key in _SECRET_HEADERS else redact(value.decode("latin1"))
        client = request.get("client")
        query = request["query_string"].decode("latin1")
        path = request["path"] + ("?" + query if query else "")
        status = "-"
        length = "-"
        if response is not None:
            status = str(response["status"])
            for name, value in response.get("headers", []):
                if name.lower() == b"content-length":
                    length = value.decode("latin1")
        self.update(
            {
                "h": f"{client[0]}:{client[1]}" if client and len(client) == 2 else "-",
                "m": request["method"] if request["type"] == "http" else "GET",
                "Uq": redact(path) if query else path,
                "H": request.get("http_version", "ws"),
                "s": status,
                "b": length,
                "L": f"{request_time:.6f}",
            }
        )

    def __getitem__(self, key: str) -> str:
        try:
            return super().__getitem__(key.lower() if key.startswith("{") else key)
        except KeyError:
            return "-"


class RedactingAccessLogger(HyperLogger):
    def atoms(self, request: Any, response: Any, request_time: float) -> Mapping[str, str]:
        return RedactedAccessLogAtoms(request, response, request_time)


def access_log_enabled(config: Config) -> bool:
    """Whether requests are logged: ``ACCESS_LOG=true`` or ``LOG_LEVEL=DEBUG``.

    Off by default: hypercorn logs at INFO whatever the app's level is, and a line per
    Socket.IO connect and long-poll cost ~4 % of a connect's CPU.
    """
    return config.access_log or config.log_level == "DEBUG"


def access_logger(config: Config) -> logging.Logger:
    """``reeltrack.access`` on stdout, redacting (a second guard) and not propagating;
    one JSON object per line with ``LOG_JSON=true`` (the other lines' format)."""
    logger = logging.getLogger("reeltrack.access")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.addFilter(RedactingFilter())
        handler.setFormatter(
            JsonFormatter()
            if config.log_json
            else logging.Formatter("%(asctime)s [%(process)d] %(message)s")
        )
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def hypercorn_config(config: Config) -> HyperConfig:
    """Hypercorn settings for one web process of ``config``."""
    hc = HyperConfig()
    host = f"[{config.host}]" if ":" in config.host else config.host
    hc.bind = [f"{host}:{config.port}"]
    hc.logger_class = RedactingAccessLogger
    # None: hypercorn then builds no atoms and formats nothing per request
    hc.accesslog = access_logger(config) if access_log_enabled(config) else None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.access_log_format = ACCESS_LOG_FORMAT
    hc.graceful_timeout = GRACEFUL_TIMEOUT_S
    # the Socket.IO ping keeps connections alive; hypercorn's own keep-alive is for HTTP
    hc.websocket_ping_interval = None
    # a reconnect storm (a restarted process's clients all coming back) overflows
    # hypercorn's default listen backlog of 100: dropped SYNs are retried after 1, 3,
    # 7, 15 s, which showed as connects of 20+ s and timeouts
    hc.backlog = 4096
    return hc


class _NoDeflate:
    """Stands in for wsproto's PerMessageDeflate in hypercorn's handshake and declines
    every offer, so no connection pays zlib's memory (~90 KB) and CPU for ~300-byte
    messages."""

    name = "permessage-deflate"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def enabled(self) -> bool:
        return False

    def offer(self) -> bool:
        return False

    def accept(self, offer: str) -> bool:
        return False


def configure_websockets(permessage_deflate: bool) -> None:
    """Hypercorn 0.18 always accepts permessage-deflate when a client offers it (every
    browser does) and has no setting for it; with ``False`` its handshake declines."""
    from hypercorn.protocol import ws_stream
    from wsproto.extensions import PerMessageDeflate

    ws_stream.PerMessageDeflate = PerMessageDeflate if permessage_deflate else _NoDeflate  # type: ignore[assignment,misc]


def tune_gc() -> None:
    """Freeze everything allocated at start-up out of the collector's reach and make
    collections rarer: a full collection over thousands of sockets' objects blocked the
    event loop for 100+ ms, which is what the fan-out's p99 latency showed."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)


def behind_proxies(app: Any, trusted_hops: int) -> Any:
    """``app`` seeing the client address (and scheme) the trusted proxies forwarded.

    Without it every request behind nginx comes from nginx's address, so the login
    throttle (per username and address) would lock a user out for everyone.
    """
    if trusted_hops <= 0:
        return app
    from hypercorn.middleware import ProxyFixMiddleware

    return ProxyFixMiddleware(app, mode="legacy", trusted_hops=trusted_hops)


async def serve_async(config: Config, shutdown: asyncio.Event) -> None:
    """Serve until ``shutdown`` is set, then shut down gracefully."""
    from quart_app.asgi import create_asgi_app, disconnect_sockets

    configure_websockets(config.ws_permessage_deflate)
    asgi = create_asgi_app(config)
    tune_gc()

    async def trigger() -> None:
        await shutdown.wait()
        log.info("shutting down: closing Socket.IO connections")
        # hypercorn waits for open connections before the lifespan shutdown; close
        # the long-lived sockets now so it does not sit out the graceful timeout
        await disconnect_sockets(asgi)

    await hypercorn_serve(
        behind_proxies(asgi, config.trusted_proxy_hops),
        hypercorn_config(config),
        shutdown_trigger=trigger,
    )


def event_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory ``EVENT_LOOP`` names: uvloop's (the default: its transports and
    timers are C, which is most of what an idle or connecting socket costs the loop),
    or None for the standard library's."""
    if name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return None


def serve(config: Config) -> int:
    """Run one web process on ``config.host:config.port`` until SIGTERM/SIGINT; 0 on a
    clean shutdown."""
    configure_logging(config)

    async def main() -> None:
        shutdown = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, shutdown.set)
        await serve_async(config, shutdown)

    log.info(
        "reeltrack web process on http://%s:%s (role %s)",
        config.host,
        config.port,
        config.serve_role,
    )
    with asyncio.Runner(loop_factory=event_loop_factory(config.event_loop)) as runner:
        runner.run(main())
    log.info("web process stopped")
    return 0


if __name__ == "__main__":  # pragma: no cover - `reeltrack serve` is the entry point
    sys.exit(serve(Config.from_env()))
