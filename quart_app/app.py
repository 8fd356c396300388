"""The Quart application factory. Nothing here connects at import time."""

from __future__ import annotations

from typing import Any

from quart import Quart, jsonify

from models.db import close_db, open_db
from quart_app.config import Config
from quart_app.errors import register_error_handlers


def create_app(config: Config | None = None) -> Quart:
    """Build a fresh app for ``config`` (default: from the environment).

    The database is opened in ``before_serving`` and closed in ``after_serving``; tests
    use ``async with app.test_app()`` so those hooks run.
    """
    config = config or Config.from_env()
    app = Quart(__name__, static_folder=None)
    app.config["REELTRACK"] = config
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    register_error_handlers(app)

    @app.before_serving
    async def _open() -> None:
        await open_db(config.database_url)

    @app.after_serving
    async def _close() -> None:
        await close_db()

    @app.get("/api/health")
    async def health() -> Any:
        return jsonify({"status": "ok"})

    return app


def app_config(app: Quart) -> Config:
    """The reeltrack Config an app was built with."""
    config: Config = app.config["REELTRACK"]
    return config
