"""HTTP-level protections of the Quart app: per-user rate limit, CORS, security headers.

- **Rate limit** (``RATE_LIMIT_PER_MINUTE`` per user, 0 = off): every ``/api`` request
  that carries a valid bearer token counts against its user in Redis, in a sliding
  window of 60 s (the current minute's count plus the previous minute's, weighted by
  how much of it still overlaps the window).  Over the limit: ``429`` JSON
  ``{"code": "rate_limited", ...}`` with ``Retry-After``.  Refused requests do not
  count, so a client that backs off gets back in.  When Redis is unreachable requests
  pass (the limit protects capacity, not secrets; login throttling fails closed) and
  ``reeltrack_redis_connection_failures_total{process="web",operation="rate_limit"}``
  counts them.  A burst waits for one of the pool's connections instead of failing;
  a request that still finds none within ``REDIS_POOL_TIMEOUT`` (the process is
  saturated) is answered 429 with ``Retry-After: 1``.
- **CORS**: an ``Origin`` is allowed when it is the app's own (same host) or listed in
  ``CORS_ORIGINS``; allowed cross-origin requests get ``Access-Control-Allow-Origin``
  and preflights are answered here; ``/api`` requests from any other origin are refused
  with ``403 {"code": "origin_not_allowed"}`` (Socket.IO applies the same list itself).
- **Headers**: every response gets ``X-Content-Type-Options: nosniff`` and
  ``Referrer-Policy: no-referrer`` (a ``?token=`` URL must not leak through Referer);
  HTML responses also get a Content-Security-Policy with ``frame-ancestors 'none'``
  and ``X-Frame-Options: DENY``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from quart import Quart, Response, request
from redis.exceptions import RedisError

from quart_app.core import metrics
from quart_app.core.config import Config
from quart_app.core.origins import origin_allowed
from quart_app.core.redis_pools import pool_exhausted
from quart_app.core.tokens import InvalidToken, verify_token
from quart_app.errors import api_error_response, error_response, try_later
from quart_app.services import REDIS_KEY_PREFIX, services

log = logging.getLogger(__name__)

WINDOW_S = 60
RATE_KEY = REDIS_KEY_PREFIX + "ratelimit:"

#: the SPA: scripts and styles from this origin only; Socket.IO on this origin
HTML_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
#: /docs: Swagger UI's scripts, styles and the document from this origin only (its
#: React components set inline style attributes, hence 'unsafe-inline' for styles)
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
CORS_ALLOW_HEADERS = "Authorization, Content-Type"
CORS_ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
CORS_MAX_AGE = "600"

#: seconds since the epoch; tests replace it to pin the window
clock: Callable[[], float] = time.time


# --- rate limit -------------------------------------------------------------------------


def _bearer_user(config: Config) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        return str(verify_token(config.secret_key, token.strip(), config.access_token_ttl))
    except InvalidToken:
        return None  # the view answers 401


async def check_rate_limit(config: Config) -> Any:
    """None when the request may go on, else the 429 response."""
    limit = config.rate_limit_per_minute
    if limit <= 0 or not request.path.startswith("/api/"):
        return None
    user_id = _bearer_user(config)
    redis = services().redis
    if user_id is None or redis is None:
        return None
    now = clock()
    window = int(now // WINDOW_S)
    current_key = f"{RATE_KEY}{user_id}:{window}"
    previous_key = f"{RATE_KEY}{user_id}:{window - 1}"
    try:
        pipe = redis.pipeline()
        pipe.incr(current_key)
        pipe.expire(current_key, 2 * WINDOW_S)
        pipe.get(previous_key)
        current, _, previous = await pipe.execute()
        elapsed = now - window * WINDOW_S
        weight = 1.0 - elapsed / WINDOW_S
        estimate = int(previous or 0) * weight + int(current)
        if estimate <= limit:
            return None
        await redis.decr(current_key)  # refused requests do not count
    except (RedisError, OSError) as exc:
        if pool_exhausted(exc):
            # a burst so large that no pooled connection freed up within
            # REDIS_POOL_TIMEOUT: this process is saturated, so refuse (letting the
            # burst through is what the limit exists to prevent)
            metrics.rate_limited("rest")
            return api_error_response(
                try_later(429, "rate_limited", "too many requests at once; retry after 1 s", 1)
            )
        # Redis unreachable: fail open (the limit protects capacity, not secrets), counted
        metrics.redis_failure("web", "rate_limit")
        log.warning("rate limit not applied, Redis unavailable: %s", exc)
        return None
    retry_after = _retry_after(int(previous or 0), int(current) - 1, limit, elapsed)
    metrics.rate_limited("rest")
    return api_error_response(
        try_later(
            429,
            "rate_limited",
            f"more than {limit} requests per minute; retry after {retry_after} s",
            retry_after,
        )
    )


def _retry_after(previous: int, current: int, limit: int, elapsed: float) -> int:
    """Seconds until one more request fits in the sliding window."""
    if current + 1 > limit:  # this minute alone is full: wait for the next one
        return max(1, math.ceil(WINDOW_S - elapsed))
    # wait until the previous minute's weight has dropped enough
    need = (previous * (1 - elapsed / WINDOW_S) + current + 1 - limit) / max(previous, 1)
    return max(1, math.ceil(need * WINDOW_S))


# --- CORS ---------------------------------------------------------------------------------


def _cors_headers(response: Response, origin: str) -> None:
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = "Retry-After"
    response.vary.add("Origin")


async def check_origin(config: Config) -> Any:
    """Answer preflights; refuse /api requests from origins that are not allowed."""
    origin = request.headers.get("Origin")
    if origin is None or not request.path.startswith("/api/"):
        return None
    if not origin_allowed(origin, config, request.host):
        return error_response(
            403, "origin_not_allowed", "this origin may not call the API (CORS_ORIGINS)"
        )
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        response = Response("", status=204)
        _cors_headers(response, origin)
        response.headers["Access-Control-Allow-Methods"] = CORS_ALLOW_METHODS
        response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
        return response
    return None


# --- headers ------------------------------------------------------------------------------


def add_security_headers(response: Response, config: Config) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if response.mimetype == "text/html":
        csp = DOCS_CSP if request.path.startswith("/docs") else HTML_CSP
        response.headers.setdefault("Content-Security-Policy", csp)
        response.headers.setdefault("X-Frame-Options", "DENY")
    origin = request.headers.get("Origin")
    if origin and request.path.startswith("/api/") and origin_allowed(origin, config, request.host):
        _cors_headers(response, origin)
    return response


def install_security(app: Quart, config: Config) -> None:
    """Register the checks (before each request) and the headers (after each)."""

    @app.before_request
    async def _guard() -> Any:
        refused = await check_origin(config)
        if refused is not None:
            return refused
        return await check_rate_limit(config)

    @app.after_request
    async def _headers(response: Response) -> Response:
        return add_security_headers(response, config)
