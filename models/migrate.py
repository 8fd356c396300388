"""Applying and checking aerich migrations; one folder per SQL dialect.

aerich writes dialect-specific SQL, so ``migrations/postgres`` and ``migrations/sqlite``
are generated from the same models (``make migrations``) and the folder is picked from
the ``DATABASE_URL`` scheme.
"""

from __future__ import annotations

from pathlib import Path

from aerich import Command

from models.db import dialect_of, tortoise_config

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
APP = "models"


def location_for(database_url: str, base: Path = MIGRATIONS_DIR) -> Path:
    """The migrations folder for the dialect of ``database_url``."""
    return base / dialect_of(database_url)


class MigrationsMissing(RuntimeError):
    """The migrations folder of the dialect is not there (e.g. a non-editable install,
    which leaves ``migrations/`` behind in the source tree)."""


def _existing(location: Path) -> Path:
    if not any(location.glob("models/*.py")):
        raise MigrationsMissing(
            f"no migrations in {location}: run reeltrack from a source checkout or an "
            "editable install (pip install -e .), where migrations/ sits next to models/"
        )
    return location


def _command(database_url: str, location: Path) -> Command:
    return Command(tortoise_config(database_url, with_aerich=True), app=APP, location=str(location))


async def upgrade(database_url: str, location: Path | None = None) -> list[str]:
    """Apply every migration not yet applied; returns the names applied (may be empty).

    Each migration runs in a transaction, so a failing one leaves the schema as it was.
    Raises :class:`MigrationsMissing` when the folder holds no migrations (applying
    "nothing" would leave an empty database that looks migrated).
    """
    location = _existing(location or location_for(database_url))
    async with _command(database_url, location) as command:
        await command.init()
        return await command.upgrade(run_in_transaction=True)


async def make_migration(database_url: str, name: str, location: Path | None = None) -> str | None:
    """Bring the database to the latest migration, then write a migration for model
    changes not yet in ``location``; returns its name, or None when there are none."""
    async with _command(database_url, location or location_for(database_url)) as command:
        await command.init()
        await command.upgrade(run_in_transaction=True)
        await command.init()  # aerich reads the last applied version at init
        result = await command.migrate(name=name, no_input=True)
        return result or None


async def init_migrations(database_url: str, location: Path | None = None) -> None:
    """Create the initial migration in an empty folder from the models (first time only)."""
    async with _command(database_url, location or location_for(database_url)) as command:
        await command.init_db(safe=True)
