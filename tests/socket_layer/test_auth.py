"""Connect auth: only a valid, unexpired token of an existing user, signed with our key,
opens a socket; every refusal is ``{"code": 1008, "reason": "invalid_token"}``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from quart_app.core import tokens
from quart_app.core.tokens import issue_token
from socket_layer.protocol import REASON_INVALID_TOKEN, REASON_UNAVAILABLE, refusal
from tests.conftest import TEST_SECRET
from tests.socket_layer.conftest import token_for
from tests.support.builders import make_user
from tests.support.live import LiveServer
from tests.support.services import drop_database
from tests.support.sio_client import connect_client

INVALID = refusal(REASON_INVALID_TOKEN)


def expired_token(user_id: object, age_s: int) -> str:
    """A correctly signed token issued ``age_s`` seconds ago."""

    class OldSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_s

    serializer = URLSafeTimedSerializer(TEST_SECRET, salt=tokens._SALT, signer=OldSigner)
    return serializer.dumps({"sub": str(user_id), "iat": int(time.time()) - age_s})


async def test_valid_token_in_auth_connects_and_gets_snapshot(
    live_server: LiveServer, db: str, transports: list[str]
) -> None:
    user = await make_user()
    client = await connect_client(live_server.url, token=token_for(user), transports=transports)
    try:
        assert await client.wait_for("snapshot") == {"jobs": []}
        assert client.sio.transport() == transports[0]
    finally:
        await client.close()


async def test_token_in_query_string_is_accepted(
    live_server: LiveServer, db: str, transports: list[str]
) -> None:
    user = await make_user()
    client = await connect_client(
        live_server.url, token=token_for(user), transports=transports, via_query=True
    )
    try:
        assert await client.wait_for("snapshot") == {"jobs": []}
    finally:
        await client.close()


@pytest.mark.parametrize(
    "case",
    ["missing", "empty", "not_a_string", "garbage", "tampered", "query_garbage", "huge"],
)
async def test_missing_or_malformed_token_is_refused(
    live_server: LiveServer, db: str, transports: list[str], case: str
) -> None:
    user = await make_user()
    good = token_for(user)
    kwargs: dict[str, Any] = {"token": None}
    if case == "empty":
        kwargs["auth"] = {"token": ""}
    elif case == "not_a_string":
        kwargs["auth"] = {"token": 12345}
    elif case == "garbage":
        kwargs["token"] = "not-a-token"
    elif case == "tampered":
        kwargs["token"] = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    elif case == "query_garbage":
        kwargs.update(token="abc.def.ghi", via_query=True)
    elif case == "huge":
        kwargs["token"] = "x" * 5000
    client = await connect_client(
        live_server.url, transports=transports, expect_refusal=True, **kwargs
    )
    assert client.refusal == INVALID
    assert client.refusal_message == REASON_INVALID_TOKEN
    assert client.events("snapshot") == []


async def test_expired_token_is_refused(
    live_server: LiveServer, db: str, transports: list[str]
) -> None:
    user = await make_user()
    ttl = live_server.config.access_token_ttl
    fresh_enough = expired_token(user.id, ttl - 60)
    ok = await connect_client(live_server.url, token=fresh_enough, transports=transports)
    await ok.close()
    client = await connect_client(
        live_server.url,
        token=expired_token(user.id, ttl + 5),
        transports=transports,
        expect_refusal=True,
    )
    assert client.refusal == INVALID


async def test_token_signed_with_another_key_is_refused(
    live_server: LiveServer, db: str, transports: list[str]
) -> None:
    user = await make_user()
    foreign = issue_token("some-other-secret-key-0123456789", user.id)
    client = await connect_client(
        live_server.url, token=foreign, transports=transports, expect_refusal=True
    )
    assert client.refusal == INVALID


async def test_token_of_deleted_user_is_refused(
    live_server: LiveServer, db: str, transports: list[str]
) -> None:
    user = await make_user()
    token = token_for(user)
    await user.delete()
    client = await connect_client(
        live_server.url, token=token, transports=transports, expect_refusal=True
    )
    assert client.refusal == INVALID


async def test_database_down_refuses_with_unavailable_instead_of_hanging(
    start_live_server: Callable[..., Awaitable[LiveServer]], fresh_pg_url: str
) -> None:
    web = await start_live_server(database_url=fresh_pg_url)
    await drop_database(fresh_pg_url)  # ends the server's connections too
    token = issue_token(TEST_SECRET, uuid.uuid4())
    for transports in (["websocket"], ["polling"]):
        client = await connect_client(
            web.url, token=token, transports=transports, expect_refusal=True, wait_s=8
        )
        assert client.refusal == refusal(REASON_UNAVAILABLE)
        assert client.refusal["code"] == 1011
