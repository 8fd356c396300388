"""Limits and HTTP security at their edges: N allowed, N+1 refused with a clear 4xx JSON.

(Upload size, CSV rows, login throttling, thumbnails of others, connections per user,
``resume`` size and Socket.IO origins are tested at their edges where they are built:
tests/quart_app/test_lists.py, test_imports.py, test_auth.py, tests/socket_layer/.)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from quart import Response

from models.entities import User
from quart_app import security
from quart_app.app import create_app
from quart_app.core import origins
from quart_app.core.config import Config, ConfigError
from tests.support.builders import auth_headers, make_user

WINDOW_START = 1_900_000_020.0  # a minute boundary (divisible by 60)


class Client:
    def __init__(self, app: Any, config: Config) -> None:
        self.app = app
        self.config = config
        self.client = app.test_client()

    async def call(
        self, method: str, path: str, user: User | None = None, **kwargs: Any
    ) -> tuple[int, Any, Any]:
        headers = dict(kwargs.pop("headers", {}) or {})
        if user is not None:
            headers.update(auth_headers(self.config, user))
        response = await self.client.open(path, method=method, headers=headers, **kwargs)
        raw = await response.get_data()
        body = json.loads(raw) if response.mimetype == "application/json" else raw
        return response.status_code, body, response.headers


@pytest.fixture
def app_factory(
    make_config: Callable[..., Config], redis_url: str, pg_database_url: str
) -> Callable[..., contextlib.AbstractAsyncContextManager[Client]]:
    @contextlib.asynccontextmanager
    async def build(**overrides: Any) -> AsyncIterator[Client]:
        overrides.setdefault("redis_url", redis_url.rsplit("/", 1)[0] + "/3")
        config = make_config(pg_database_url, **overrides)
        app = create_app(config)

        @app.get("/__test_html")
        async def html() -> Response:
            return Response("<p>hello</p>", mimetype="text/html")

        async with app.test_app() as test_app:
            yield Client(test_app, config)

    return build


# --- request body size ------------------------------------------------------------------


async def test_request_body_at_the_limit_passes_one_byte_more_is_413(
    app_factory: Callable[..., Any],
) -> None:
    async with app_factory(max_request_bytes=2000) as api:
        user = await make_user()

        def body(size: int) -> bytes:
            raw = json.dumps({"name": "n"}).encode()
            return raw[:-1] + b" " * (size - len(raw)) + b"}"

        headers = {"Content-Type": "application/json"}
        status, answer, _ = await api.call(
            "POST", "/api/lists", user, data=body(2000), headers=headers
        )
        assert status == 201, answer
        status, answer, _ = await api.call(
            "POST", "/api/lists", user, data=body(2001), headers=headers
        )
        assert status == 413
        assert answer["code"] == "request_entity_too_large" and answer["message"]


# --- REST rate limit per user -------------------------------------------------------------


@pytest.fixture
def pinned_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    now = {"t": WINDOW_START + 5}
    monkeypatch.setattr(security, "clock", lambda: now["t"])

    def set_time(t: float) -> None:
        now["t"] = t

    return set_time


async def test_rate_limit_allows_n_per_minute_then_429_with_retry_after(
    app_factory: Callable[..., Any], pinned_clock: Callable[[float], None]
) -> None:
    async with app_factory(rate_limit_per_minute=5) as api:
        user, other = await make_user(), await make_user()
        for i in range(5):
            status, body, _ = await api.call("GET", "/api/me", user)
            assert status == 200, (i, body)
        status, body, headers = await api.call("GET", "/api/me", user)
        assert status == 429
        assert body["code"] == "rate_limited" and "5 requests per minute" in body["message"]
        assert headers["Retry-After"] == "55"  # until the next minute starts
        assert body["retry_after"] == 55
        # refused requests do not count, other users are not affected, nor is health
        assert (await api.call("GET", "/api/me", user))[0] == 429
        assert (await api.call("GET", "/api/me", other))[0] == 200
        assert (await api.call("GET", "/api/health"))[0] == 200
        # a bad token is not rate limited here: it is refused by the view (401)
        bad = {"Authorization": "Bearer nonsense"}
        assert (await api.call("GET", "/api/me", headers=bad))[0] == 401

        # sliding window: 30 s into the next minute the 5 of the previous one weigh 2.5,
        # so 2 more fit (2.5 + 2 <= 5) and the third does not
        pinned_clock(WINDOW_START + 60 + 30)
        assert (await api.call("GET", "/api/me", user))[0] == 200
        assert (await api.call("GET", "/api/me", user))[0] == 200
        status, body, headers = await api.call("GET", "/api/me", user)
        assert status == 429 and 1 <= int(headers["Retry-After"]) <= 30
        # two minutes later the window is empty again
        pinned_clock(WINDOW_START + 180)
        for _ in range(5):
            assert (await api.call("GET", "/api/me", user))[0] == 200


async def test_rate_limit_zero_means_off(
    app_factory: Callable[..., Any], pinned_clock: Callable[[float], None]
) -> None:
    async with app_factory(rate_limit_per_minute=0) as api:
        user = await make_user()
        for _ in range(30):
            assert (await api.call("GET", "/api/me", user))[0] == 200


async def test_rate_limit_holds_across_processes_sharing_redis(
    app_factory: Callable[..., Any], pinned_clock: Callable[[float], None]
) -> None:
    # one app after the other (Tortoise allows one per process), as two web processes
    # would count: the budget is the user's, kept in Redis
    user = None
    async with app_factory(rate_limit_per_minute=4) as first:
        user = await make_user()
        for _ in range(2):
            assert (await first.call("GET", "/api/me", user))[0] == 200
    async with app_factory(rate_limit_per_minute=4) as second:
        for _ in range(2):
            assert (await second.call("GET", "/api/me", user))[0] == 200
        assert (await second.call("GET", "/api/me", user))[0] == 429


async def test_rate_limit_passes_when_redis_is_down(
    app_factory: Callable[..., Any], pinned_clock: Callable[[float], None]
) -> None:
    from tests.support.services import free_port

    async with app_factory(
        rate_limit_per_minute=1, redis_url=f"redis://127.0.0.1:{free_port()}/0"
    ) as api:
        user = await make_user()
        for _ in range(3):
            assert (await api.call("GET", "/api/me", user))[0] == 200


# --- CORS ------------------------------------------------------------------------------------


async def test_cors_allows_configured_and_same_origin_refuses_others(
    app_factory: Callable[..., Any],
) -> None:
    async with app_factory(cors_origins=("https://app.example",)) as api:
        user = await make_user()
        # a configured origin: allowed, and told so
        status, _, headers = await api.call(
            "GET", "/api/me", user, headers={"Origin": "https://app.example"}
        )
        assert status == 200
        assert headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Origin" in headers["Vary"]
        # its preflight is answered
        status, _, headers = await api.call(
            "OPTIONS",
            "/api/lists",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert status == 204
        assert headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Authorization" in headers["Access-Control-Allow-Headers"]
        assert "POST" in headers["Access-Control-Allow-Methods"]
        # the app's own origin (the SPA's POSTs carry Origin too)
        status, _, headers = await api.call(
            "POST",
            "/api/lists",
            user,
            json={"name": "same origin"},
            headers={"Origin": "http://localhost"},
        )
        assert status == 201
        # anything else: refused with JSON, before the view runs, preflight included
        for method, origin in (
            ("GET", "https://evil.example"),
            ("POST", "https://app.example.evil.example"),
            ("OPTIONS", "null"),
        ):
            extra = {"Access-Control-Request-Method": "POST"} if method == "OPTIONS" else {}
            status, body, headers = await api.call(
                method,
                "/api/lists",
                user,
                json={"name": "x"} if method == "POST" else None,
                headers={"Origin": origin, **extra},
            )
            assert status == 403, (method, origin)
            assert body["code"] == "origin_not_allowed"
            assert "Access-Control-Allow-Origin" not in headers
        assert len((await api.call("GET", "/api/lists", user))[1]["lists"]) == 1


async def test_without_cors_origins_only_the_same_origin_may_call(
    app_factory: Callable[..., Any],
) -> None:
    async with app_factory() as api:
        user = await make_user()
        status, _, _ = await api.call(
            "GET", "/api/me", user, headers={"Origin": "http://localhost"}
        )
        assert status == 200
        status, body, _ = await api.call(
            "GET", "/api/me", user, headers={"Origin": "https://app.example"}
        )
        assert status == 403 and body["code"] == "origin_not_allowed"


# --- security headers ------------------------------------------------------------------------


async def test_html_responses_carry_csp_and_framing_denial(
    app_factory: Callable[..., Any],
) -> None:
    async with app_factory() as api:
        status, _, headers = await api.call("GET", "/__test_html")
        assert status == 200
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "object-src 'none'" in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        # JSON too gets nosniff and no-referrer (a ?token= URL must not leak via Referer)
        status, _, headers = await api.call("GET", "/api/health")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        # the API docs (Swagger UI served from here) may not be framed either
        status, _, headers = await api.call("GET", "/docs")
        assert status == 200
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "script-src 'self';" in headers["Content-Security-Policy"]


@pytest.mark.skipif(
    not (Path(__file__).resolve().parents[2] / "web" / "dist" / "index.html").exists(),
    reason="web/dist not built (make test builds it before pytest)",
)
async def test_the_single_page_app_is_served_with_csp(app_factory: Callable[..., Any]) -> None:
    async with app_factory() as api:
        for path in ("/", "/lists/some-client-side-route"):
            status, _, headers = await api.call("GET", path)
            assert status == 200
            assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


# --- SECRET_KEY -----------------------------------------------------------------------------


def test_secret_key_is_mandatory_in_production(tmp_path: Path) -> None:
    base = {"VAR_DIR": str(tmp_path), "REELTRACK_ENV": "production"}
    with pytest.raises(ConfigError, match="SECRET_KEY is required"):
        Config.from_env(base)
    with pytest.raises(ConfigError, match="SECRET_KEY: string should have at least 16 characters"):
        Config.from_env({**base, "SECRET_KEY": "x" * 15})
    assert Config.from_env({**base, "SECRET_KEY": "x" * 16}).secret_key == "x" * 16
    # nothing was generated into VAR_DIR in production
    assert not (tmp_path / "secret_key").exists()
    # in development a missing key is generated once (0600) and then reused
    dev = Config.from_env({"VAR_DIR": str(tmp_path)})
    assert len(dev.secret_key) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert Config.from_env({"VAR_DIR": str(tmp_path)}).secret_key == dev.secret_key


def test_origin_matching_rules() -> None:
    config = Config(cors_origins=("https://app.example",))
    allowed = origins.origin_allowed
    assert allowed("https://app.example", config, "api.example")
    assert allowed("https://app.example/", config, "api.example")
    assert allowed("http://api.example:8080", config, "api.example:8080")
    # a proxy that forwards the host without its port: the name decides
    assert allowed("http://api.example:8080", config, "api.example")
    assert not allowed("http://api.example:8080", config, "api.example:9090")
    assert not allowed("https://evil.example", config, "api.example")
    assert not allowed("https://api.example.evil.example", config, "api.example")
    assert not allowed("null", config, "api.example")
    assert not allowed("https://app.example", Config(), "api.example")
