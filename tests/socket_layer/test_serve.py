"""``reeltrack serve``: the access log never holds a token; SIGTERM shuts down cleanly
(sockets closed, their connection slots released, exit code 0)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from redis import asyncio as aioredis

from quart_app.serve import ACCESS_LOG_FORMAT, RedactedAccessLogAtoms
from socket_layer.protocol import SOCKETIO_PATH, presence_key
from tests.conftest import TEST_SECRET
from tests.socket_layer.conftest import token_for
from tests.support.builders import make_user
from tests.support.live import LiveServer
from tests.support.sio_client import connect_client
from tests.support.waiting import wait_until


def test_access_log_atoms_hold_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_TEST_SECRET_ENV", "env-secret-value")
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/ws/progress/",
        "query_string": b"EIO=4&token=tok.en-SECRET_1&transport=polling",
        "client": ("127.0.0.1", 5555),
        "headers": [
            (b"authorization", b"Bearer bearer-SECRET"),
            (b"referer", b"http://x/?token=ref-SECRET"),
            (b"cookie", b"session=cookie-SECRET"),
        ],
    }
    atoms = RedactedAccessLogAtoms(scope, {"status": 200, "headers": []}, 0.01)
    values = " ".join(str(v) for v in dict(atoms).values())
    for secret in ("SECRET", "env-secret-value"):
        assert secret not in values
    line = ACCESS_LOG_FORMAT % atoms
    assert "token=[redacted]" in line and "EIO=4" in line and "transport=polling" in line
    assert atoms["{authorization}i"] == "[redacted]"
    assert atoms["{rt_test_secret_env}e"] == "-"


async def test_no_access_log_by_default_at_info(
    start_live_server: Callable[..., Awaitable[LiveServer]], db: str
) -> None:
    live_server = await start_live_server(log_level="INFO")
    user = await make_user()
    client = await connect_client(live_server.url, token=token_for(user), transports=["websocket"])
    await client.wait_for("snapshot")
    await client.close()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live_server.url}/api/health?probe=quiet") as response:
            assert response.status == 200
    out = live_server.output()
    assert "probe=quiet" not in out
    assert SOCKETIO_PATH not in out


async def test_access_log_of_a_live_server_never_contains_the_token(
    start_live_server: Callable[..., Awaitable[LiveServer]], db: str
) -> None:
    live_server = await start_live_server(access_log=True)
    user = await make_user()
    token = token_for(user)
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{live_server.url}/api/health?token={token}&probe=access-log",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 200
    for transports in (["polling"], ["websocket"]):
        client = await connect_client(
            live_server.url, token=token, transports=transports, via_query=True
        )
        await client.wait_for("snapshot")
        await client.close()
    refused = await connect_client(
        live_server.url, token=token + "x", transports=["polling"], expect_refusal=True
    )
    assert refused.refusal is not None

    def logged() -> bool:
        out = live_server.output()
        return "probe=access-log" in out and out.count(f"{SOCKETIO_PATH}/?") >= 3

    assert await wait_until(logged, 10, interval=0.1), live_server.output()[-2000:]
    out = live_server.output()
    assert token not in out
    assert token.split(".")[-1] not in out  # not even the signature part
    assert TEST_SECRET not in out
    assert "token=[redacted]" in out


async def test_sigterm_closes_sockets_releases_slots_and_exits_zero(
    start_live_server: Callable[..., Awaitable[LiveServer]], db: str, redis_url: str
) -> None:
    web = await start_live_server()
    user = await make_user()
    token = token_for(user)
    clients = [
        await connect_client(web.url, token=token, transports=["websocket"]),
        await connect_client(web.url, token=token, transports=["polling"]),
    ]
    redis = aioredis.Redis.from_url(redis_url)
    try:
        assert await redis.zcard(presence_key(user.id)) == 2
        started = time.monotonic()
        code = await web.astop()
        took = time.monotonic() - started
        assert code == 0, web.output()[-2000:]
        assert took < 8, took
        for client in clients:
            await asyncio.wait_for(client.disconnected.wait(), 5)
        # released at shutdown, not merely expired later
        assert await redis.zcard(presence_key(user.id)) == 0
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        await redis.aclose()


async def test_cross_origin_socket_is_refused_unless_configured(
    live_server: LiveServer, start_live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    handshake = f"{SOCKETIO_PATH}/?EIO=4&transport=polling"

    async def status(server: LiveServer, origin: str) -> int:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}{handshake}", headers={"Origin": origin}) as r:
                return r.status

    # CORS_ORIGINS empty: same origin only
    assert await status(live_server, live_server.url) == 200
    assert await status(live_server, "http://evil.example") == 400
    web = await start_live_server(cors_origins=("http://app.example",))
    assert await status(web, "http://app.example") == 200
    assert await status(web, "http://evil.example") == 400


def test_live_server_passes_every_setting() -> None:
    from quart_app.core.config import ENV_VARS
    from tests.support.live import CONFIG_ENV

    assert set(CONFIG_ENV.values()) == set(ENV_VARS), "add new settings to CONFIG_ENV"


@pytest.mark.parametrize("hops", [0, 1])
async def test_login_throttle_sees_the_forwarded_client_only_behind_trusted_proxies(
    start_live_server: Callable[..., Awaitable[LiveServer]], hops: int
) -> None:
    web = await start_live_server(trusted_proxy_hops=hops, login_max_attempts=2)
    creds = {"username": f"proxied-{hops}", "password": "correct horse battery"}
    async with aiohttp.ClientSession(base_url=web.url) as http:
        async with http.post("/api/auth/register", json=creds) as r:
            assert r.status == 201
        wrong = {**creds, "password": "wrong password!"}

        async def attempt(address: str) -> int:
            headers = {"X-Forwarded-For": address}
            async with http.post("/api/auth/login", json=wrong, headers=headers) as r:
                return r.status

        assert [await attempt("203.0.113.7") for _ in range(3)] == [401, 401, 429]
        # another client behind the same proxy: its own count only when the proxy is trusted
        assert await attempt("198.51.100.9") == (401 if hops else 429)
