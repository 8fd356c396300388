"""Malformed Socket.IO traffic against a real web process: garbage engine.io frames over a
raw websocket and over long-polling, wrong namespaces, oversize messages (at the
``WS_MAX_MESSAGE_BYTES`` edge, both transports) and ``resume`` with junk are refused —
and two well-behaved clients of another user, one per transport, stay connected and
keep receiving their live events throughout."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from models.entities import User
from quart_app.core.tokens import issue_token
from socket_layer.emitter import ProgressEmitter
from socket_layer.protocol import ERROR_RESUME_IN_PROGRESS, SOCKETIO_PATH
from tests.conftest import TEST_SECRET, live_config, tortoise_open
from tests.support.builders import add_event, make_empty_job, make_user
from tests.support.live import LiveServer
from tests.support.sio_client import RecordingClient, connect_client
from tests.support.waiting import wait_for

MAX_MESSAGE = 2048


def token(user: User) -> str:
    return issue_token(TEST_SECRET, user.id)


def eio_url(server: LiveServer, transport: str, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in {"EIO": "4", "transport": transport, **query}.items())
    return f"{server.url}{SOCKETIO_PATH}/?{params}"


async def polling_session(http: aiohttp.ClientSession, server: LiveServer) -> str:
    """Open an engine.io long-polling session by hand; returns its sid."""
    async with http.get(eio_url(server, "polling")) as r:
        assert r.status == 200
        return str(json.loads((await r.text())[1:])["sid"])


class Witnesses:
    """Two clients of one user (websocket, polling) and the job whose events they get."""

    def __init__(self, server: LiveServer, user: User, clients: list[RecordingClient]) -> None:
        self.server = server
        self.user = user
        self.clients = clients
        self.sent = 0

    async def check_alive(self, emitter: ProgressEmitter, job: Any) -> None:
        """Publish one more event; every witness receives it, none was disconnected."""
        event = await add_event(job)
        await emitter.publish_progress(self.user.id, event)
        self.sent += 1
        for client in self.clients:
            assert not client.disconnected.is_set(), "a witness was disconnected"
            await client.wait_for("progress", count=self.sent, wait_s=10)
        assert self.server.proc is not None and self.server.proc.poll() is None


@pytest.fixture(scope="module")
async def module_db(pg_database_url: str) -> AsyncIterator[str]:
    """Tortoise open on the session PostgreSQL for the whole module (``setup`` and the
    tests create rows)."""
    async with tortoise_open(pg_database_url) as url:
        yield url


@pytest.fixture(scope="module")
async def setup(
    module_db: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[LiveServer, Witnesses, ProgressEmitter, Any]]:
    """ONE web process for the module, and the witnesses connected across all tests."""
    config = live_config(
        tmp_path_factory.mktemp("hostile"),
        module_db,
        redis_url,
        ws_max_message_bytes=MAX_MESSAGE,
        log_level="INFO",
        # the junk test sends 17 well-formed resumes back to back per user: room for
        # them in the user's bucket (the limit itself is tested in test_resume_flood)
        resume_burst=JUNK_TEST_RESUMES,
    )
    server = await LiveServer(config).astart()
    user = await make_user()
    job = await make_empty_job(user, total_videos=100)
    await add_event(job, status="pending")
    clients = [
        await connect_client(server.url, token=token(user), transports=["websocket"]),
        await connect_client(server.url, token=token(user), transports=["polling"]),
    ]
    emitter = ProgressEmitter.for_config(server.config)
    try:
        yield server, Witnesses(server, user, clients), emitter, job
    finally:
        for client in clients:
            await client.close()
        await emitter.close()
        await asyncio.to_thread(server.close)


async def test_garbage_over_a_raw_websocket_is_refused(
    setup: tuple[LiveServer, Witnesses, ProgressEmitter, Any],
) -> None:
    server, witnesses, emitter, job = setup
    attacker = await make_user()
    garbage: list[str | bytes] = [
        "zzz",
        "",
        "4",
        "42",
        "42[",
        '42["resume",',
        "49999999999999999999",
        "40/nonexistent,",
        "\x00\x01\x02",
        b"\x00\xff\xfe binary junk",
        "6",  # NOOP outside an upgrade
        "5",  # UPGRADE without a probe
        '42["resume",{"jobs":{"' + "x" * 100 + '":1}}]',
    ]
    async with aiohttp.ClientSession() as http:
        for frame in garbage:
            async with http.ws_connect(eio_url(server, "websocket")) as ws:
                opened = await ws.receive(timeout=5)
                assert opened.type == aiohttp.WSMsgType.TEXT and opened.data.startswith("0")
                await ws.send_str(f'40{{"token":"{token(attacker)}"}}')
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
                # whatever the server makes of it, it must not crash or leak: read until
                # it closes or goes quiet
                with pytest.raises((TimeoutError, asyncio.TimeoutError)):
                    while True:
                        msg = await ws.receive(timeout=0.5)
                        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                            raise TimeoutError
                        if msg.type == aiohttp.WSMsgType.TEXT and msg.data.startswith("42"):
                            assert "progress" not in msg.data  # nothing of another user
        await witnesses.check_alive(emitter, job)


async def test_garbage_over_long_polling_is_refused(
    setup: tuple[LiveServer, Witnesses, ProgressEmitter, Any],
) -> None:
    server, witnesses, emitter, job = setup
    async with aiohttp.ClientSession() as http:
        # bad handshakes: protocol version, transport, unknown session
        for url in (
            eio_url(server, "polling").replace("EIO=4", "EIO=3"),
            eio_url(server, "carrier-pigeon"),
            eio_url(server, "polling", sid="not-a-session"),
        ):
            async with http.get(url) as r:
                assert r.status == 400, url
        async with http.post(eio_url(server, "polling", sid="nope"), data="40") as r:
            assert r.status == 400
        # a real session, then junk payloads
        sid = await polling_session(http, server)
        for body in ("zzz", "4\x1e4\x1e4", '42["resume"', "\x1e\x1e", "40/admin,"):
            async with http.post(eio_url(server, "polling", sid=sid), data=body) as r:
                assert r.status < 500, body
        await witnesses.check_alive(emitter, job)


async def test_oversize_messages_are_refused_at_the_edge_on_both_transports(
    setup: tuple[LiveServer, Witnesses, ProgressEmitter, Any],
) -> None:
    server, witnesses, emitter, job = setup
    user = await make_user()

    def resume_frame(size: int) -> str:
        """A ``resume`` event with ack id 1 of exactly ``size`` characters."""
        head = '421["resume",{"jobs":{},"pad":"'
        tail = '"}]'
        return head + "x" * (size - len(head) - len(tail)) + tail

    async with aiohttp.ClientSession() as http:
        # websocket: exactly MAX_MESSAGE is read (and answered), one more closes the socket
        for size, refused in ((MAX_MESSAGE, False), (MAX_MESSAGE + 1, True)):
            async with http.ws_connect(eio_url(server, "websocket")) as ws:
                await ws.receive(timeout=5)
                await ws.send_str(f'40{{"token":"{token(user)}"}}')
                # the connect ack ("40{sid}") and the snapshot, in either order
                seen = [(await ws.receive(timeout=5)).data for _ in range(2)]
                assert any(m.startswith("40") for m in seen), seen
                frame = resume_frame(size)
                assert len(frame) == size
                await ws.send_str(frame)
                answers = []
                closed = False
                try:
                    while True:
                        msg = await ws.receive(timeout=3)
                        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                            closed = True
                            break
                        answers.append(msg.data)
                        if msg.data.startswith("431"):
                            break
                except TimeoutError:
                    pass
                if refused:
                    assert closed and not any(a.startswith("431") for a in answers), answers
                else:
                    ack = [a for a in answers if a.startswith("431")]
                    assert ack and "error" in ack[0], answers  # the junk key is refused

        # long-polling: a POST body of MAX_MESSAGE is read, one byte more is 413
        for size, status in ((MAX_MESSAGE, 200), (MAX_MESSAGE + 1, 413)):
            sid = await polling_session(http, server)
            body = resume_frame(size)
            async with http.post(eio_url(server, "polling", sid=sid), data=body) as r:
                assert r.status == status, (size, await r.text())
                if status == 413:
                    assert (await r.json())["code"] == "message_too_large"
        await witnesses.check_alive(emitter, job)


async def test_wrong_namespaces_are_refused(
    setup: tuple[LiveServer, Witnesses, ProgressEmitter, Any],
) -> None:
    server, witnesses, emitter, job = setup
    user = await make_user()
    for transports in (["websocket"], ["polling"]):
        client = RecordingClient()
        try:
            with pytest.raises(Exception):  # noqa: B017 - socketio raises ConnectionError
                await asyncio.wait_for(
                    client.sio.connect(
                        server.url,
                        namespaces=["/admin"],
                        auth={"token": token(user)},
                        transports=transports,
                        socketio_path=SOCKETIO_PATH,
                        wait_timeout=5,
                    ),
                    10,
                )
        finally:
            await client.close()
    await witnesses.check_alive(emitter, job)


JUNK_RESUMES: list[Any] = [
    None,
    "jobs",
    42,
    [],
    ["jobs"],
    {},
    {"jobs": "x"},
    {"jobs": []},
    {"jobs": {"not-a-uuid": 1}},
    {"jobs": {str(uuid.uuid4()): -1}},
    {"jobs": {str(uuid.uuid4()): True}},
    {"jobs": {str(uuid.uuid4()): "3"}},
    {"jobs": {str(uuid.uuid4()): 1.5}},
    {"jobs": {str(uuid.uuid4()): None}},
    {"jobs": {str(uuid.uuid4()): {"nested": [1, 2]}}},
    {"jobs": {}, "extra": 1},
]
#: well-formed but another user's / nobody's job with an absurd seq: an empty answer
HARMLESS_RESUMES: list[Any] = [{"jobs": {str(uuid.uuid4()): 10**30}}]
#: well-formed resumes one user sends in the junk test (one after each junk payload)
JUNK_TEST_RESUMES = len(JUNK_RESUMES) + len(HARMLESS_RESUMES)
EMPTY_RESUME = {"events": [], "truncated": False}
IN_PROGRESS = {"error": ERROR_RESUME_IN_PROGRESS}


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]], ids=["websocket", "polling"])
async def test_resume_with_junk_answers_an_error_and_the_connection_lives(
    setup: tuple[LiveServer, Witnesses, ProgressEmitter, Any], transports: list[str]
) -> None:
    server, witnesses, emitter, job = setup
    user = await make_user()
    client = await connect_client(server.url, token=token(user), transports=transports)
    try:
        for payload in JUNK_RESUMES:
            ack = await client.call("resume", payload, wait_s=10)
            assert isinstance(ack, dict) and isinstance(ack.get("error"), str), (payload, ack)
            # the junk sender itself is still served
            assert await client.call("resume", {"jobs": {}}) == EMPTY_RESUME
        for payload in HARMLESS_RESUMES:
            ack = await client.call("resume", payload, wait_s=10)
            assert ack == EMPTY_RESUME, (payload, ack)
        # and events of other users never reached it
        assert client.events("progress") == []
        assert not client.disconnected.is_set()
    finally:
        await client.close()
    await witnesses.check_alive(emitter, job)


async def test_unknown_events_and_calls_without_ack_are_ignored(
    setup: tuple[LiveServer, Witnesses, ProgressEmitter, Any],
) -> None:
    server, witnesses, emitter, job = setup
    user = await make_user()
    client = await connect_client(server.url, token=token(user), transports=["websocket"])
    try:
        await client.sio.emit("no-such-event", {"x": 1})
        await client.sio.emit("resume", {"jobs": {str(job.id): 0}})  # no ack: nothing back
        await client.sio.emit("progress", {"fake": True})  # clients cannot publish
        await client.sio.emit("resume")
        # another user's job: ignored silently.  The ack-less resume may still be in
        # flight (one per socket at a time): then this one is refused at once, and one
        # sent after it has been answered is served.
        answers = [await client.call("resume", {"jobs": {str(job.id): 0}})]

        async def served() -> bool:
            answers.append(await client.call("resume", {"jobs": {str(job.id): 0}}))
            return answers[-1] == EMPTY_RESUME

        if answers[0] != EMPTY_RESUME:
            await wait_for(served, within=10, what="a resume after the ack-less one")
        assert all(a in (EMPTY_RESUME, IN_PROGRESS) for a in answers), answers
        assert not client.disconnected.is_set()
    finally:
        await client.close()
    await witnesses.check_alive(emitter, job)
    out = server.output()
    assert "Traceback" not in out, out[out.find("Traceback") - 300 :][:4000]


async def test_other_origins_are_refused_on_both_transports(
    setup: tuple[LiveServer, Witnesses, ProgressEmitter, Any],
) -> None:
    server, witnesses, emitter, job = setup
    evil = {"Origin": "https://evil.example"}
    own = {"Origin": server.url}
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(eio_url(server, "websocket"), headers=evil)
        assert refused.value.status in (400, 403)  # (hypercorn answers a refused upgrade 403)
        async with http.get(eio_url(server, "polling"), headers=evil) as r:
            assert r.status == 400
        # the app's own origin is fine on both
        async with http.ws_connect(eio_url(server, "websocket"), headers=own) as ws:
            assert (await ws.receive(timeout=5)).data.startswith("0")
        async with http.get(eio_url(server, "polling"), headers=own) as r:
            assert r.status == 200
    await witnesses.check_alive(emitter, job)
