"""/openapi.json describes every route; /docs serves the Swagger UI."""

from __future__ import annotations

from typing import Any

from tests.quart_app.conftest import Api

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


async def test_docs_page(pg_api: Api) -> None:
    response = await pg_api.client.get("/docs")
    assert response.status_code == 200
    assert "/openapi.json" in (await response.get_data(as_text=True))
