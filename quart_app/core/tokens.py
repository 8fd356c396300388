"""Signed, expiring access tokens — the one verification used by REST and Socket.IO.

Kept free of Quart imports: the socket layer imports :func:`verify_token`.
"""

from __future__ import annotations

import time
import uuid

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

_SALT = "reeltrack.access-token.v1"


class InvalidToken(Exception):
    """The token is missing, malformed, expired, or signed with another key."""


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=_SALT)


def issue_token(secret_key: str, user_id: uuid.UUID | str) -> str:
    """A token naming ``user_id``; its lifetime is checked by :func:`verify_token`."""
    return _serializer(secret_key).dumps({"sub": str(user_id), "iat": int(time.time())})


def verify_token(secret_key: str, token: object, max_age: int) -> uuid.UUID:
    """Return the user id inside ``token``.

    Raises :class:`InvalidToken` when the token is not a string, was not signed with
    ``secret_key``, or is older than ``max_age`` seconds.
    """
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise InvalidToken("missing or malformed token")
    try:
        payload = _serializer(secret_key).loads(token, max_age=max_age)
    except SignatureExpired:
        raise InvalidToken("token expired") from None
    except BadSignature:
        raise InvalidToken("bad token signature") from None
    try:
        return uuid.UUID(str(payload["sub"]))
    except (KeyError, TypeError, ValueError):
        raise InvalidToken("malformed token payload") from None
