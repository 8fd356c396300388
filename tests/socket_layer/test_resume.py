"""``resume`` with ack: exactly the user's missed events in (job, seq) order, capped and
validated; a client that drops and returns catches up from history, then live."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from socket_layer.emitter import ProgressEmitter
from tests.socket_layer.conftest import token_for
from tests.support.builders import add_event, add_events, make_empty_job, make_user
from tests.support.live import LiveServer
from tests.support.services import drop_database
from tests.support.sio_client import connect_client


async def test_resume_returns_exactly_the_missing_events_in_order(
    live_server: LiveServer, db: str, transports: list[str]
) -> None:
    user = await make_user()
    job = await make_empty_job(user)
    events = [await add_event(job, status="pending"), *await add_events(job, 9)]
    other = await make_empty_job(user)
    other_events = [await add_event(other, status="pending"), *await add_events(other, 2)]
    client = await connect_client(live_server.url, token=token_for(user), transports=transports)
    try:
        ack = await client.call("resume", {"jobs": {str(job.id): 3}})
        assert ack == {"events": events[3:], "truncated": False}
        assert [e["seq"] for e in ack["events"]] == list(range(4, 11))

        assert await client.call("resume", {"jobs": {str(job.id): 10}}) == {
            "events": [],
            "truncated": False,
        }
        assert await client.call("resume", {"jobs": {str(job.id): 0}}) == {
            "events": events,
            "truncated": False,
        }
        # several jobs: (job, seq) order; an unknown job id is ignored
        both = await client.call(
            "resume", {"jobs": {str(other.id): 1, str(job.id): 8, str(uuid.uuid4()): 0}}
        )
        expected = sorted(events[8:] + other_events[1:], key=lambda e: (e["job_id"], e["seq"]))
        assert both == {"events": expected, "truncated": False}
        assert await client.call("resume", {"jobs": {}}) == {"events": [], "truncated": False}
    finally:
        await client.close()


JUNK: list[Any] = [
    None,
    "jobs",
    [],
    {},
    {"jobs": "all"},
    {"jobs": [1, 2]},
    {"jobs": {"not-a-uuid": 1}},
    {"jobs": {"00000000-0000-0000-0000-000000000001": -1}},
    {"jobs": {"00000000-0000-0000-0000-000000000001": "3"}},
    {"jobs": {"00000000-0000-0000-0000-000000000001": True}},
    {"jobs": {"00000000-0000-0000-0000-000000000001": 1.5}},
    {"jobs": {}, "extra": 1},
]


async def test_junk_resume_payloads_get_an_error_ack_and_the_socket_stays(
    live_server: LiveServer, db: str, transports: list[str]
) -> None:
    user = await make_user()
    job = await make_empty_job(user)
    first = await add_event(job, status="pending")
    client = await connect_client(live_server.url, token=token_for(user), transports=transports)
    try:
        for payload in JUNK:
            ack = await client.call("resume", payload)
            assert set(ack) == {"error"} and isinstance(ack["error"], str), (payload, ack)
        assert client.sio.connected
        ack = await client.call("resume", {"jobs": {str(job.id): 0}})
        assert ack == {"events": [first], "truncated": False}
    finally:
        await client.close()


async def test_resume_caps_jobs_and_events(
    start_live_server: Callable[..., Awaitable[LiveServer]], db: str, transports: list[str]
) -> None:
    server = await start_live_server(resume_max_jobs=3, resume_max_events=5)
    user = await make_user()
    jobs = [await make_empty_job(user) for _ in range(3)]
    for job in jobs:
        await add_event(job, status="pending")
        await add_events(job, 2)
    client = await connect_client(server.url, token=token_for(user), transports=transports)
    try:
        too_many = {str(j.id): 0 for j in jobs} | {str(uuid.uuid4()): 0}
        ack = await client.call("resume", {"jobs": too_many})
        assert "error" in ack and "3" in ack["error"]
        ack = await client.call("resume", {"jobs": {str(j.id): 0 for j in jobs}})
        assert ack["truncated"] is True
        everything = sorted(
            [(str(j.id), s) for j in jobs for s in (1, 2, 3)],
        )
        assert [(e["job_id"], e["seq"]) for e in ack["events"]] == everything[:5]
    finally:
        await client.close()


async def test_client_that_drops_catches_up_with_resume_then_live(
    live_server: LiveServer, db: str, transports: list[str], emitter: ProgressEmitter
) -> None:
    """Drop after seq 3, return at seq 7: resume gives 4..7, then live 8.., and the
    result equals the history."""
    user = await make_user()
    job = await make_empty_job(user, total_videos=10)
    token = token_for(user)
    client = await connect_client(live_server.url, token=token, transports=transports)
    received: list[dict[str, Any]] = []
    drop_after = 3
    try:
        published = []
        for status in ["pending", "processing", "processing"]:
            event = await add_event(job, status=status)
            published.append(event)
            await emitter.publish_progress(user.id, event)
        received = await client.wait_for("progress", count=drop_after)
    finally:
        await client.close()
    last_seq = received[-1]["seq"]
    assert last_seq == drop_after

    for _ in range(4):  # 4..7 while away; nobody receives them
        event = await add_event(job)
        published.append(event)
        await emitter.publish_progress(user.id, event)

    back = await connect_client(live_server.url, token=token, transports=transports)
    try:
        snap = await back.wait_for("snapshot")
        assert snap["jobs"][0]["seq"] == 7
        ack = await back.call("resume", {"jobs": {str(job.id): last_seq}})
        assert [e["seq"] for e in ack["events"]] == [4, 5, 6, 7]
        received += ack["events"]
        for status in ["processing", "processing", "completed"]:
            event = await add_event(job, status=status)
            published.append(event)
            await emitter.publish_progress(user.id, event)
        received += await back.wait_for("progress", count=3)
    finally:
        await back.close()
    assert [e["seq"] for e in received] == list(range(1, 11))
    assert received == published
    assert received[-1]["status"] == "completed" and received[-1]["progress"] == 100


async def test_resume_while_the_database_is_down_answers_unavailable_at_once(
    start_live_server: Callable[..., Awaitable[LiveServer]], fresh_pg_url: str
) -> None:
    web = await start_live_server(database_url=fresh_pg_url)
    async with httpx.AsyncClient(base_url=web.url) as http:
        creds = {"username": "resume-outage", "password": "correct horse battery"}
        assert (await http.post("/api/auth/register", json=creds)).status_code == 201
        token = (await http.post("/api/auth/login", json=creds)).json()["access_token"]
    client = await connect_client(web.url, token=token, transports=["websocket"])
    try:
        await drop_database(fresh_pg_url)  # ends the server's DB connections too
        started = time.monotonic()
        ack = await client.call("resume", {"jobs": {str(uuid.uuid4()): 0}})
        assert ack == {"error": "unavailable"}
        assert time.monotonic() - started < 5  # an answer, not the client's ack timeout
    finally:
        await client.close()
