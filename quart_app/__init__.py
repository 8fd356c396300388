"""Quart web application: app factory, REST API, auth tokens, CLI.

``create_app`` is imported lazily so that ``quart_app.config`` and
``quart_app.tokens`` can be used by the worker without importing Quart.
"""

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from quart_app.app import create_app

        return create_app
    raise AttributeError(name)
