"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from quart import Blueprint
from quart_schema import document_response, tag, validate_response
from tortoise import connections

from quart_app.api.schemas import ErrorOut, HealthOut, ReadyOut
from quart_app.errors import error_response
from quart_app.services import services

bp = Blueprint("health", __name__, url_prefix="/api")
log = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 3.0


@bp.get("/health")
@tag(["health"])
@validate_response(HealthOut)
async def health() -> HealthOut:
    """Liveness: the process answers."""
    return HealthOut(status="ok")


async def _check_db() -> None:
    await connections.get("default").execute_query("SELECT 1")


async def _check_redis() -> None:
    await services().require_redis().ping()


@bp.get("/ready")
@tag(["health"])
@validate_response(ReadyOut, 200)
@document_response(ErrorOut, 503)
async def ready() -> Any:
    """Readiness: the database answers a trivial query and Redis answers PING (503
    naming the failing one otherwise)."""
    checks: dict[str, str] = {}
    for name, check in (("database", _check_db), ("redis", _check_redis)):
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; say which
            log.warning("readiness check %s failed: %s", name, exc)
            checks[name] = f"failed: {type(exc).__name__}"
    failing = [name for name, v in checks.items() if v != "ok"]
    if failing:
        return error_response(
            503, "not_ready", f"not ready: {', '.join(failing)} unavailable", checks=checks
        )
    return ReadyOut(status="ok", checks=checks)
