"""The built SPA is served with a client-side-route fallback; API paths never fall back."""

from __future__ import annotations

from pathlib import Path

from quart import Quart

from quart_app.errors import register_error_handlers
from quart_app.web import register_web


def spa_app(dist: Path) -> Quart:
    app = Quart(__name__, static_folder=None)
    register_error_handlers(app)
    register_web(app, dist)
    return app


def build_dist(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><div id=root></div>")
    (dist / "assets" / "app-1234.js").write_text("console.log(1)")
    return dist


async def test_client_side_routes_get_index_html(tmp_path: Path) -> None:
    client = spa_app(build_dist(tmp_path)).test_client()
    for path in ("/", "/lists/abc", "/jobs/123"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert "id=root" in (await response.get_data(as_text=True))


async def test_assets_are_served_with_long_cache(tmp_path: Path) -> None:
    response = await spa_app(build_dist(tmp_path)).test_client().get("/assets/app-1234.js")
    assert response.status_code == 200
    assert "immutable" in response.headers["Cache-Control"]


async def test_api_paths_and_missing_files_answer_json_404(tmp_path: Path) -> None:
    client = spa_app(build_dist(tmp_path)).test_client()
    for path in ("/api/nope", "/assets/missing.js", "/metrics/x"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert (await response.get_json())["code"] == "not_found"


async def test_path_traversal_does_not_leave_dist(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("s3cret")
    client = spa_app(build_dist(tmp_path)).test_client()
    response = await client.get("/..%2fsecret.txt")
    assert "s3cret" not in (await response.get_data(as_text=True))


async def test_unbuilt_ui_answers_a_clear_503(tmp_path: Path) -> None:
    response = await spa_app(tmp_path / "nothing").test_client().get("/")
    assert response.status_code == 503
    assert (await response.get_json())["code"] == "web_not_built"
