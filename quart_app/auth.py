"""Request authentication (bearer tokens) and login throttling.

Tokens are checked by :func:`quart_app.core.tokens.verify_token`, the same function the
socket layer uses.  Failed logins are counted in Redis per (username, client address)
so the limit holds across every web process.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from quart import g, request
from quart_schema import security_scheme
from redis.exceptions import RedisError

from models.entities import User
from quart_app.core import metrics
from quart_app.core.config import Config
from quart_app.core.logs import bind_log_context
from quart_app.core.tokens import InvalidToken, verify_token
from quart_app.errors import ApiError
from quart_app.services import REDIS_KEY_PREFIX, services

P = ParamSpec("P")
R = TypeVar("R")

BEARER_SCHEME = "bearer"


def bearer_token() -> str | None:
    """The token of the ``Authorization: Bearer`` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authenticate(config: Config) -> User:
    """The user named by the request's bearer token.

    Raises ApiError 401 when the token is missing, malformed, expired, signed with
    another key, or names a user that no longer exists.
    """
    token = bearer_token()
    if token is None:
        raise ApiError(401, "unauthorized", "missing bearer token")
    try:
        user_id = verify_token(config.secret_key, token, max_age=config.access_token_ttl)
    except InvalidToken as exc:
        raise ApiError(401, "unauthorized", str(exc)) from None
    user = await User.get_or_none(id=user_id)
    if user is None:
        raise ApiError(401, "unauthorized", "unknown user")
    return user


def require_user(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Decorate a view: authenticate first (401 JSON otherwise); the user is in
    :func:`current_user`.  Marks the route as bearer-protected in the OpenAPI document."""

    @wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        g.user = await authenticate(services().config)
        bind_log_context(user_id=g.user.id)  # this request's log lines name the user
        return await view(*args, **kwargs)

    return security_scheme([{BEARER_SCHEME: []}])(wrapper)


def current_user() -> User:
    """The authenticated user of this request (only inside a :func:`require_user` view)."""
    user: User = g.user
    return user


def current_user_id() -> uuid.UUID:
    return uuid.UUID(str(current_user().id))


# --- login throttling ---------------------------------------------------------------


def client_address() -> str:
    """The peer address of the request (behind a proxy: configure the proxy's
    forwarding in the ASGI server so this is the real client)."""
    return request.remote_addr or "unknown"


def _throttle_key(username: str, address: str) -> str:
    # hashed: usernames are user input; keys stay short and printable
    digest = hashlib.sha256(f"{username.lower()}\0{address}".encode()).hexdigest()[:32]
    return f"{REDIS_KEY_PREFIX}login-fail:{digest}"


class LoginThrottle:
    """Fixed-window counter of failed logins in Redis.

    Redis unreachable -> ApiError 503: the limit is a security control, so logins
    fail closed rather than allow unlimited guessing.
    """

    def __init__(self, config: Config) -> None:
        self.config = config

    async def check(self, username: str, address: str) -> None:
        """Raise ApiError 429 (with ``retry_after``) when the limit is reached."""
        redis = services().require_redis()
        key = _throttle_key(username, address)
        try:
            pipe = redis.pipeline()
            pipe.get(key)
            pipe.ttl(key)
            count, ttl = await pipe.execute()
        except (RedisError, OSError):
            raise ApiError(503, "unavailable", "login is temporarily unavailable") from None
        if count is not None and int(count) >= self.config.login_max_attempts:
            retry_after = max(int(ttl), 1) if ttl and int(ttl) > 0 else self.config.login_window
            metrics.rate_limited("login")
            raise ApiError(
                429,
                "too_many_attempts",
                "too many failed logins; try again later",
                headers={"Retry-After": str(retry_after)},
                retry_after=retry_after,
            )

    async def failed(self, username: str, address: str) -> None:
        redis = services().require_redis()
        key = _throttle_key(username, address)
        try:
            pipe = redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, self.config.login_window, nx=True)
            await pipe.execute()
        except (RedisError, OSError):
            raise ApiError(503, "unavailable", "login is temporarily unavailable") from None

    async def succeeded(self, username: str, address: str) -> None:
        try:
            await services().require_redis().delete(_throttle_key(username, address))
        except (RedisError, OSError):  # the counter expires on its own
            pass
