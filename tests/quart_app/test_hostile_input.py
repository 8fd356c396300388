"""Hostile request bodies answer a clear 4xx JSON, never a 500: deep JSON, NUL and
control characters, bodies over their route's limit, usernames that differ in case."""

from __future__ import annotations

import json

import pytest

from models.entities import User, Video, VideoList
from tests.quart_app.conftest import Api
from tests.support.builders import PASSWORD, make_list, make_user, multipart, unique_name


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("depth", [1_000, 100_000])
async def test_deeply_nested_json_is_400_everywhere(pg_api: Api, depth: int) -> None:
    user = await make_user()
    vlist = await make_list(user)
    body = b'{"username": ' + nested(depth) + b', "password": "x"}'
    status, answer = await pg_api.call("POST", "/api/auth/login", data=body, headers=JSON)
    if depth <= 1_000:  # fits the login body limit: parsed and refused
        assert status == 400 and answer["code"] == "invalid_json", answer
    else:  # does not even fit
        assert status == 413 and answer["code"] == "request_entity_too_large", answer
    lists_body = b'{"name": ' + nested(depth) + b"}"
    status, answer = await pg_api.call("POST", "/api/lists", user, data=lists_body, headers=JSON)
    assert status in (400, 413) and answer["code"] in ("invalid_json", "request_entity_too_large")
    bulk = b'{"videos": ' + nested(depth) + b"}"
    status, answer = await pg_api.call(
        "POST", f"/api/lists/{vlist.id}/videos/bulk", user, data=bulk, headers=JSON
    )
    assert status == 400 and answer["code"] == "invalid_json", answer


async def test_just_below_the_recursion_limit_is_an_ordinary_validation_error(
    pg_api: Api,
) -> None:
    body = b'{"username": ' + nested(500) + b', "password": "x"}'
    status, answer = await pg_api.call("POST", "/api/auth/login", data=body, headers=JSON)
    assert status == 400 and answer["code"] == "validation_error"


async def test_nul_in_a_list_name_is_400_and_nothing_is_stored(pg_api: Api) -> None:
    user = await make_user()
    for name in ("bad\u0000name", "\u0000"):
        body = json.dumps({"name": name}).encode()
        status, answer = await pg_api.call("POST", "/api/lists", user, data=body, headers=JSON)
        assert status == 400 and answer["code"] == "nul_character", answer
    # an escaped backslash followed by the text u0000 is not a NUL
    body = json.dumps({"name": "not \\u0000 a nul"}).encode()
    status, answer = await pg_api.call("POST", "/api/lists", user, data=body, headers=JSON)
    assert status == 201 and answer["name"] == "not \\u0000 a nul"
    assert await VideoList.filter(owner_id=user.id).count() == 1


async def test_nul_or_control_characters_in_an_upload_filename_are_400(pg_api: Api) -> None:
    user = await make_user()
    vlist = await make_list(user)
    path = f"/api/lists/{vlist.id}/videos/upload"
    for filename in ("clip\x00.mp4", "clip\x1b[31m.mp4", "tab\there.mp4", "del\x7f.mp4"):
        body, headers = multipart([("file", filename, b"x" * 10)])
        status, answer = await pg_api.call("POST", path, user, data=body, headers=headers)
        assert status == 400 and answer["code"] == "invalid_filename", (filename, answer)
    assert await Video.filter(list_id=vlist.id).count() == 0
    # the same rule as CSV titles otherwise: Unicode kept (NFC), whitespace trimmed
    body, headers = multipart([("file", "  Cafe\u0301 clip .mp4", b"x" * 10)])
    status, answer = await pg_api.call("POST", path, user, data=body, headers=headers)
    assert status == 202, answer
    video = await Video.get(job_id=answer["job_id"])
    assert video.title == "Caf\u00e9 clip"


async def test_login_body_over_its_limit_is_413_before_the_view(pg_api: Api) -> None:
    user = await make_user()
    padding = " " * (4 * 1024)
    body = json.dumps({"username": user.username, "password": PASSWORD}).encode()
    status, _ = await pg_api.call("POST", "/api/auth/login", data=body, headers=JSON)
    assert status == 200
    status, answer = await pg_api.call(
        "POST", "/api/auth/login", data=body[:-1] + padding.encode() + b"}", headers=JSON
    )
    assert status == 413 and answer["code"] == "request_entity_too_large"
    assert "4096 bytes" in answer["message"]


async def test_usernames_are_case_insensitive(pg_api: Api) -> None:
    name = unique_name("case")
    creds = {"username": name.upper(), "password": "long-enough-pw"}
    status, created = await pg_api.call("POST", "/api/auth/register", json=creds)
    assert status == 201 and created["username"] == name.lower()
    status, answer = await pg_api.call(
        "POST", "/api/auth/register", json={**creds, "username": name.lower()}
    )
    assert status == 409 and answer["code"] == "username_taken"
    for spelling in (name.lower(), name.upper(), name.capitalize()):
        status, _ = await pg_api.call(
            "POST", "/api/auth/login", json={**creds, "username": spelling}
        )
        assert status == 200, spelling
    # an account stored in mixed case before the rule still logs in, in any case
    legacy = await make_user(unique_name("Legacy"))
    assert legacy.username != legacy.username.lower()
    status, _ = await pg_api.call(
        "POST", "/api/auth/login", json={"username": legacy.username.lower(), "password": PASSWORD}
    )
    assert status == 200
    assert await User.filter(username__iexact=name).count() == 1
