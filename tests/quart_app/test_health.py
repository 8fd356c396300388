"""Liveness and readiness with real and broken dependencies."""

from __future__ import annotations

from tests.quart_app.conftest import Api, ApiFactory
from tests.support.services import free_port


async def test_health_and_ready(api: Api) -> None:
    assert await api.call("GET", "/api/health") == (200, {"status": "ok"})
    status, body = await api.call("GET", "/api/ready")
    assert status == 200
    assert body["checks"] == {"database": "ok", "redis": "ok"}


async def test_ready_names_redis_when_it_is_down(
    pg_database_url: str, api_factory: ApiFactory
) -> None:
    async with api_factory(pg_database_url, redis_url=f"redis://127.0.0.1:{free_port()}/0") as api:
        assert (await api.call("GET", "/api/health"))[0] == 200  # liveness does not care
        status, body = await api.call("GET", "/api/ready")
        assert status == 503
        assert body["code"] == "not_ready" and "redis" in body["message"]
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["redis"].startswith("failed")


async def test_ready_names_the_database_when_it_is_down(
    pg_database_url: str, api_factory: ApiFactory
) -> None:
    from tortoise import connections

    async with api_factory(pg_database_url) as api:
        await connections.get("default").close()
        connections.get("default").database = "reeltrack_no_such_database"  # type: ignore[attr-defined]
        status, body = await api.call("GET", "/api/ready")
        assert status == 503, body
        assert "database" in body["message"] and body["checks"]["redis"] == "ok"
