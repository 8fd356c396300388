"""Which browser origins may call the API and open a Socket.IO connection.

One rule for REST (``quart_app.security``) and Socket.IO (``socket_layer.server``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from quart_app.core.config import Config


def origin_allowed(origin: str, config: Config, host: str) -> bool:
    """Same host as the request, or listed in CORS_ORIGINS (scheme://host[:port]).

    A ``Host`` without a port (a proxy that forwards nginx's ``$host``) matches the
    origin's host name on any port."""
    if origin.rstrip("/") in config.cors_origins:
        return True
    if not host:
        return False
    try:
        parts = urlsplit(origin)
        if parts.netloc.lower() == host.lower():
            return True
        return ":" not in host and (parts.hostname or "") == host.lower()
    except ValueError:
        return False
