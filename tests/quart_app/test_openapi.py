"""/openapi.json describes every route and validates; /docs serves Swagger UI from here."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from openapi_spec_validator import validate

from quart_app.security import DOCS_CSP
from tests.quart_app.conftest import Api
from tests.support.web_types import openapi_document

EXPECTED = {
    "/api/auth/register": {"post"},
    "/api/auth/login": {"post"},
    "/api/auth/options": {"get"},
    "/api/me": {"get"},
    "/api/lists": {"get", "post"},
    "/api/lists/{list_id}": {"get", "delete"},
    "/api/lists/{list_id}/videos": {"get"},
    "/api/lists/{list_id}/videos/bulk": {"post"},
    "/api/lists/{list_id}/videos/upload": {"post"},
    "/api/videos/{video_id}": {"get"},
    "/api/videos/{video_id}/thumbnail": {"get"},
    "/api/jobs": {"get"},
    "/api/jobs/{job_id}": {"get", "delete"},
    "/api/jobs/{job_id}/cancel": {"post"},
    "/api/jobs/{job_id}/retry": {"post"},
    "/api/jobs/cancel": {"post"},
    "/api/jobs/{job_id}/progress-history": {"get"},
    "/api/health": {"get"},
    "/api/ready": {"get"},
}
PUBLIC = {"/api/auth/register", "/api/auth/login", "/api/auth/options", "/api/health", "/api/ready"}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


async def test_openapi_document_is_valid_and_lists_routes(pg_api: Api) -> None:
    status, doc = await pg_api.call("GET", "/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] == "reeltrack" and doc["info"]["version"]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
    }
    paths = doc["paths"]
    for path, methods in EXPECTED.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
        for method in methods:
            operation = paths[path][method]
            assert operation["responses"], (path, method)
            secured = operation.get("security") == [{"bearer": []}]
            assert secured == (path not in PUBLIC), (path, method)
            for parameter in operation.get("parameters", []):
                assert parameter["in"] in {"path", "query", "header", "cookie"}
    history = paths["/api/jobs/{job_id}/progress-history"]["get"]
    assert {p["name"] for p in history["parameters"] if p["in"] == "query"} >= {
        "since",
        "after_seq",
        "limit",
    }
    # the listings' pagination, filters and search, with examples
    jobs = paths["/api/jobs"]["get"]
    params = {p["name"]: p for p in jobs["parameters"] if p["in"] == "query"}
    assert set(params) >= {"status", "list_id", "q", "limit", "cursor"}
    assert (
        params["limit"]["schema"]["maximum"] == 100 and params["limit"]["schema"]["default"] == 20
    )
    for name in ("status", "list_id", "q", "cursor"):
        assert params[name]["description"] and params[name]["schema"].get("examples"), name
    videos = paths["/api/lists/{list_id}/videos"]["get"]
    assert {p["name"] for p in videos["parameters"] if p["in"] == "query"} >= {
        "status",
        "limit",
        "cursor",
    }
    for path in ("/api/lists/{list_id}/videos/bulk", "/api/lists/{list_id}/videos/upload"):
        query = {p["name"] for p in paths[path]["post"]["parameters"] if p["in"] == "query"}
        assert query >= {"name", "priority"}, path
    page = jobs["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(page["properties"]) == {"items", "next_cursor"}
    job = _resolve(doc, page["properties"]["items"]["items"]["$ref"])
    assert {
        "name",
        "source",
        "priority",
        "list_id",
        "list_name",
        "created_at",
        "started_at",
        "finished_at",
        "retryable_videos",
    } <= set(job["properties"])
    assert job["properties"]["priority"]["enum"] == ["high", "normal", "low"]
    assert job.get("examples"), "JobOut has an example"
    retry = paths["/api/jobs/{job_id}/retry"]["post"]
    assert {"202", "404", "409"} <= set(retry["responses"])
    bulk = paths["/api/lists/{list_id}/videos/bulk"]["post"]["requestBody"]["content"]
    body = bulk["application/json"]["schema"]
    assert {"name", "priority", "videos"} <= set(body["properties"]) and body.get("examples")
    # every $ref points at something that exists
    for ref in _refs(doc):
        assert _resolve(doc, ref) is not None, ref


def test_openapi_document_passes_the_validator_and_documents_every_answer() -> None:
    doc = openapi_document()
    validate(doc)  # openapi-spec-validator: raises on the first error
    paths = doc["paths"]
    assert "/" not in paths and "/{path}" not in paths, "the SPA routes are not API"
    assert not any(p.startswith("/docs") for p in paths)
    error = doc["components"]["schemas"]["ErrorOut"]
    assert {"code", "message"} <= set(error["required"])
    assert {"rows", "errors", "retry_after"} <= set(error["properties"])
    assert {t["name"] for t in doc["tags"]} >= {"auth", "lists", "videos", "jobs"}
    for path, operations in paths.items():
        for method, operation in operations.items():
            where = (method, path)
            assert operation["summary"] and "``" not in operation["summary"], where
            assert "``" not in operation.get("description", ""), where
            responses = operation["responses"]
            assert any(s.startswith("2") for s in responses), where
            assert {"403", "500"} <= set(responses), where
            if operation.get("security"):
                assert {"401", "429"} <= set(responses), where
            if "{" in path:
                assert "404" in responses, where
            for status, response in responses.items():
                assert response["description"], (where, status)
                media = response.get("content", {}).get("application/json")
                if media is not None:
                    assert media.get("example") is not None, (where, status)
                if int(status) >= 400:
                    assert media["schema"] == {"$ref": "#/components/schemas/ErrorOut"}, where
                    assert set(media["example"]) >= {"code", "message"}, where


def test_bodies_read_by_hand_are_documented() -> None:
    paths = openapi_document()["paths"]
    bulk = paths["/api/lists/{list_id}/videos/bulk"]["post"]
    content = bulk["requestBody"]["content"]
    assert set(content) == {"application/json", "text/csv", "multipart/form-data"}
    assert content["text/csv"]["example"].startswith("url,title\n")
    csv_file = content["multipart/form-data"]["schema"]["properties"]["file"]
    assert csv_file["format"] == "binary"
    assert "415" in bulk["responses"]
    upload = paths["/api/lists/{list_id}/videos/upload"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"]
    assert form["properties"]["file"]["items"]["format"] == "binary"
    assert {p["name"] for p in upload["parameters"] if p["in"] == "query"} >= {"name", "priority"}
    assert {"413", "415", "429"} <= set(upload["responses"])
    thumbnail = paths["/api/videos/{video_id}/thumbnail"]["get"]
    assert set(thumbnail["responses"]["200"]["content"]) == {"image/jpeg"}
    assert {p["name"] for p in thumbnail["parameters"]} >= {"video_id", "u", "sig"}
    deletion = paths["/api/lists/{list_id}"]["delete"]["responses"]
    assert deletion["204"]["description"]


async def test_docs_page_loads_only_same_origin_assets(pg_api: Api) -> None:
    response = await pg_api.client.get("/docs")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == DOCS_CSP
    assert "script-src 'self';" in DOCS_CSP and "http" not in DOCS_CSP
    page = await response.get_data(as_text=True)
    assert "<script>" not in page, "no inline script: the CSP allows none"
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(assets) == 4, assets
    for asset in assets:
        assert asset.startswith("/docs/assets/"), asset
        answer = await pg_api.client.get(asset)
        assert answer.status_code == 200, asset
        body = await answer.get_data()
        assert len(body) > 100, asset
    start = await (await pg_api.client.get("/docs/assets/start.js")).get_data(as_text=True)
    assert '"/openapi.json"' in start
    # only the listed files of the package are served
    assert (await pg_api.client.get("/docs/assets/index.html")).status_code == 404
    assert (await pg_api.client.get("/docs/assets/..%2Fswagger-ui.js")).status_code == 404


async def test_timestamps_are_the_iso_date_time_the_document_promises(pg_api: Api) -> None:
    _, headers = await pg_api.new_user()
    status, created = await pg_api.call("POST", "/api/lists", headers=headers, json={"name": "t"})
    assert status == 201
    schema = openapi_document()["paths"]["/api/lists"]["post"]["responses"]["201"]["content"]
    assert schema["application/json"]["schema"]["properties"]["created_at"]["format"] == (
        "date-time"
    )
    # ISO 8601 with its offset, not an HTTP date ("Tue, 01 Dec 2026 22:03:29 GMT")
    stamp = datetime.fromisoformat(created["created_at"])
    assert stamp.tzinfo is not None
