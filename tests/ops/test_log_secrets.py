"""At LOG_LEVEL=DEBUG the web process's log holds no password hash, password or
database parameter (the ORM logs every statement at DEBUG)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import httpx

from quart_app.core.logs import SQL_PARAMETERS_DROPPED
from tests.support.live import LiveServer, sign_up


async def test_debug_log_holds_no_password_hash(
    start_live_server: Callable[..., Awaitable[LiveServer]],
) -> None:
    web = await start_live_server(log_level="DEBUG")
    username = f"dbg{uuid.uuid4().hex[:10]}"
    password = f"pw-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=web.url, timeout=20) as http:
        _user_id, token = await sign_up(http, username, password)
        bad = await http.post("/api/auth/login", json={"username": username, "password": "nope"})
        assert bad.status_code == 401
        me = await http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
    log = web.output()
    # the statements themselves are logged (so the check below sees the ORM's output) ...
    assert 'INSERT INTO "users"' in log, log[-2000:]
    assert SQL_PARAMETERS_DROPPED in log
    # ... but none of their parameters
    assert "$argon2" not in log
    assert password not in log
    assert token not in log
