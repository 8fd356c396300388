"""Registration, login, tokens and the login throttle (real DB, real Redis)."""

from __future__ import annotations

import time
from unittest import mock

import pytest

from quart_app.core.tokens import issue_token
from tests.conftest import TEST_SECRET
from tests.quart_app.conftest import Api, ApiFactory
from tests.support.builders import PASSWORD, make_user, unique_name


async def test_register_login_me(api: Api) -> None:
    name = unique_name("reg")
    status, body = await api.call(
        "POST", "/api/auth/register", json={"username": name, "password": "long-enough-pw"}
    )
    assert status == 201 and body["username"] == name
    status, dup = await api.call(
        "POST", "/api/auth/register", json={"username": name, "password": "long-enough-pw"}
    )
    assert status == 409 and dup["code"] == "username_taken"

    status, token = await api.call(
        "POST", "/api/auth/login", json={"username": name, "password": "long-enough-pw"}
    )
    assert status == 200
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == api.config.access_token_ttl
    status, me = await api.call(
        "GET", "/api/me", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert status == 200 and me["id"] == body["id"] and me["username"] == name


@pytest.mark.parametrize(
    "payload",
    [
        {"username": "ab", "password": "long-enough-pw"},  # too short
        {"username": "bad name!", "password": "long-enough-pw"},
        {"username": "shortpw_user", "password": "short"},
        {"username": "nopassword"},
        {"username": "x", "password": "long-enough-pw", "extra": 1},
    ],
)
async def test_register_rejects_bad_input_with_json(
    pg_api: Api, payload: dict[str, object]
) -> None:
    status, body = await pg_api.call("POST", "/api/auth/register", json=payload)
    assert status == 400
    assert set(body) >= {"code", "message"}


async def test_registration_disabled_answers_403(
    pg_database_url: str, api_factory: ApiFactory
) -> None:
    async with api_factory(pg_database_url, allow_registration=False) as api:
        status, body = await api.call(
            "POST", "/api/auth/register", json={"username": unique_name(), "password": "x" * 12}
        )
        assert status == 403 and body["code"] == "registration_disabled"
        status, options = await api.call("GET", "/api/auth/options")
        assert status == 200 and options == {"allow_registration": False}


async def test_wrong_password_and_unknown_user_are_401(api: Api) -> None:
    user = await make_user()
    for username, password in ((user.username, "wrong-password"), (unique_name(), PASSWORD)):
        status, body = await api.call(
            "POST", "/api/auth/login", json={"username": username, "password": password}
        )
        assert status == 401 and body["code"] == "invalid_login"


async def test_token_failures_are_401(api: Api) -> None:
    user = await make_user()
    good = issue_token(TEST_SECRET, user.id)
    assert (await api.call("GET", "/api/me", headers={"Authorization": f"Bearer {good}"}))[0] == 200

    with mock.patch("itsdangerous.timed.time.time", return_value=time.time() - 10 * 86400):
        expired = issue_token(TEST_SECRET, user.id)
    payload, _, signature = good.rpartition(".")
    tampered = f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    other_key = issue_token("another-secret-key-0123456789", user.id)
    cases = {
        "missing": {},
        "not bearer": {"Authorization": f"Basic {good}"},
        "empty bearer": {"Authorization": "Bearer "},
        "garbage": {"Authorization": "Bearer not-a-token"},
        "expired": {"Authorization": f"Bearer {expired}"},
        "tampered": {"Authorization": f"Bearer {tampered}"},
        "other key": {"Authorization": f"Bearer {other_key}"},
    }
    for name, headers in cases.items():
        status, body = await api.call("GET", "/api/me", headers=headers)
        assert status == 401, name
        assert body["code"] == "unauthorized", name
    # a protected route, not only /api/me
    status, _ = await api.call("GET", "/api/jobs", headers=cases["expired"])
    assert status == 401


async def test_token_of_deleted_user_is_401(pg_api: Api) -> None:
    user = await make_user()
    headers = pg_api.headers(user)
    await user.delete()
    status, body = await pg_api.call("GET", "/api/me", headers=headers)
    assert status == 401


async def test_login_throttled_per_username_and_address(
    pg_database_url: str, api_factory: ApiFactory
) -> None:
    async with api_factory(pg_database_url, login_max_attempts=3, login_window=60) as api:
        user = await make_user()
        here = {"client": ("10.1.1.1", 4000)}
        elsewhere = {"client": ("10.2.2.2", 4000)}

        async def login(password: str, scope: dict[str, object]) -> tuple[int, object, object]:
            response = await api.client.post(
                "/api/auth/login",
                json={"username": user.username, "password": password},
                scope_base=scope,
            )
            return response.status_code, await response.get_json(), response.headers

        for _ in range(3):
            assert (await login("wrong-password", here))[0] == 401
        status, body, headers = await login(PASSWORD, here)  # even the right password
        assert status == 429
        assert body["code"] == "too_many_attempts"  # type: ignore[index]
        retry_after = int(headers["Retry-After"])  # type: ignore[index]
        assert 1 <= retry_after <= 60
        # another address is not locked out; the right password works there
        assert (await login(PASSWORD, elsewhere))[0] == 200

    # a second app (another process would share the same Redis): still throttled
    async with api_factory(pg_database_url, login_max_attempts=3, login_window=60) as api2:
        response = await api2.client.post(
            "/api/auth/login",
            json={"username": user.username, "password": PASSWORD},
            scope_base=here,
        )
        assert response.status_code == 429


async def test_successful_login_resets_the_counter(
    pg_database_url: str, api_factory: ApiFactory
) -> None:
    async with api_factory(pg_database_url, login_max_attempts=2, login_window=60) as api:
        user = await make_user()

        async def login(password: str) -> int:
            body = {"username": user.username, "password": password}
            return (await api.call("POST", "/api/auth/login", json=body))[0]

        assert await login("nope-nope") == 401
        assert await login(PASSWORD) == 200
        assert await login("nope-nope") == 401
        assert await login(PASSWORD) == 200


async def test_login_fails_closed_when_redis_is_down(
    pg_database_url: str, api_factory: ApiFactory
) -> None:
    from tests.support.services import free_port

    async with api_factory(pg_database_url, redis_url=f"redis://127.0.0.1:{free_port()}/0") as api:
        user = await make_user()
        status, body = await api.call(
            "POST", "/api/auth/login", json={"username": user.username, "password": PASSWORD}
        )
        assert status == 503 and body["code"] == "unavailable"
