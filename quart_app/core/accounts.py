"""User accounts: validation, argon2 password hashes, creation.

Hashing and verifying are CPU-bound (tens of milliseconds by design), so the async
helpers run them in a thread and never block the event loop.
"""

from __future__ import annotations

import asyncio
import re
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from tortoise.exceptions import IntegrityError

from models.db import close_db, open_db
from models.entities import User
from quart_app.core.config import Config

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 256

_hasher = PasswordHasher()


class UserExists(Exception):
    """A user with that username already exists."""


def validate_credentials(username: str, password: str) -> None:
    """Raise ValueError (message safe to show; never contains the password) when the
    username or password does not meet the rules."""
    if not USERNAME_RE.match(username):
        raise ValueError(
            "username must be 3-64 characters: letters, digits, '_', '.', '-' "
            "(starting with a letter or digit)"
        )
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValueError(f"password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; False on mismatch or bad hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash("reeltrack-dummy-password-for-timing")


def dummy_verify(password: str) -> None:
    """Spend the same time as a real verification (unknown user: no timing oracle)."""
    verify_password(_dummy_hash(), password)


async def averify_password(password_hash: str | None, password: str) -> bool:
    """:func:`verify_password` in a thread; a None hash runs the dummy and returns False."""
    if password_hash is None:
        await asyncio.to_thread(dummy_verify, password)
        return False
    return await asyncio.to_thread(verify_password, password_hash, password)


async def create_user(username: str, password: str) -> User:
    """Create a user (Tortoise must be open).

    Raises ValueError for a bad username/password and :class:`UserExists` when taken.
    """
    validate_credentials(username, password)
    if await User.filter(username=username).exists():
        raise UserExists(username)
    password_hash = await asyncio.to_thread(hash_password, password)
    try:
        return await User.create(username=username, password_hash=password_hash)
    except IntegrityError:  # lost a race with another registration
        raise UserExists(username) from None


async def create_user_in_db(config: Config, username: str, password: str) -> User:
    """Open the database of ``config``, create the user, close it (CLI use).

    Raises ValueError / :class:`UserExists` like :func:`create_user`.
    """
    await open_db(config.database_url)
    try:
        return await create_user(username, password)
    finally:
        await close_db()


async def ensure_user(config: Config, username: str, password: str) -> bool:
    """Make sure ``username`` exists (with ``password`` when it is created).

    Returns True when the user was created now, False when it already existed (its
    password is left unchanged).  Opens and closes the database of ``config``.
    """
    try:
        await create_user_in_db(config, username, password)
    except UserExists:
        return False
    return True
