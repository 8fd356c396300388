"""An engine.io session id is no credential: it never reaches a log line (nor does a
thumbnail's ``sig=`` or a ``token=``), and a session answers only the client that
opened it — a replayed sid from another address, or without the session's cookie once
the client returned it, gets ``400`` and none of the victim's events, while the victim
keeps receiving them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from quart_app.core.tokens import issue_token
from socket_layer.emitter import ProgressEmitter
from socket_layer.protocol import SOCKETIO_PATH
from socket_layer.sessions import COOKIE_NAME
from tests.conftest import TEST_SECRET
from tests.support.builders import add_event, make_empty_job, make_user
from tests.support.live import LiveServer
from tests.support.sio_client import connect_client
from tests.support.waiting import wait_for

RS = "\x1e"  # engine.io's long-polling packet separator


def polling_url(server: LiveServer, sid: str | None = None, **extra: str) -> str:
    query = {"EIO": "4", "transport": "polling", **({"sid": sid} if sid else {}), **extra}
    return f"{server.url}{SOCKETIO_PATH}/?" + "&".join(f"{k}={v}" for k, v in query.items())


def from_address(address: str, **kwargs: Any) -> aiohttp.ClientSession:
    """An HTTP client whose connections leave from ``address`` (any 127.x.y.z works on
    loopback)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(address, 0), force_close=True), **kwargs
    )


class HandMadeSession:
    """A long-polling Socket.IO client written out by hand, keeping cookies."""

    def __init__(self, server: LiveServer, http: aiohttp.ClientSession, headers: Any = None):
        self.server = server
        self.http = http
        self.headers = headers or {}
        self.sid = ""

    async def open(self, token: str) -> list[str]:
        async with self.http.get(polling_url(self.server), headers=self.headers) as r:
            assert r.status == 200, await r.text()
            self.sid = json.loads((await r.text())[1:])["sid"]
        await self.post(f'40{{"token":"{token}"}}')
        packets: list[str] = []
        while not any(p.startswith("42") for p in packets):  # until the snapshot
            packets += await self.poll()
        return packets

    async def post(self, body: str) -> None:
        url = polling_url(self.server, self.sid)
        async with self.http.post(url, data=body, headers=self.headers) as r:
            assert r.status == 200, await r.text()

    async def poll(self) -> list[str]:
        url = polling_url(self.server, self.sid)
        async with self.http.get(url, headers=self.headers) as r:
            assert r.status == 200, await r.text()
            return (await r.text()).split(RS)

    async def poll_for_progress(self) -> list[str]:
        """Poll (answering pings) until a ``progress`` event comes."""
        while True:
            packets = await self.poll()
            if "2" in packets:
                await self.post("3")
            progress = [p for p in packets if p.startswith('42["progress"')]
            if progress:
                return progress


async def refused(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> None:
    """The request is answered like an unknown session, with no packet of the session."""
    async with http.request(method, url, **kw) as r:
        body = await r.text()
        assert r.status == 400, (r.status, body)
        assert json.loads(body) == {"code": 1, "message": "Session ID unknown"}, body


async def test_a_replayed_sid_from_another_address_gets_nothing(
    db: str, start_live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    server = await start_live_server(log_level="INFO")
    user = await make_user()
    job = await make_empty_job(user)
    emitter = ProgressEmitter.for_config(server.config)
    victim = await connect_client(
        server.url, token=issue_token(TEST_SECRET, user.id), transports=["polling"]
    )
    try:
        sid = victim.sio.eio.sid
        async with from_address("127.0.0.2") as attacker:
            await emitter.publish_progress(user.id, await add_event(job))
            await refused(attacker, "GET", polling_url(server, sid))
            await refused(attacker, "POST", polling_url(server, sid), data='42["resume",{}]')
            # nor may it take the session over by upgrading it to a websocket
            ws_url = polling_url(server, sid).replace("transport=polling", "transport=websocket")
            try:
                async with attacker.ws_connect(ws_url) as ws:
                    msg = await ws.receive(timeout=5)
                    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status in (400, 403)
        await victim.wait_for("progress", count=1)
        await emitter.publish_progress(user.id, await add_event(job))
        assert [e["seq"] for e in await victim.wait_for("progress", count=2)] == [1, 2]
        assert not victim.disconnected.is_set()
    finally:
        await victim.close()
        await emitter.close()


async def test_a_replayed_sid_without_the_cookie_gets_nothing(
    db: str, start_live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    server = await start_live_server()
    user = await make_user()
    job = await make_empty_job(user)
    emitter = ProgressEmitter.for_config(server.config)
    # a browser-like client: keeps cookies (an IP-address host included)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser, aiohttp.ClientSession() as other:
        victim = HandMadeSession(server, browser)
        await victim.open(issue_token(TEST_SECRET, user.id))
        cookie = {c.key: c for c in jar}[COOKIE_NAME]
        assert cookie["httponly"] and cookie["path"] == SOCKETIO_PATH
        await emitter.publish_progress(user.id, await add_event(job))
        # the same address, but without the cookie or with a guessed one
        await refused(other, "GET", polling_url(server, victim.sid))
        await refused(other, "POST", polling_url(server, victim.sid), data="3")
        guessed = {"Cookie": f"{COOKIE_NAME}={uuid.uuid4().hex}"}
        await refused(other, "GET", polling_url(server, victim.sid), headers=guessed)
        # the victim gets its event, and the next one
        assert '"seq":1' in (await victim.poll_for_progress())[0]
        await emitter.publish_progress(user.id, await add_event(job))
        assert '"seq":2' in (await victim.poll_for_progress())[0]
    await emitter.close()


async def test_behind_a_proxy_the_forwarded_address_binds_the_session(
    db: str, start_live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    server = await start_live_server(trusted_proxy_hops=1)
    user = await make_user()
    async with aiohttp.ClientSession() as http:
        victim = HandMadeSession(server, http, headers={"X-Forwarded-For": "203.0.113.7"})
        await victim.open(issue_token(TEST_SECRET, user.id))
        other = {"X-Forwarded-For": "198.51.100.9"}
        await refused(http, "GET", polling_url(server, victim.sid), headers=other)
        await victim.post("3")  # the victim's own address still works


async def test_no_sid_sig_or_token_in_any_log_line(
    db: str, start_live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    server = await start_live_server(log_level="DEBUG")
    user = await make_user()
    token = issue_token(TEST_SECRET, user.id)
    sig = f"{uuid.uuid4().hex}.{uuid.uuid4().hex}"
    sids: list[str] = []
    async with aiohttp.ClientSession() as http:
        session = HandMadeSession(server, http)
        await session.open(token)
        sids.append(session.sid)
        await session.post("3")
        url = f"{server.url}/api/videos/{uuid.uuid4()}/thumbnail?u={user.id}&sig={sig}"
        async with http.get(url) as r:
            assert r.status in (400, 403, 404)
        # a finished session's sid, which engineio names in its own error
        async with http.get(polling_url(server, "x" * 20)) as r:
            assert r.status == 400
    via_query = await connect_client(
        server.url, token=token, transports=["polling"], via_query=True
    )
    sids.append(via_query.sio.eio.sid)
    await via_query.close()
    # the access log line of a request is written after its response
    await wait_for(lambda: "token=[redacted]" in server.output(), 10, "the access log")
    log = server.output()
    assert f"{SOCKETIO_PATH}/?EIO=4" in log, log[-2000:]  # the long-polls are logged ...
    assert "sid=[redacted]" in log and "sig=[redacted]" in log
    for secret in (*sids, sig, sig.split(".")[1], token, "x" * 20):
        assert secret not in log, (secret, log[-3000:])  # ... without their secrets
