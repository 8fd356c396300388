"""Fixtures of the worker tests: sample videos, a private database, configs (``db``, the
session PostgreSQL opened in this loop, comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from quart_app.core.config import Config
from tests.conftest import tortoise_open
from tests.support.builders import build_samples


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("samples")
    build_samples(directory)
    return directory


@pytest.fixture
async def own_pg(fresh_pg_url: str) -> AsyncIterator[str]:
    """A migrated database for ONE test, opened in this loop: for tests whose real worker
    (and its stale-job check) must not see other tests' jobs."""
    async with tortoise_open(fresh_pg_url) as url:
        yield url


@pytest.fixture
def config(make_config: Callable[..., Config], pg_database_url: str) -> Callable[..., Config]:
    def build(**overrides: Any) -> Config:
        url = overrides.pop("database_url", pg_database_url)
        return make_config(url, **overrides)

    return build
