"""Request authentication: the bearer token of a request and the user it names.

Tokens are checked by :func:`quart_app.core.tokens.verify_token`, the same function the
socket layer uses.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from quart import g, request
from quart_schema import security_scheme

from models.entities import User
from quart_app.core.config import Config
from quart_app.core.logs import bind_log_context
from quart_app.core.tokens import InvalidToken, verify_token
from quart_app.errors import ApiError
from quart_app.services import services

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
