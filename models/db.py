"""Database configuration and lifecycle for Tortoise ORM."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url

MODEL_MODULES = ["models.entities"]
#: Tortoise's own INFO line of every close_connections(): a worker closes the database
#: after every job (RQ runs each job in a fresh event loop), so it was one line per job
SHUTDOWN_MESSAGE = "Tortoise-ORM shutdown"
SQLITE_BUSY_TIMEOUT_MS = 10_000


def dialect_of(database_url: str) -> str:
    """``"postgres"`` or ``"sqlite"``; raises ValueError for any other scheme."""
    scheme = urlsplit(database_url).scheme
    if scheme in {"postgres", "postgresql", "asyncpg"}:
        return "postgres"
    if scheme == "sqlite":
        return "sqlite"
    raise ValueError(f"unsupported DATABASE_URL scheme {scheme!r} (use postgres:// or sqlite://)")


def sqlite_path(database_url: str) -> Path:
    return Path(database_url[len("sqlite://") :])


def _connection(database_url: str) -> dict[str, Any] | str:
    if dialect_of(database_url) == "sqlite":
        path = sqlite_path(database_url)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        # WAL + busy timeout: the web process and the worker write the same file.
        return {
            "engine": "tortoise.backends.sqlite",
            "credentials": {
                "file_path": str(path),
                "journal_mode": "WAL",
                "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
                "synchronous": "NORMAL",
            },
        }
    parts = urlsplit(database_url)
    url = f"postgres://{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")
    connection: dict[str, Any] = expand_db_url(url)
    connection["credentials"]["reset"] = keep_session
    return connection


async def keep_session(connection: Any) -> None:
    """asyncpg's pool ``reset``: nothing beyond what asyncpg does on every release anyway
    (an open transaction is rolled back, listeners are dropped).

    Its default reset runs ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release, and Tortoise releases after every statement outside a
    transaction: one round trip in two (a Socket.IO connect's snapshot, every REST read)
    undid session state that reeltrack never creates.  Nothing here takes advisory
    locks, declares cursors, LISTENs or SETs a session variable.
    """


def tortoise_config(database_url: str, *, with_aerich: bool = False) -> dict[str, Any]:
    """The Tortoise config dict for ``database_url`` (aerich's table only when migrating)."""
    modules = MODEL_MODULES + (["aerich.models"] if with_aerich else [])
    return {
        "connections": {"default": _connection(database_url)},
        "apps": {"models": {"models": modules, "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }


class QuietShutdown(logging.Filter):
    """Keeps Tortoise's per-close shutdown line out of the log unless the process logs at
    DEBUG (then it is a DEBUG record); every other record of the logger passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != SHUTDOWN_MESSAGE:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def quiet_shutdown_log() -> None:
    """Install :class:`QuietShutdown` on Tortoise's logger (once)."""
    logger = logging.getLogger("tortoise")
    if not any(isinstance(f, QuietShutdown) for f in logger.filters):
        logger.addFilter(QuietShutdown())


async def open_db(database_url: str) -> None:
    """Initialise Tortoise for this event loop. Does not create tables (migrations do)."""
    quiet_shutdown_log()
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)


async def close_db() -> None:
    await Tortoise.close_connections()
