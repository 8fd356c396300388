"""Under a real hypercorn, in this process so its objects can be inspected:

* ``DirectWebSocket.release_handshake``: once a Socket.IO websocket is accepted, the
  H11WSConnection under it holds no h11 parser any more (``h11_connection is None``),
  and the socket still receives events, answers acks and closes cleanly (closed by
  the client or by the server) without an error anywhere;
* ``install_lean_app_inboxes``: the application's inbox of every connection is a
  LeanQueue (websocket and HTTP), and a multi-megabyte upload arrives byte for byte
  through it while it is full (hypercorn's put waits, and resumes as the app reads);
* the socket's environ comes from socket_layer.asgi_environ (no class per request).

The app is the one ``reeltrack serve`` runs (quart_app.asgi.create_asgi_app with
quart_app.serve's hypercorn settings), wrapped in a spy that records the ``receive``
hypercorn hands to each connection (``inbox.get``, a bound method of the inbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypercorn.asyncio import serve
from hypercorn.protocol import ws_stream
from hypercorn.protocol.h11 import H11WSConnection

from quart_app.asgi import create_asgi_app, disconnect_sockets
from quart_app.core.config import Config
from quart_app.core.tokens import issue_token
from quart_app.serve import configure_websockets, hypercorn_config
from socket_layer.asgi_environ import RequestBody
from socket_layer.direct_websocket import DirectWebSocket, install_lean_app_inboxes
from socket_layer.emitter import ProgressEmitter
from socket_layer.lean_queue import LeanQueue
from tests.conftest import TEST_SECRET, config_for_test
from tests.support.builders import make_list, make_user
from tests.support.services import RedisServer, free_port, wait_for_port
from tests.support.sio_client import RecordingClient, connect_client
from tests.support.waiting import wait_for

UPLOAD_BYTES = 8 * 1024 * 1024 + 12345
EMPTY_RESUME = {"events": [], "truncated": False}


@dataclass
class Seen:
    """One connection's scope type, path and the object its ``receive`` belongs to."""

    kind: str
    path: str
    inbox: Any
    #: bytes of http.request bodies the app received
    body_bytes: int = 0


@dataclass
class InboxSpy:
    app: Any
    seen: list[Seen] = field(default_factory=list)
    #: before the app reads an upload, wait until hypercorn has filled the inbox
    fill_before_upload: bool = True

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        seen = Seen(scope["type"], scope["path"], getattr(receive, "__self__", None))
        self.seen.append(seen)
        if scope["type"] == "http" and scope["path"].endswith("/videos/upload"):
            inbox = seen.inbox
            if self.fill_before_upload:
                # hypercorn puts body events until the inbox is full, then its put waits
                await wait_for(inbox.full, 20, "the upload's body filling the app inbox")

            async def counting_receive() -> Any:
                event = await receive()
                seen.body_bytes += len(event.get("body") or b"")
                return event

            await self.app(scope, counting_receive, send)
            return
        await self.app(scope, receive, send)

    def of(self, kind: str, suffix: str = "") -> list[Seen]:
        return [s for s in self.seen if s.kind == kind and s.path.endswith(suffix)]


@dataclass
class Served:
    url: str
    config: Config
    asgi: Any
    spy: InboxSpy

    @property
    def eio(self) -> Any:
        return self.asgi.engineio_server.eio


@contextlib.asynccontextmanager
async def in_process_server(
    tmp_path: Path, database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Served]:
    """``reeltrack serve``'s app and hypercorn settings, served in this process."""
    config = config_for_test(tmp_path, database_url, redis_url, host="127.0.0.1", port=free_port())
    # what serve_async does besides gc tuning (which must not hit the test process);
    # hypercorn's deflate class is put back afterwards
    monkeypatch.setattr(ws_stream, "PerMessageDeflate", ws_stream.PerMessageDeflate)
    configure_websockets(config.ws_permessage_deflate)
    asgi = create_asgi_app(config)
    spy = InboxSpy(asgi)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(spy, hypercorn_config(config), shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        await asyncio.to_thread(wait_for_port, config.port)  # listens once lifespan is done
        yield Served(f"http://127.0.0.1:{config.port}", config, asgi, spy)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(disconnect_sockets(asgi), 10)
        stop.set()
        await asyncio.wait_for(task, 15)


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The ERROR (and worse) records logged so far (hypercorn's "Error in ASGI
    Framework", asyncio's unhandled task exceptions, the socket layer's own)."""
    caplog.set_level(logging.WARNING)

    def listed() -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]

    return listed


def h11_connection_under(ws: DirectWebSocket) -> H11WSConnection:
    """The H11WSConnection hypercorn keeps under ``ws`` (WSStream -> H11Protocol)."""
    stream = ws.asgi_send.__self__
    assert isinstance(stream, ws_stream.WSStream)
    send: Any = stream.send  # H11Protocol.stream_send
    connection = send.__self__.connection
    assert isinstance(connection, H11WSConnection)
    return connection


async def test_an_accepted_websocket_drops_h11_and_still_works(
    tmp_path: Path,
    pg_database_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    errors: Callable[[], list[str]],
) -> None:
    async with in_process_server(tmp_path, pg_database_url, redis_url, monkeypatch) as web:
        user = await make_user()
        token = issue_token(TEST_SECRET, user.id)
        clients: list[RecordingClient] = []
        emitter = ProgressEmitter.for_config(web.config)
        try:
            for _ in range(2):
                client = await connect_client(web.url, token=token, transports=["websocket"])
                clients.append(client)
                await client.wait_for("snapshot")
            await wait_for(lambda: len(web.eio.sockets) == 2, 10, "both sockets on the server")
            sockets = list(web.eio.sockets.values())
            for sock in sockets:
                ws = sock._rt_ws
                assert isinstance(ws, DirectWebSocket), "not the lean websocket path"
                connection = h11_connection_under(ws)
                # the snapshot came after the handler released the handshake
                assert connection.h11_connection is None, "h11's parser kept under the websocket"
                # the websocket's inbox is hypercorn's app queue: a LeanQueue both ways
                assert isinstance(ws.asgi_receive.__self__, LeanQueue)
                assert ws.asgi_send.__self__.app_put.__self__ is ws.asgi_receive.__self__
                environ = web.asgi.engineio_server.environ[sock.sid]
                assert type(environ["wsgi.input"]) is RequestBody
            assert len(web.spy.of("websocket")) == 2
            assert all(isinstance(s.inbox, LeanQueue) for s in web.spy.of("websocket"))

            # events still arrive (server -> client) and acks still come back
            for n in range(5):
                await emitter.emit_to_user(user.id, "rt-direct", {"n": n})
            for client in clients:
                got = await client.wait_for("rt-direct", count=5)
                assert [e["n"] for e in got] == list(range(5))
                assert await client.call("resume", {"jobs": {}}) == EMPTY_RESUME

            # closed by the client: the server lets the socket go, the other stays
            first, second = clients
            first_sid = first.sio.eio.sid
            await first.close()
            await wait_for(lambda: first_sid not in web.eio.sockets, 10, "the server seeing it")
            assert len(web.eio.sockets) == 1
            await emitter.emit_to_user(user.id, "rt-direct", {"n": "after"})
            assert (await second.wait_for("rt-direct", count=6))[-1] == {"n": "after"}

            # closed by the server: the client sees a disconnect
            await disconnect_sockets(web.asgi)
            await asyncio.wait_for(second.disconnected.wait(), 10)
            await wait_for(lambda: not web.eio.sockets, 10, "the server dropping the socket")
            for sock in sockets:
                assert sock.closed
        finally:
            await emitter.close()
            await asyncio.gather(*(c.close() for c in clients))
    assert errors() == []


async def test_an_upload_arrives_intact_through_a_full_lean_inbox(
    tmp_path: Path,
    fresh_pg_url: str,
    own_redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    errors: Callable[[], list[str]],
) -> None:
    # its own database and Redis: the upload leaves a queued job no other test's
    # worker must see
    async with in_process_server(tmp_path, fresh_pg_url, own_redis.url, monkeypatch) as web:
        user = await make_user()
        vlist = await make_list(user)
        data = os.urandom(UPLOAD_BYTES)
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="lean.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        async def body() -> AsyncIterator[bytes]:
            yield head
            for start in range(0, len(data), 256 * 1024):
                yield data[start : start + 256 * 1024]
            yield tail

        length = len(head) + len(data) + len(tail)
        headers = {
            "Authorization": f"Bearer {issue_token(TEST_SECRET, user.id)}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(length),
        }
        async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
            r = await http.post(
                f"/api/lists/{vlist.id}/videos/upload", content=body(), headers=headers
            )
        assert r.status_code == 202, r.text
        [upload] = web.spy.of("http", "/videos/upload")
        assert isinstance(upload.inbox, LeanQueue), type(upload.inbox)
        assert upload.body_bytes == length
        assert upload.inbox.empty() and upload.inbox._items is None
        stored = list((web.config.media_root / "uploads").rglob("*lean.mp4"))
        assert len(stored) == 1
        assert hashlib.sha256(stored[0].read_bytes()).digest() == hashlib.sha256(data).digest()
    assert errors() == []


def test_install_lean_app_inboxes_is_idempotent() -> None:
    from hypercorn.asyncio import task_group

    install_lean_app_inboxes()
    installed = task_group.TaskGroup.spawn_app
    install_lean_app_inboxes()
    assert task_group.TaskGroup.spawn_app is installed
    assert getattr(installed, "_reeltrack_lean", False)


async def test_release_handshake_outside_hypercorn_does_nothing() -> None:
    """Under another server (no hypercorn stream behind ``asgi_send``) there is nothing
    to release: no error, and the writer stays on the ASGI path."""
    sent: list[Any] = []

    async def asgi_send(message: Any) -> None:
        sent.append(message)

    async def handler(ws: Any) -> None:
        ws.release_handshake()

    ws = DirectWebSocket(handler, None)
    await ws({"asgi.receive": None, "asgi.send": asgi_send})
    assert ws._raw is False
    assert sent == [{"type": "websocket.accept"}]
