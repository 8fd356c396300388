"""Parsing JSON request bodies: one function, one policy for every endpoint.

- A body nested so deep that the parser exhausts the interpreter's recursion limit
  (about 1,000 levels) is refused with 400 ``invalid_json``.
- A string (key or value) holding U+0000 is refused with 400 ``nul_character``:
  PostgreSQL cannot store NUL in text, and silently stripping it would store something
  the client did not send.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Quart
from quart.json.provider import DefaultJSONProvider

from quart_app.errors import ApiError


def _has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def loads_request_json(data: str | bytes) -> Any:
    """Parse a request body as JSON.

    Raises ApiError 400: ``invalid_json`` (not JSON, not UTF-8, nested too deeply) or
    ``nul_character`` (a string holds U+0000).
    """
    try:
        text = data.decode() if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid UTF-8") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise ApiError(400, "invalid_json", "the JSON is nested too deeply") from None
    except ValueError:
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    # a NUL can only arrive escaped (a raw one is invalid JSON): walk only then
    if "\\u0000" in text and _has_nul(value):
        raise ApiError(400, "nul_character", "a string in the body contains a NUL character")
    return value


class RequestJSONProvider(DefaultJSONProvider):
    """Quart's JSON provider whose ``loads`` (used for request bodies) applies the
    policy of :func:`loads_request_json`."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads_request_json(s)


def install_json_policy(app: Quart) -> None:
    app.json = RequestJSONProvider(app)
