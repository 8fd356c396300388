"""``GET /docs``: Swagger UI served from this server, so it works without internet.

The assets come from the installed ``swagger-ui-bundle-v2`` package (Swagger UI 5,
which renders OpenAPI 3.1; the ``swagger-ui-bundle`` 1.x package holds Swagger UI 4,
which refuses a 3.1 document).  The page has no inline script: the start-up code is
its own file, so the page's Content-Security-Policy can allow scripts from this
origin only (``quart_app.security.DOCS_CSP``).  None of these routes is in the
OpenAPI document.
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Quart, Response, send_file
from quart_schema import hide
from swagger_ui_bundle import swagger_ui_path

from quart_app.errors import ApiError

DOCS_PATH = "/docs"
ASSETS = Path(str(swagger_ui_path))
#: the only files of the package served: the bundle, its preset and its stylesheet
SERVED_ASSETS = ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css")

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>reeltrack API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/swagger-ui-standalone-preset.js"></script>
  <script src="/docs/assets/start.js"></script>
</body>
</html>
"""
START_JS = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "BaseLayout",
  validatorUrl: null
});
"""


def create_docs_blueprint() -> Blueprint:
    """The page and its assets; raises nothing (a missing asset answers 404 JSON)."""
    bp = Blueprint("docs_ui", __name__)

    @bp.get(DOCS_PATH)
    @hide
    async def docs_page() -> Response:
        return Response(PAGE, mimetype="text/html", headers={"Cache-Control": "no-cache"})

    @bp.get(DOCS_PATH + "/assets/start.js")
    @hide
    async def docs_start() -> Response:
        return Response(START_JS, mimetype="text/javascript")

    @bp.get(DOCS_PATH + "/assets/<name>")
    @hide
    async def docs_asset(name: str) -> Response:
        if name not in SERVED_ASSETS:
            raise ApiError(404, "not_found", "no such file")
        response = await send_file(ASSETS / name, conditional=True)
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    return bp


def register_docs(app: Quart) -> None:
    """Attach /docs; call before the SPA's catch-all routes."""
    app.register_blueprint(create_docs_blueprint())
