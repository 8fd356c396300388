"""The private services of one benchmark run: a redis-server on a free port and (when
reeltrack itself is measured) a migrated PostgreSQL database holding the benchmark users,
each with one list and one ``processing`` job.  Everything is removed at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from tests.benchmarks.targets import ReeltrackTarget, StockTarget, Target, bench_users
from tests.support.services import (
    PostgresServer,
    RedisServer,
    create_database,
    drop_database,
    postgres_answers,
)

#: settings of the targets that can be named on the command line
TARGET_ENVS: dict[str, dict[str, str]] = {
    "reeltrack": {},
    "reeltrack-stock-manager": {"SOCKETIO_MANAGER": "stock"},
}


def _asyncpg_url(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


@asynccontextmanager
async def bench_env(
    shared: BenchEnv | None, *, need_db: bool = False, users: int = 0
) -> AsyncIterator[BenchEnv]:
    """``shared`` when given (the smoke tests run every benchmark in one environment,
    which must have the database and at least ``users`` users), else a fresh one."""
    if shared is not None:
        if need_db and shared.database_url is None:
            raise ValueError("this benchmark needs the database")
        if users > shared.users:
            raise ValueError(
                f"this benchmark needs {users} users, the environment has {shared.users}"
            )
        yield shared
        return
    async with BenchEnv(need_db=need_db, users=users) as env:
        yield env


class BenchEnv:
    """``async with BenchEnv(need_db=True, users=1000) as env: env.target("stock")``."""

    def __init__(self, *, need_db: bool = False, users: int = 0) -> None:
        self.need_db = need_db
        self.users = users
        self.redis: RedisServer | None = None
        self.pg_private: PostgresServer | None = None
        self.database_url: str | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="rt-bench-"))

    @property
    def redis_url(self) -> str:
        assert self.redis is not None
        return self.redis.url

    async def __aenter__(self) -> BenchEnv:
        self.redis = RedisServer().start()
        if self.need_db:
            await self._create_db()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.database_url is not None:
            try:
                await drop_database(self.database_url)
            except Exception as e:  # report, but do not mask the benchmark's own error
                print(f"(could not drop {self.database_url}: {e})")
        if self.pg_private is not None:
            self.pg_private.destroy()
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def _create_db(self) -> None:
        admin = os.environ.get(
            "TEST_POSTGRES_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"
        )
        if not await postgres_answers(admin):
            self.pg_private = PostgresServer().start()
            admin = self.pg_private.admin_url
        self.database_url = await create_database(admin, prefix="reeltrack_bench")
        from tests.conftest import migrate_in_subprocess

        migrate_in_subprocess(self.database_url)
        if self.users:
            await self.add_users(self.users)

    async def add_users(self, n: int, *, prefix: int = 0) -> None:
        """Create users 1..n (ids from :func:`bench_users`), a list and a job each."""
        assert self.database_url is not None
        now = datetime.now(UTC)
        rows = bench_users(n, prefix=prefix)
        conn = await asyncpg.connect(_asyncpg_url(self.database_url))
        try:
            await conn.copy_records_to_table(
                "users",
                records=[(u, f"bench{prefix}_{i}", "x", now) for i, (u, _) in enumerate(rows)],
                columns=["id", "username", "password_hash", "created_at"],
            )
            await conn.copy_records_to_table(
                "video_lists",
                records=[(j, u, "bench", now) for u, j in rows],
                columns=["id", "owner_id", "name", "created_at"],
            )
            await conn.copy_records_to_table(
                "processing_jobs",
                records=[(j, j, u, "processing", 100, 0, 0, 0, False, now) for u, j in rows],
                columns=[
                    "id",
                    "list_id",
                    "owner_id",
                    "status",
                    "total_videos",
                    "processed_videos",
                    "failed_videos",
                    "last_seq",
                    "cancel_requested",
                    "created_at",
                ],
            )
        finally:
            await conn.close()

    async def sql(self, query: str, *args: Any) -> Any:
        assert self.database_url is not None
        conn = await asyncpg.connect(_asyncpg_url(self.database_url))
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    def target(self, name: str, settings: dict[str, str] | None = None) -> Target:
        """The target ``name``; ``settings`` (environment variables) are added to a
        reeltrack target's own."""
        target = self._target(name, settings or {})
        assert self.redis is not None and self.redis.proc is not None
        target.redis_pid = self.redis.proc.pid
        return target

    def _target(self, name: str, settings: dict[str, str]) -> Target:
        if name == "stock":
            return StockTarget(self.redis_url)
        if name == "tiny-fast":
            return StockTarget(self.redis_url, fast=True)
        if name in TARGET_ENVS:
            assert self.database_url is not None, "reeltrack targets need the database"
            return ReeltrackTarget(
                self.redis_url,
                self.database_url,
                self.tmp / name,
                env={**TARGET_ENVS[name], **settings},
                name=name,
            )
        raise ValueError(f"unknown target {name!r}")
