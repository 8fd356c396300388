"""User accounts: validation, argon2 password hashes, creation.

Usernames are case-insensitive: :func:`normalise_username` (lower case; the allowed
characters are ASCII) is applied on registration, on login and by the login throttle,
so ``alice`` and ``ALICE`` are one account.

Hashing and verifying are CPU-bound (~100 ms each by design), so the async helpers run
them on :class:`PasswordHashing`'s own small thread pool - never the default executor
that serves ``asyncio.to_thread`` for everything else - and refuse at once with
:class:`HashingBusy` when that pool and its short queue are full.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from tortoise.exceptions import IntegrityError

from models.db import close_db, open_db
from models.entities import User
from quart_app.core.config import Config

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 256

#: defaults of PASSWORD_HASH_WORKERS / PASSWORD_HASH_QUEUE for processes that do not
#: call :func:`configure_hashing` (the CLI)
HASH_WORKERS = 2
HASH_QUEUE = 8
#: what a refused client is told to wait, seconds
HASH_RETRY_AFTER = 1
#: niceness of the hashing threads (and the lane threads argon2 starts from them):
#: when the CPUs are full, the event loop serving every other request goes first
HASH_NICENESS = 10

_hasher = PasswordHasher()
T = TypeVar("T")


class HashingBusy(Exception):
    """Every password-hashing worker is busy and the queue is full: try again later."""

    retry_after = HASH_RETRY_AFTER


class PasswordHashing:
    """A bounded pool for password hashing: ``workers`` threads, ``queue`` waiting.

    :meth:`run` raises :class:`HashingBusy` at once (never waits) when
    ``workers + queue`` hashes are already admitted.
    """

    def __init__(self, workers: int = HASH_WORKERS, queue: int = HASH_QUEUE) -> None:
        self.workers = workers
        self.queue = queue
        self.capacity = workers + queue
        self.admitted = 0
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="pwhash", initializer=_lower_priority
        )

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self.admitted >= self.capacity:
            raise HashingBusy()
        self.admitted += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, fn, *args)
        finally:
            self.admitted -= 1


def _lower_priority() -> None:
    # Linux: niceness is per thread (0 = the calling thread), inherited by the threads
    # it starts; elsewhere this may apply to the process, so only where it is per thread
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + HASH_NICENESS)


_hashing = PasswordHashing()


def configure_hashing(config: Config) -> None:
    """Size this process's hashing pool from PASSWORD_HASH_WORKERS / _QUEUE (the web
    app calls it when it starts serving)."""
    global _hashing
    if (_hashing.workers, _hashing.queue) != (
        config.password_hash_workers,
        config.password_hash_queue,
    ):
        _hashing = PasswordHashing(config.password_hash_workers, config.password_hash_queue)


def normalise_username(username: str) -> str:
    """The one spelling of a username that is stored, looked up and throttled."""
    return username.strip().lower()


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
    """:func:`verify_password` on the hashing pool; a None hash runs the dummy and
    returns False.  Raises :class:`HashingBusy` when the pool is full."""
    if password_hash is None:
        await _hashing.run(dummy_verify, password)
        return False
    return await _hashing.run(verify_password, password_hash, password)


async def find_user(username: str) -> User | None:
    """The user of ``username`` in any case.  Accounts made before usernames were
    normalised may be stored in mixed case: found case-insensitively when unique."""
    name = normalise_username(username)
    user = await User.get_or_none(username=name)
    if user is None:
        legacy = await User.filter(username__iexact=name).limit(2)
        user = legacy[0] if len(legacy) == 1 else None
    return user


async def create_user(username: str, password: str) -> User:
    """Create a user (Tortoise must be open) under its normalised username.

    Raises ValueError for a bad username/password, :class:`UserExists` when taken (in
    any case) and :class:`HashingBusy` when the hashing pool is full.
    """
    validate_credentials(username, password)
    username = normalise_username(username)
    if await User.filter(username__iexact=username).exists():
        raise UserExists(username)
    password_hash = await _hashing.run(hash_password, password)
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
