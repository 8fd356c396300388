"""Both migration folders apply to empty databases and match the models exactly.

aerich keeps global state per process, so each step runs in a fresh interpreter; the
"no changes" check runs on a temporary copy of the folder so a failure cannot leave a
stray migration file in the repository.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from models import migrate
from models.migrate import MIGRATIONS_DIR
from quart_app import cli
from tests.support.services import create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]

_UPGRADE = """
import asyncio, sys
from pathlib import Path
from models.migrate import upgrade
print("APPLIED", asyncio.run(upgrade(sys.argv[1], Path(sys.argv[2]))))
"""
_MAKE = """
import asyncio, sys
from pathlib import Path
from models.migrate import make_migration
if len(sys.argv) > 3:  # the negative control: a model the migrations do not know
    from tortoise import fields
    from tortoise.models import Model
    import models.entities as entities
    class Extra(Model):
        id = fields.IntField(primary_key=True)
        class Meta:
            table = "extra_for_test"
    entities.Extra = Extra
print("RESULT", repr(asyncio.run(make_migration(sys.argv[1], "check", Path(sys.argv[2])))))
"""


def _python(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _check_folder(
    database_url: str, dialect: str, tmp_path: Path, *, control: bool = False
) -> None:
    location = tmp_path / dialect
    shutil.copytree(MIGRATIONS_DIR / dialect, location)
    before = sorted(p.name for p in (location / "models").iterdir() if p.suffix == ".py")
    assert before, f"no migrations in migrations/{dialect}"

    applied = _python(_UPGRADE, database_url, str(location))
    assert "APPLIED [" in applied and "APPLIED []" not in applied, applied
    again = _python(_UPGRADE, database_url, str(location))
    assert "APPLIED []" in again, again  # idempotent

    made = _python(_MAKE, database_url, str(location))
    assert "RESULT None" in made, f"models and migrations/{dialect} differ: {made}"
    after = sorted(p.name for p in (location / "models").iterdir() if p.suffix == ".py")
    assert after == before
    if control:  # the check can fail: a model change is noticed
        changed = _python(_MAKE, database_url, str(location), "with-extra-model")
        assert "RESULT None" not in changed and "RESULT '" in changed, changed


@pytest.fixture
async def fresh_pg_url(pg_admin_url: str) -> AsyncIterator[str]:
    url = await create_database(pg_admin_url, prefix="reeltrack_migr")
    try:
        yield url
    finally:
        await drop_database(url)


async def test_postgres_migrations_apply_and_match_models(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    _check_folder(fresh_pg_url, "postgres", tmp_path)
    conn = await asyncpg.connect(fresh_pg_url)
    try:
        indexdef = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_job_progress_job_created'"
        )
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
    finally:
        await conn.close()
    assert indexdef is not None, "idx_job_progress_job_created is missing"
    assert "job_progress_events" in indexdef
    assert "(job_id, created_at DESC)" in indexdef, indexdef
    assert {"users", "video_lists", "videos", "processing_jobs", "job_progress_events"} <= tables


async def test_sqlite_migrations_apply_and_match_models(tmp_path: Path) -> None:
    database = tmp_path / "fresh" / "reeltrack.sqlite3"
    _check_folder(f"sqlite://{database}", "sqlite", tmp_path, control=True)
    import sqlite3

    with sqlite3.connect(database) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"users", "video_lists", "videos", "processing_jobs", "job_progress_events"} <= tables
    assert "idx_job_progress_job_created" in indexes


async def test_migrate_refuses_a_missing_migrations_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plain (non-editable) install leaves migrations/ behind: `reeltrack migrate` must
    say so, not report "0 applied" over an empty database."""
    database = tmp_path / "var" / "reeltrack.sqlite3"
    empty = tmp_path / "site-packages" / "migrations" / "sqlite"
    with pytest.raises(migrate.MigrationsMissing, match="no migrations in"):
        await migrate.upgrade(f"sqlite://{database}", empty)

    monkeypatch.setattr(migrate, "location_for", lambda url, base=None: empty)
    monkeypatch.setenv("DATABASE_URL", f"sqlite://{database}")
    monkeypatch.setenv("SECRET_KEY", "x" * 32)
    assert await asyncio.to_thread(cli.main, ["migrate"]) == 2
    assert "error: no migrations in" in capsys.readouterr().err
    assert not database.exists()  # nothing was created
