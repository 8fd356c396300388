"""The OpenAPI document of the REST API, completed where route decorators cannot say it.

quart_schema builds the document from the views' decorators; :class:`ApiDocument`
finishes it in this one place:

- the error shape is one component (``ErrorOut``) and every operation lists the errors
  it can answer, each with a description and an example: 403 ``origin_not_allowed`` and
  500 everywhere, 401 and 429 ``rate_limited`` where a bearer token is required, 400 where
  there are parameters or a body, 408/413 where there is a body, 404 where there is a
  path parameter;
- every response has a description and, for JSON, an example (the model's own example,
  else one assembled from its fields' examples);
- request bodies the views read by hand: the bulk import's ``text/csv`` and multipart
  ``file`` next to its JSON body, the upload's multipart ``file`` parts; the thumbnail's
  ``image/jpeg`` answer; 204 for deletions;
- summaries are the docstring's first sentence, descriptions are Markdown (reST's
  double backquotes become single ones), uuid path parameters say ``format: uuid``.

Raises nothing at import; :meth:`ApiDocument.schema` raises KeyError when an operation
this module completes (by operationId) no longer exists, so a rename is noticed.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable
from typing import Any

from quart_schema import OpenAPIProvider
from werkzeug.routing.converters import BaseConverter
from werkzeug.routing.rules import Rule

from quart_app.api.schemas import ErrorOut

ERROR_REF = "#/components/schemas/ErrorOut"
JSON = "application/json"

#: status -> (description, example code, example message)
ERRORS: dict[str, tuple[str, str, str]] = {
    "400": (
        "Bad request: a parameter or the body does not validate (``validation_error`` with "
        "``errors``; an import lists its bad ``rows``)",
        "validation_error",
        "the request does not match the schema",
    ),
    "401": (
        "No valid bearer token (or, on login, a wrong username or password)",
        "unauthorized",
        "missing or invalid bearer token",
    ),
    "403": (
        "Forbidden: a browser origin not in CORS_ORIGINS, or the action is switched off",
        "origin_not_allowed",
        "this origin may not call the API (CORS_ORIGINS)",
    ),
    "404": (
        "Not found, or not the caller's (another user's resource answers the same)",
        "not_found",
        "no such resource",
    ),
    "408": (
        "The body stalled or trickled (BODY_READ_TIMEOUT, BODY_MIN_RATE); the connection is closed",
        "request_timeout",
        "the request body arrived too slowly",
    ),
    "409": ("Conflict with the resource's current state", "conflict", "the job is still active"),
    "413": (
        "The body is over this route's limit",
        "too_large",
        "the request body is too large",
    ),
    "415": (
        "A content type this route does not read",
        "unsupported_media_type",
        "send text/csv, multipart/form-data with a 'file', or application/json",
    ),
    "429": (
        "Too many requests: wait ``retry_after`` seconds (also in the Retry-After header)",
        "rate_limited",
        "more than 600 requests per minute; retry after 12 s",
    ),
    "500": ("Unexpected server error (logged)", "internal_error", "internal server error"),
    "503": (
        "A service the request needs (database, Redis) is unavailable; retry later",
        "unavailable",
        "the job queue is unavailable, retry later",
    ),
}
SUCCESS = {
    "200": "OK",
    "201": "Created",
    "202": "Accepted: the work is queued",
    "204": "Done; no body",
    "304": "Not modified since the If-None-Match / If-Modified-Since given",
}

CSV_EXAMPLE = (
    "url,title\n"
    "https://example.com/talks/keynote.mp4,Keynote\n"
    "talks/day1/panel.mp4,Panel (a file under IMPORT_ROOT)\n"
)


def _file_form(file: dict[str, Any], *, content_type: str) -> dict[str, Any]:
    """A multipart/form-data body whose one required field ``file`` has the schema
    ``file`` and parts of ``content_type``."""
    return {
        "schema": {"type": "object", "required": ["file"], "properties": {"file": file}},
        "encoding": {"file": {"contentType": content_type}},
    }


#: operationId -> extra request body content types the view reads by hand
EXTRA_REQUEST_CONTENT: dict[str, dict[str, Any]] = {
    "post_bulk_import": {
        "text/csv": {
            "schema": {
                "type": "string",
                "description": "CSV with a `url,title` header; title may be empty",
            },
            "example": CSV_EXAMPLE,
        },
        "multipart/form-data": _file_form(
            {
                "type": "string",
                "format": "binary",
                "contentMediaType": "text/csv",
                "description": "the CSV file (same format as a text/csv body)",
            },
            content_type="text/csv",
        ),
    },
    "post_upload": {
        "multipart/form-data": _file_form(
            {
                "type": "array",
                "items": {"type": "string", "format": "binary"},
                "description": "video files, one part each (field name `file`, "
                "repeated); each becomes a video of the new job. The job's name "
                "and priority are query parameters",
            },
            content_type="video/*, application/octet-stream",
        ),
    },
}
#: operationId -> responses that are not JSON
EXTRA_RESPONSES: dict[str, dict[str, Any]] = {
    "get_thumbnail": {
        "200": {
            "description": "The JPEG thumbnail",
            "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        },
        "304": {"description": SUCCESS["304"]},
    },
}
#: operationId -> query parameters the view reads by hand
EXTRA_PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "get_thumbnail": [
        {
            "name": "u",
            "in": "query",
            "description": "owner id from the video's signed ``thumbnail_url`` (with sig)",
            "schema": {"type": "string", "format": "uuid"},
        },
        {
            "name": "sig",
            "in": "query",
            "description": "signature from the video's ``thumbnail_url``: no bearer needed",
            "schema": {"type": "string"},
        },
    ],
}
TAGS = [
    {"name": "auth", "description": "Accounts and bearer tokens"},
    {"name": "lists", "description": "Video lists"},
    {"name": "videos", "description": "Videos of a list: imports, uploads, thumbnails"},
    {"name": "jobs", "description": "Processing jobs, their progress and history"},
    {"name": "health", "description": "Liveness and readiness probes"},
]

_SENTENCE_END = re.compile(r"(?<=\.)\s")
_REST_LITERAL = re.compile(r"``([^`]+)``")
_UUID_EXAMPLE = "3f2b8c1e-9a4d-4e57-b1c2-6d0f8e7a5b34"


def _markdown(text: str) -> str:
    return _REST_LITERAL.sub(r"`\1`", text)


def _summary(doc: str | None, fallback: str) -> tuple[str, str | None]:
    """(first sentence, whole docstring as Markdown) of a view's docstring."""
    if not doc:
        return fallback.replace("_", " ").capitalize(), None
    text = " ".join(inspect.cleandoc(doc).split("\n\n", 1)[0].split())
    first = _SENTENCE_END.split(text, 1)[0].rstrip(".")
    return _markdown(first), _markdown(inspect.cleandoc(doc))


def example_of(schema: Any, doc: dict[str, Any], depth: int = 0) -> Any:
    """An example value for ``schema``: its own example, else one built from its parts."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    if "example" in schema:
        return schema["example"]
    if schema.get("examples"):
        return schema["examples"][0]
    if "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"][2:].split("/"):
            node = node[part]
        return example_of(node, doc, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example_of(options[0], doc, depth + 1)
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {k: example_of(v, doc, depth + 1) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [example_of(schema.get("items", {}), doc, depth + 1)]
    if kind == "string":
        return {"uuid": _UUID_EXAMPLE, "date-time": "2026-12-01T10:00:00Z"}.get(
            schema.get("format", ""), "text"
        )
    return {"integer": 1, "number": 1.5, "boolean": True}.get(str(kind))


def _error_response(status: str) -> dict[str, Any]:
    description, code, message = ERRORS[status]
    return {
        "description": _markdown(description),
        "content": {
            JSON: {"schema": {"$ref": ERROR_REF}, "example": {"code": code, "message": message}}
        },
    }


def _is_error_schema(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("title") == "ErrorOut"


class ApiDocument(OpenAPIProvider):
    """quart_schema's provider with the completions listed in the module docstring."""

    def build_paths(self, rule: Rule) -> tuple[dict, dict]:
        paths, components = super().build_paths(rule)
        func: Callable[..., Any] = self._app.view_functions[rule.endpoint]
        for operations in paths.values():
            for operation in operations.values():
                summary, description = _summary(func.__doc__, func.__name__)
                operation["summary"] = summary
                if description:
                    operation["description"] = description
                else:
                    operation.pop("description", None)
        return paths, components

    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        parameter = super().build_path_parameter(name, converter)
        if type(converter).__name__ == "UUIDConverter":
            parameter["schema"] = {"type": "string", "format": "uuid"}
        return parameter

    def schema(self) -> dict[str, Any]:
        doc = super().schema()
        doc["components"]["schemas"]["ErrorOut"] = ErrorOut.model_json_schema()
        doc["tags"] = TAGS
        found: set[str] = set()
        for path, operations in doc["paths"].items():
            for operation in operations.values():
                found.add(operation.get("operationId", ""))
                self._complete(path, operation, doc)
        missing = (set(EXTRA_REQUEST_CONTENT) | set(EXTRA_RESPONSES)) - found
        if missing:
            raise KeyError(f"operations to complete are gone: {sorted(missing)}")
        return doc

    def _complete(self, path: str, operation: dict[str, Any], doc: dict[str, Any]) -> None:
        op_id = operation.get("operationId", "")
        # what the decorators declared decides the generic errors, before the additions
        secured = bool(operation.get("security"))
        parameters = list(operation.get("parameters", []))
        has_body = "requestBody" in operation or op_id in EXTRA_REQUEST_CONTENT
        # quart_schema keys responses by int; JSON makes them strings anyway
        responses = {str(k): v for k, v in operation.get("responses", {}).items()}
        if op_id in EXTRA_PARAMETERS:
            operation.setdefault("parameters", []).extend(copy.deepcopy(EXTRA_PARAMETERS[op_id]))
        if op_id in EXTRA_REQUEST_CONTENT:
            body = operation.setdefault("requestBody", {"content": {}})
            body["content"].update(copy.deepcopy(EXTRA_REQUEST_CONTENT[op_id]))
            body["required"] = True
        responses.update(copy.deepcopy(EXTRA_RESPONSES.get(op_id, {})))
        if not any(status.startswith(("2", "3")) for status in responses):
            responses["204"] = {"description": SUCCESS["204"]}

        statuses = {"403", "500"}
        if secured:
            statuses |= {"401", "429"}
        if has_body or any(p.get("in") == "query" for p in parameters):
            statuses.add("400")
        if has_body:
            statuses |= {"408", "413"}
            if len(operation["requestBody"]["content"]) > 1 or op_id in EXTRA_REQUEST_CONTENT:
                statuses.add("415")
        if any(p.get("in") == "path" for p in parameters):
            statuses.add("404")
        for status in statuses:
            responses.setdefault(status, {})

        for status, response in responses.items():
            if status in ERRORS and (
                not response
                or _is_error_schema(response.get("content", {}).get(JSON, {}).get("schema"))
            ):
                documented = response.get("description")
                response.clear()
                response.update(_error_response(status))
                if documented:
                    response["description"] = documented
                continue
            if not response.get("description"):
                response["description"] = SUCCESS.get(status) or ERRORS.get(status, ("",))[0]
            media = response.get("content", {}).get(JSON)
            if media is not None and "example" not in media:
                media["example"] = example_of(media.get("schema"), doc)
        operation["responses"] = dict(sorted(responses.items()))
        for mimetype, media in operation.get("requestBody", {}).get("content", {}).items():
            if mimetype == JSON and "example" not in media:
                media["example"] = example_of(media.get("schema"), doc)
