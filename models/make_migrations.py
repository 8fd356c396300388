"""Regenerate migrations for both dialects after a model change: ``make migrations NAME=x``.

For each dialect: a scratch database (a temp SQLite file; a temporary PostgreSQL
database on ``MIGRATIONS_POSTGRES_ADMIN_URL``, default the local server) is migrated to
the latest version, then aerich writes the difference to the models.  Each dialect runs
in its own interpreter: aerich keeps global state per process.  Any new migration that
touches ``job_progress_events`` indexes must keep the hand-written DESC index.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import uuid

import asyncpg

ADMIN_URL = os.environ.get(
    "MIGRATIONS_POSTGRES_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)


def _one(database_url: str, name: str) -> None:
    from models.migrate import make_migration

    async def go() -> None:
        written = await make_migration(database_url, name)
        print(f"{database_url.split(':', 1)[0]}: {written or 'no changes'}")

    asyncio.run(go())


async def _scratch_postgres() -> str:
    name = f"reeltrack_makemig_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(ADMIN_URL)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"


async def _drop(url: str) -> None:
    base, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(f"{base}/postgres")
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await conn.close()


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--one":
        _one(argv[1], argv[2])
        return 0
    name = argv[0] if argv else "update"
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite://{tmp}/scratch.sqlite3"
        pg_url = asyncio.run(_scratch_postgres())
        try:
            for url in (pg_url, sqlite_url):
                subprocess.run(
                    [sys.executable, "-m", "models.make_migrations", "--one", url, name], check=True
                )
        finally:
            asyncio.run(_drop(pg_url))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
