"""The one error shape of the REST API: ``{"code": "...", "message": "..."}``."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from quart import Quart, jsonify
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

#: headers of an HTTP error worth keeping on the JSON answer
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


class ApiError(Exception):
    """Raise in a view to answer ``status`` with the error JSON (and optional details)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details


def try_later(status: int, code: str, message: str, retry_after: int) -> ApiError:
    """A refusal the client may retry (429, 503): ``retry_after`` seconds both in the
    ``Retry-After`` header and in the body."""
    return ApiError(
        status,
        code,
        message,
        headers={"Retry-After": str(retry_after)},
        retry_after=retry_after,
    )


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **details: Any
) -> Any:
    body: dict[str, Any] = {"code": code, "message": message, **details}
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def api_error_response(exc: ApiError) -> Any:
    """The JSON answer of ``exc`` (for code that answers instead of raising)."""
    return error_response(exc.status, exc.code, exc.message, exc.headers, **exc.details)


def validation_details(exc: Exception) -> list[dict[str, Any]]:
    """pydantic's errors as ``[{"loc": [...], "msg": "..."}]`` (input values left out:
    they may hold passwords)."""
    if isinstance(exc, ValidationError):
        return [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
    return [{"loc": [], "msg": str(exc) or type(exc).__name__}]


def register_error_handlers(app: Quart) -> None:
    """Every error — ours, HTTP, schema validation, unexpected — answers JSON, never HTML."""

    @app.errorhandler(ApiError)
    async def _api_error(exc: ApiError) -> Any:
        return api_error_response(exc)

    @app.errorhandler(RequestSchemaValidationError)
    async def _schema_error(exc: RequestSchemaValidationError) -> Any:
        return error_response(
            400,
            "validation_error",
            "the request does not match the schema",
            errors=validation_details(exc.validation_error),
        )

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        kept = {k: v for k, v in exc.get_headers() if k in _KEPT_HEADERS}
        return error_response(
            exc.code or 500, code, exc.description or exc.name or "error", headers=kept
        )

    @app.errorhandler(UnicodeDecodeError)
    async def _bad_encoding(exc: UnicodeDecodeError) -> Any:
        # Quart decodes JSON/form bodies as UTF-8 and lets the error escape (found by
        # the schemathesis run in tests/ops/test_fuzz_api.py)
        return error_response(400, "bad_encoding", "the request body is not valid UTF-8")

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Any:
        app.logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
