"""Registration, login and the current user."""

from __future__ import annotations

import logging
from typing import Any

from quart import Blueprint
from quart_schema import document_response, tag, validate_request, validate_response

from quart_app.api.schemas import AuthOptionsOut, Credentials, ErrorOut, TokenOut, UserOut
from quart_app.core.accounts import (
    HashingBusy,
    UserExists,
    averify_password,
    create_user,
    find_user,
)
from quart_app.core.logs import printable
from quart_app.core.tokens import issue_token
from quart_app.errors import ApiError, try_later
from quart_app.login_throttle import LoginThrottle, client_address
from quart_app.request_auth import current_user, require_user
from quart_app.request_body import body_limit
from quart_app.services import services

#: a username and a password of at most MAX_PASSWORD characters, as JSON, fit easily
AUTH_BODY_BYTES = 4 * 1024

bp = Blueprint("auth", __name__, url_prefix="/api")
log = logging.getLogger(__name__)
#: characters of a username a failed-login line keeps (usernames are not secret)
LOGGED_USERNAME_CHARS = 64


def log_failed_login(username: str, address: str, reason: str) -> None:
    """A WARNING naming the username (printable, capped), the client address and why:
    ``unknown_user``, ``wrong_password`` or ``throttled``.  Never the password."""
    name = printable(username, LOGGED_USERNAME_CHARS)
    log.warning(
        "failed login for %r from %s: %s",
        name,
        address,
        reason,
        extra={"username": name, "client": address, "reason": reason},
    )


def busy(exc: HashingBusy) -> ApiError:
    return try_later(503, "busy", "too many logins at once; try again shortly", exc.retry_after)


def user_out(user: Any) -> UserOut:
    return UserOut(id=user.id, username=user.username, created_at=user.created_at)


@bp.get("/auth/options")
@tag(["auth"])
@validate_response(AuthOptionsOut)
async def options() -> AuthOptionsOut:
    """What the login page needs to know (is registration open?)."""
    return AuthOptionsOut(allow_registration=services().config.allow_registration)


@bp.post("/auth/register")
@body_limit(lambda config: AUTH_BODY_BYTES)
@tag(["auth"])
@validate_request(Credentials)
@validate_response(UserOut, 201)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 409)
async def register(data: Credentials) -> tuple[UserOut, int]:
    """Create an account (usernames are case-insensitive: stored in lower case).

    403 ``registration_disabled`` when ALLOW_REGISTRATION is off; 503 ``busy`` (with
    Retry-After) when the server is hashing as many passwords as it allows."""
    if not services().config.allow_registration:
        raise ApiError(403, "registration_disabled", "registration is disabled on this server")
    try:
        user = await create_user(data.username, data.password)
    except UserExists:
        raise ApiError(409, "username_taken", "that username is taken") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_credentials", str(exc)) from None
    except HashingBusy as exc:
        raise busy(exc) from None
    return user_out(user), 201


@bp.post("/auth/login")
@body_limit(lambda config: AUTH_BODY_BYTES)
@tag(["auth"])
@validate_request(Credentials)
@validate_response(TokenOut)
@document_response(ErrorOut, 401)
@document_response(ErrorOut, 429)
@document_response(ErrorOut, 503)
async def login(data: Credentials) -> TokenOut:
    """Exchange username (any case) and password for a bearer token.

    Throttled (429 ``too_many_attempts`` with ``retry_after`` and Retry-After, even for
    the right password) per (username, address), per username and per address; see
    :mod:`quart_app.login_throttle`.  503 ``busy`` when the server is hashing as many
    passwords as it allows, 503 ``unavailable`` when the throttle cannot reach Redis.
    """
    config = services().config
    throttle = LoginThrottle(config)
    address = client_address()
    try:
        attempt = await throttle.reserve(data.username, address)
    except ApiError as exc:
        if exc.status == 429:
            log_failed_login(data.username, address, "throttled")
        raise
    user = await find_user(data.username)
    try:
        ok = await averify_password(user.password_hash if user else None, data.password)
    except HashingBusy as exc:
        await throttle.not_checked(attempt)
        raise busy(exc) from None
    if user is None or not ok:
        log_failed_login(
            data.username, address, "unknown_user" if user is None else "wrong_password"
        )
        raise ApiError(401, "invalid_login", "wrong username or password")
    await throttle.succeeded(attempt)
    return TokenOut(
        access_token=issue_token(config.secret_key, user.id),
        expires_in=config.access_token_ttl,
    )


@bp.get("/me")
@require_user
@tag(["auth"])
@validate_response(UserOut)
@document_response(ErrorOut, 401)
async def me() -> UserOut:
    """The authenticated user."""
    return user_out(current_user())
