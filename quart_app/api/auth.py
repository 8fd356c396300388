"""Registration, login and the current user."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import document_response, tag, validate_request, validate_response

from models.entities import User
from quart_app.api.schemas import AuthOptionsOut, Credentials, ErrorOut, TokenOut, UserOut
from quart_app.auth import LoginThrottle, client_address, current_user, require_user
from quart_app.core.accounts import UserExists, averify_password, create_user
from quart_app.core.tokens import issue_token
from quart_app.errors import ApiError
from quart_app.services import services

bp = Blueprint("auth", __name__, url_prefix="/api")


def user_out(user: Any) -> UserOut:
    return UserOut(id=user.id, username=user.username, created_at=user.created_at)


@bp.get("/auth/options")
@tag(["auth"])
@validate_response(AuthOptionsOut)
async def options() -> AuthOptionsOut:
    """What the login page needs to know (is registration open?)."""
    return AuthOptionsOut(allow_registration=services().config.allow_registration)


@bp.post("/auth/register")
@tag(["auth"])
@validate_request(Credentials)
@validate_response(UserOut, 201)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 409)
async def register(data: Credentials) -> tuple[UserOut, int]:
    """Create an account. 403 ``registration_disabled`` when ALLOW_REGISTRATION is off."""
    if not services().config.allow_registration:
        raise ApiError(403, "registration_disabled", "registration is disabled on this server")
    try:
        user = await create_user(data.username, data.password)
    except UserExists:
        raise ApiError(409, "username_taken", "that username is taken") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_credentials", str(exc)) from None
    return user_out(user), 201


@bp.post("/auth/login")
@tag(["auth"])
@validate_request(Credentials)
@validate_response(TokenOut)
@document_response(ErrorOut, 401)
@document_response(ErrorOut, 429)
async def login(data: Credentials) -> TokenOut:
    """Exchange username and password for a bearer token.

    After LOGIN_MAX_ATTEMPTS failures for one (username, client address) within
    LOGIN_WINDOW seconds: 429 with Retry-After, even for the right password.
    """
    config = services().config
    throttle = LoginThrottle(config)
    address = client_address()
    await throttle.check(data.username, address)
    user = await User.get_or_none(username=data.username)
    ok = await averify_password(user.password_hash if user else None, data.password)
    if user is None or not ok:
        await throttle.failed(data.username, address)
        raise ApiError(401, "invalid_login", "wrong username or password")
    await throttle.succeeded(data.username, address)
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
