"""The PostgreSQL pool as Tortoise gets it from :func:`models.db.tortoise_config`."""

from __future__ import annotations

from typing import Any

from tortoise import connections

from models.db import tortoise_config


async def _statements_of_one_use(*statements: str) -> list[str]:
    """What the server is sent while one pooled connection runs ``statements`` and is
    released: asyncpg's query logger sees every statement of that connection."""
    seen: list[str] = []

    def record(query: Any) -> None:
        seen.append(query.query)

    async with connections.get("default").acquire_connection() as con:
        con.add_query_logger(record)
        for statement in statements:
            await con.execute(statement)
    # the release (and its reset, if any) has run when the block is left; the logger
    # stays on the pooled connection until the ``db`` fixture closes the pool
    return list(seen)


async def test_a_released_connection_costs_no_reset_round_trip(db: str) -> None:
    assert await _statements_of_one_use("SELECT 1") == ["SELECT 1"]


async def test_a_transaction_left_open_is_still_rolled_back_on_release(db: str) -> None:
    assert await _statements_of_one_use("BEGIN", "SELECT 1") == ["BEGIN", "SELECT 1", "ROLLBACK"]


def test_the_postgres_url_keeps_its_credentials_and_pool_size() -> None:
    config = tortoise_config("postgresql://u:p%40ss@db.example:6543/rt?maxsize=20")
    credentials = config["connections"]["default"]["credentials"]
    assert config["connections"]["default"]["engine"] == "tortoise.backends.asyncpg"
    assert {k: credentials[k] for k in ("host", "port", "user", "password", "database")} == {
        "host": "db.example",
        "port": 6543,
        "user": "u",
        "password": "p@ss",
        "database": "rt",
    }
    assert credentials["maxsize"] == "20"
