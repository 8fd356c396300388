"""REST blueprints. :func:`register_blueprints` is the one place they are attached."""

from __future__ import annotations

from quart import Blueprint, Quart

from quart_app.api.auth import bp as auth_bp
from quart_app.api.health import bp as health_bp
from quart_app.api.jobs import bp as jobs_bp
from quart_app.api.lists import bp as lists_bp
from quart_app.api.videos import bp as videos_bp

BLUEPRINTS: tuple[Blueprint, ...] = (health_bp, auth_bp, lists_bp, videos_bp, jobs_bp)


def register_blueprints(app: Quart) -> None:
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
