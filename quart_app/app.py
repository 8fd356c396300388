"""The Quart application factory. Nothing here connects at import time."""

from __future__ import annotations

from typing import cast

from quart import Quart
from quart_schema import Info, PydanticDumpOptions, QuartSchema

from models.db import close_db, open_db
from quart_app.api import register_blueprints
from quart_app.core.accounts import configure_hashing
from quart_app.core.config import Config
from quart_app.docs_ui import register_docs
from quart_app.errors import register_error_handlers
from quart_app.http_metrics import install_http_metrics
from quart_app.json_body import install_json_policy
from quart_app.metrics_view import register_metrics
from quart_app.openapi_document import ApiDocument
from quart_app.request_auth import BEARER_SCHEME
from quart_app.request_body import install_body_limits
from quart_app.security import install_security
from quart_app.services import install_services
from quart_app.web import register_web


def create_app(config: Config | None = None) -> Quart:
    """Build a fresh app for ``config`` (default: from the environment).

    The database and the Redis clients (:mod:`quart_app.services`) are opened in
    ``before_serving`` and closed in ``after_serving``; tests use
    ``async with app.test_app()`` so those hooks run.  Other packages extend the app
    after this returns (hooks, blueprints); REST blueprints are attached in
    :func:`quart_app.api.register_blueprints`.
    """
    config = config or Config.from_env()
    app = Quart(__name__, static_folder=None)
    app.config["REELTRACK"] = config
    QuartSchema(
        app,
        info=Info(title="reeltrack", version="0.1.0"),
        security_schemes={BEARER_SCHEME: {"type": "http", "scheme": "bearer"}},
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,  # served by quart_app.docs_ui from local assets
        openapi_provider_class=ApiDocument,
        # datetimes as the document says (ISO 8601 date-time); left to Quart's JSON
        # provider they became HTTP dates ("Tue, 01 Dec 2026 22:03:29 GMT", no
        # sub-second part), which generated clients refuse
        # (quart_schema passes these to model_dump; its TypedDict does not list "mode")
        pydantic_dump_options=cast(PydanticDumpOptions, {"mode": "json"}),
    )
    register_error_handlers(app)
    install_http_metrics(app)  # every answer counted by URL rule and status class
    install_json_policy(app)  # deep nesting, NUL characters: 400
    install_body_limits(app, config)  # bounded buffers, a body limit per route

    @app.before_serving
    async def _open() -> None:
        configure_hashing(config)
        await open_db(config.database_url)

    install_services(app, config)
    install_security(app, config)  # rate limit, CORS, security headers

    @app.after_serving
    async def _close() -> None:
        await close_db()

    register_blueprints(app)
    register_metrics(app, config)
    register_docs(app)
    register_web(app)
    return app


def app_config(app: Quart) -> Config:
    """The reeltrack Config an app was built with."""
    config: Config = app.config["REELTRACK"]
    return config
