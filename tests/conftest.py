"""Session-wide real services: a private Redis, a PostgreSQL database, a SQLite file.

Each is created for this test session and removed at its end; nothing shared is
flushed, restarted or dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from models.db import close_db, open_db
from quart_app.core.config import ENV_FILE_VAR, Config
from tests.support.live import TEST_SECRET, LiveServer
from tests.support.services import (
    RedisServer,
    create_database,
    drop_database,
    postgres_admin,
)

ROOT = Path(__file__).resolve().parent.parent

# no test (nor a process it starts) reads a developer's .env: the settings are explicit
os.environ[ENV_FILE_VAR] = ""


def migrate_in_subprocess(database_url: str) -> None:
    """Apply migrations in a fresh interpreter (aerich keeps global state per process)."""
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncio, sys; from models.migrate import upgrade;"
            " asyncio.run(upgrade(sys.argv[1]))",
            database_url,
        ],
        check=True,
        cwd=ROOT,
    )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis for this test only: its worker must not take other tests' jobs."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def pg_admin_url() -> AsyncIterator[str]:
    async with postgres_admin() as url:
        yield url


@contextlib.asynccontextmanager
async def migrated_database(admin_url: str, prefix: str = "reeltrack_test") -> AsyncIterator[str]:
    """A new database on ``admin_url``'s server with the migrations applied (yields its
    URL); dropped at the end of the block, also when the block raised or dropped it."""
    url = await create_database(admin_url, prefix=prefix)
    try:
        await asyncio.to_thread(migrate_in_subprocess, url)
        yield url
    finally:
        await drop_database(url)


@pytest.fixture(scope="session")
async def pg_database_url(pg_admin_url: str) -> AsyncIterator[str]:
    """A migrated PostgreSQL database for this session, dropped at its end."""
    async with migrated_database(pg_admin_url) as url:
        yield url


@pytest.fixture
async def fresh_pg_url(pg_admin_url: str) -> AsyncIterator[str]:
    """A migrated PostgreSQL database for ONE test, dropped at its end: for a test that
    drops it (an outage) or whose real worker must not see other tests' jobs."""
    async with migrated_database(pg_admin_url, prefix="reeltrack_own") as url:
        yield url


@contextlib.asynccontextmanager
async def tortoise_open(database_url: str) -> AsyncIterator[str]:
    """Tortoise open on ``database_url`` in this process for the block (yields the URL);
    closed at its end, also when the block raises."""
    await open_db(database_url)
    try:
        yield database_url
    finally:
        await close_db()


@pytest.fixture
async def db(pg_database_url: str) -> AsyncIterator[str]:
    """Tortoise open in the test process on the session PostgreSQL database (the one
    ``live_server`` uses); yields its URL."""
    async with tortoise_open(pg_database_url) as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite://{tmp_path_factory.mktemp('sqlite') / 'reeltrack.sqlite3'}"
    migrate_in_subprocess(url)
    return url


@pytest.fixture(params=["postgres", "sqlite"])
def any_database_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once per supported database."""
    return str(request.getfixturevalue(f"{request.param}_database_url".replace("postgres", "pg")))


def config_for_test(
    base_dir: Path, database_url: str, redis_url: str, /, **overrides: Any
) -> Config:
    """Test settings: private var/media/import dirs under ``base_dir`` (created),
    TEST_SECRET, short Socket.IO pings (a refused or closed polling client must not
    linger), then ``overrides``."""
    base = Config(
        env="test",
        var_dir=base_dir / "var",
        database_url=database_url,
        redis_url=redis_url,
        secret_key=TEST_SECRET,
        media_root=base_dir / "media",
        import_root=base_dir / "import",
        ws_ping_interval=1.0,
        ws_ping_timeout=2.0,
    )
    for d in (base.var_dir, base.media_root, base.import_root):
        d.mkdir(parents=True, exist_ok=True)
    return base.with_overrides(**overrides)


@pytest.fixture
def make_config(tmp_path: Path, redis_url: str) -> Callable[..., Config]:
    """Build a test Config: private dirs under tmp_path, the session Redis, overrides."""

    def build(database_url: str, **overrides: Any) -> Config:
        return config_for_test(tmp_path, database_url, redis_url, **overrides)

    return build


# --- a real web process (hypercorn + Socket.IO + Quart), see tests/support/live.py ----


def live_config(base_dir: Path, database_url: str, redis_url: str, **overrides: Any) -> Config:
    """Test settings for a web subprocess: :func:`config_for_test` plus a short presence TTL,
    a free port picked by LiveServer, WARNING logs."""
    defaults: dict[str, Any] = {"port": 0, "ws_presence_ttl": 3.0, "log_level": "WARNING"}
    return config_for_test(base_dir, database_url, redis_url, **{**defaults, **overrides})


@pytest.fixture(scope="session")
async def live_server(
    pg_database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveServer]:
    """ONE web process for the whole session on the session PostgreSQL database and
    Redis (WS_MAX_CONNECTIONS_PER_USER=5, ping 1 s / 2 s, presence TTL 3 s).  Tests
    must not stop it; use fresh users so limits do not interfere."""
    server = LiveServer(live_config(tmp_path_factory.mktemp("live"), pg_database_url, redis_url))
    await server.astart()
    try:
        yield server
    finally:
        await asyncio.to_thread(server.close)


@pytest.fixture
async def start_live_server(
    tmp_path: Path, pg_database_url: str, redis_url: str
) -> AsyncIterator[Callable[..., Awaitable[LiveServer]]]:
    """Factory for private web processes: ``await start_live_server(**config_overrides)``
    (defaults: live_config on the session PostgreSQL + Redis; pass ``redis_url=...`` or
    ``database_url=...`` to point elsewhere).  Every server is stopped at test end."""
    servers: list[LiveServer] = []

    async def start(**overrides: Any) -> LiveServer:
        base = tmp_path / f"web{len(servers)}"
        params = {"database_url": pg_database_url, "redis_url": redis_url, **overrides}
        db = params.pop("database_url")
        redis = params.pop("redis_url")
        server = LiveServer(live_config(base, db, redis, **params), name=f"web{len(servers)}")
        servers.append(server)
        return await server.astart()

    try:
        yield start
    finally:
        for server in servers:
            await asyncio.to_thread(server.close)
