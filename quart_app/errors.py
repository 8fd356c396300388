"""The one error shape of the REST API: ``{"code": "...", "message": "..."}``."""

from __future__ import annotations

from typing import Any

from quart import Quart, jsonify
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    """Raise in a view to answer ``status`` with the error JSON (and optional details)."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_response(status: int, code: str, message: str, **details: Any) -> Any:
    body: dict[str, Any] = {"code": code, "message": message, **details}
    response = jsonify(body)
    response.status_code = status
    return response


def register_error_handlers(app: Quart) -> None:
    """Every error — ours, HTTP, unexpected — answers JSON, never HTML."""

    @app.errorhandler(ApiError)
    async def _api_error(exc: ApiError) -> Any:
        return error_response(exc.status, exc.code, exc.message, **exc.details)

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(exc.code or 500, code, exc.description or exc.name or "error")
        return response

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Any:
        app.logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
