"""Serving the built single-page app (``web/dist``) with a fallback to ``index.html``.

Anything under ``/api`` or ``/metrics`` is never answered here, so an unknown API path
still gets the JSON 404 of :mod:`quart_app.errors`.
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Quart, Response, send_file
from quart_schema import hide

from quart_app.errors import ApiError

WEB_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"
_RESERVED = ("api/", "metrics")


def create_web_blueprint(dist: Path = WEB_DIST) -> Blueprint:
    """Routes for the SPA; ``dist`` is read at request time so a rebuild needs no restart."""
    bp = Blueprint("web", __name__)
    root_dir = dist.resolve()

    async def _index() -> Response:
        index = dist / "index.html"
        if not index.is_file():
            raise ApiError(503, "web_not_built", "the web UI is not built: run `make run`")
        response = await send_file(index, mimetype="text/html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    # the SPA's pages are not part of the API: left out of /openapi.json
    @bp.get("/")
    @hide
    async def root() -> Response:
        return await _index()

    @bp.get("/<path:path>")
    @hide
    async def spa(path: str) -> Response:
        if path.startswith(_RESERVED):
            raise ApiError(404, "not_found", "no such resource")
        candidate = (dist / path).resolve()
        if candidate.is_file() and candidate.is_relative_to(root_dir):
            response = await send_file(candidate)
            if path.startswith("assets/"):  # Vite fingerprints these file names
                response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
            return response
        if "." in path.rsplit("/", 1)[-1]:  # a missing file, not a client-side route
            raise ApiError(404, "not_found", "no such file")
        return await _index()

    return bp


def register_web(app: Quart, dist: Path = WEB_DIST) -> None:
    """Attach the SPA routes; call after the API blueprints."""
    app.register_blueprint(create_web_blueprint(dist))
