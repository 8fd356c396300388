"""The lean websocket transport (socket_layer/websocket_handler.py with SendQueue's
sink and the ping wheel's timeout check) on a real server, over a websocket from the
start and over long-polling upgraded to a websocket (the probe exchange):

- a client gets its snapshot, then live events in order, answers the pings through
  several ping timeouts and stays; when it disconnects its slot is released;
- a server-side disconnect (a refused packet: the input guard aborts the session, the
  queue's closed marker closes the websocket) ends the client and releases the slot;
- a client whose websocket just closes (no CLOSE packet) has its slot released at once;
- a client that stops answering PINGs (it still reads) is closed for its ping
  timeout: its slot released AND its websocket closed by the server within ping
  interval + timeout + a few ticks (python-engineio's per-read timeout used to end it;
  the lean handler has none, so this is the wheel's job);
- in-process: N connected websockets add no parked task per socket (no writer task, no
  per-frame read task), and leave none behind when they go.

The live server is the session one (ping interval 1 s, timeout 2 s); the in-process one
is built like tests/socket_layer/test_connect_abandoned.py's.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import pytest
from engineio import packet as eio_packet
from redis import asyncio as aioredis

from quart_app.core.config import Config
from socket_layer.emitter import ProgressEmitter
from socket_layer.ping_wheel import TICK_S
from socket_layer.protocol import SOCKETIO_PATH, presence_key
from tests.socket_layer.conftest import InProcess, serve_in_process, token_for
from tests.support.attackers import connected_websocket
from tests.support.builders import add_event, make_empty_job, make_user
from tests.support.live import LiveServer
from tests.support.sio_client import RecordingClient, connect_client
from tests.support.waiting import wait_for, wait_until

T = TypeVar("T")

#: websockets held at once by the in-process task count
SOCKETS = 60

#: a websocket from the start, and long-polling upgraded to one
WIRES = [["websocket"], ["polling", "websocket"]]
WIRE_IDS = ["websocket", "upgrade"]


@pytest.fixture(params=WIRES, ids=WIRE_IDS)
def wire(request: pytest.FixtureRequest) -> list[str]:
    value: list[str] = request.param
    return value


def slack(config: Config) -> float:
    """How long after its PING a silent socket may still be open: the timeout, the
    wheel's ticks (the PING itself up to one late, the check two), one second more."""
    return config.ws_ping_interval + config.ws_ping_timeout + 3 * TICK_S + 1.0


def count_pings(client: RecordingClient) -> Callable[[], int]:
    """Count the PINGs the client's engine.io receives (it answers each one itself)."""
    eio = client.sio.eio
    received = eio._receive_packet
    seen = [0]

    async def receive(pkt: Any) -> None:
        if pkt.packet_type == eio_packet.PING:
            seen[0] += 1
        await received(pkt)

    eio._receive_packet = receive
    return lambda: seen[0]


async def slots(redis: aioredis.Redis, user_id: object) -> int:
    return int(await redis.zcard(presence_key(user_id)))


async def test_snapshot_then_live_events_in_order_and_pings_answered(
    live_server: LiveServer,
    db: str,
    wire: list[str],
    emitter: ProgressEmitter,
    redis: aioredis.Redis,
) -> None:
    user = await make_user()
    job = await make_empty_job(user)
    first = await add_event(job, status="pending")
    client = await connect_client(live_server.url, token=token_for(user), transports=wire)
    try:
        assert client.sio.eio.current_transport == "websocket"  # the upgrade happened
        pings = count_pings(client)
        assert await client.wait_for("snapshot") == {"jobs": [first]}
        assert await slots(redis, user.id) == 1

        published = []
        for _ in range(20):
            event = await add_event(job)
            published.append(event)
            await emitter.publish_progress(user.id, event)
        assert await client.wait_for("progress", count=20) == published

        # three pings answered: longer than the ping timeout, still connected
        config = live_server.config
        assert 3 * config.ws_ping_interval > config.ws_ping_timeout
        await wait_for(lambda: pings() >= 3, 3 * slack(config), "three pings")
        assert client.sio.connected and not client.disconnected.is_set()
        event = await add_event(job, status="completed")
        published.append(event)
        await emitter.publish_progress(user.id, event)
        assert await client.wait_for("progress", count=21) == published
        assert client.events("snapshot") == [{"jobs": [first]}]
    finally:
        await client.close()
    await wait_for(lambda: _no_slots(redis, user.id), 5, "the slot released on disconnect")


async def _no_slots(redis: aioredis.Redis, user_id: object) -> bool:
    return await slots(redis, user_id) == 0


async def test_server_side_disconnect_closes_the_websocket_and_releases_the_slot(
    live_server: LiveServer, db: str, wire: list[str], redis: aioredis.Redis
) -> None:
    user = await make_user()
    client = await connect_client(live_server.url, token=token_for(user), transports=wire)
    try:
        assert client.sio.eio.current_transport == "websocket"
        await client.wait_for("snapshot")
        assert await slots(redis, user.id) == 1
        # a reserved event name: the input guard aborts the session (abort_session)
        await client.sio.eio.send('2["disconnect"]')
        async with asyncio.timeout(5):
            await client.disconnected.wait()
    finally:
        await client.close()
    await wait_for(lambda: _no_slots(redis, user.id), 5, "the slot released")


# --- a client that stops answering PINGs --------------------------------------------------


@dataclass
class SilentClient:
    """An engine.io session spoken by hand that reads everything and answers nothing."""

    ws: aiohttp.ClientWebSocketResponse
    texts: list[str]


async def silent_client(
    http: aiohttp.ClientSession, url: str, token: str, upgrade: bool
) -> SilentClient:
    """Connected over a websocket, or over long-polling then upgraded (the probe
    exchange by hand), to the server at ``url``; Socket.IO CONNECT accepted."""
    base = f"{url}{SOCKETIO_PATH}/?EIO=4"
    texts: list[str] = []
    if upgrade:
        async with http.get(f"{base}&transport=polling") as r:
            sid = json.loads((await r.text())[1:])["sid"]
        async with http.post(
            f"{base}&transport=polling&sid={sid}", data=f'40{{"token":"{token}"}}'
        ):
            pass
        while not any(t.startswith("40{") for t in texts):
            async with http.get(f"{base}&transport=polling&sid={sid}") as r:
                assert r.status == 200
                texts += (await r.text()).split("\x1e")
        ws = await http.ws_connect(f"{base}&transport=websocket&sid={sid}".replace("http", "ws"))
        await ws.send_str("2probe")
        assert (await ws.receive(timeout=5)).data == "3probe"
        await ws.send_str("5")
    else:
        ws = await http.ws_connect(f"{base}&transport=websocket".replace("http", "ws"))
        assert (await ws.receive(timeout=5)).data.startswith("0{")
        await ws.send_str(f'40{{"token":"{token}"}}')
        while not any(t.startswith("40{") for t in texts):
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            texts.append(msg.data)
    return SilentClient(ws, texts)


async def test_a_client_that_stops_answering_pings_is_closed_and_so_is_its_websocket(
    live_server: LiveServer, db: str, wire: list[str], redis: aioredis.Redis
) -> None:
    user = await make_user()
    config = live_server.config
    async with aiohttp.ClientSession() as http:
        connected_at = time.monotonic()
        silent = await silent_client(http, live_server.url, token_for(user), len(wire) > 1)
        assert await slots(redis, user.id) == 1
        ws_closed_at: float | None = None
        try:
            async with asyncio.timeout(slack(config) + 5):
                while True:
                    msg = await silent.ws.receive()
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        ws_closed_at = time.monotonic()
                        break
                    silent.texts.append(msg.data)  # "2": a PING, never answered
        except TimeoutError:
            pass
        finally:
            await silent.ws.close()
    assert "2" in silent.texts, silent.texts
    await wait_for(lambda: _no_slots(redis, user.id), 1, "the slot released")
    assert ws_closed_at is not None, "the server never closed the websocket"
    assert ws_closed_at - connected_at <= slack(config), ws_closed_at - connected_at


async def test_a_connection_closed_without_a_close_packet_releases_the_slot_at_once(
    live_server: LiveServer, db: str, wire: list[str], redis: aioredis.Redis
) -> None:
    """The client's websocket just closes (no engine.io CLOSE, no Socket.IO
    DISCONNECT): the handler's read ends and closes the session, well before any ping
    timeout could."""
    user = await make_user()
    async with aiohttp.ClientSession() as http:
        silent = await silent_client(http, live_server.url, token_for(user), len(wire) > 1)
        assert await slots(redis, user.id) == 1
        await silent.ws.close()
    took = await wait_for(lambda: _no_slots(redis, user.id), 5, "the slot released")
    assert took < live_server.config.ws_ping_timeout, took


# --- in-process: tasks per socket ---------------------------------------------------------


@pytest.fixture
async def in_process(db: str, make_config: Callable[..., Config]) -> AsyncIterator[InProcess]:
    """A Socket.IO server as create_sio builds it, under hypercorn in the test's loop
    (pings far apart: the sockets are held idle while the tasks are counted)."""
    async with serve_in_process(
        make_config(
            db, ws_ping_interval=30.0, ws_ping_timeout=30.0, ws_max_connections_per_user=SOCKETS
        )
    ) as server:
        yield server


class ClientLoop:
    """An event loop in a thread of its own for the clients, so that the test's loop
    (the server's) holds the server's tasks only."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def task_origins(tasks: set[asyncio.Task[Any]]) -> collections.Counter[str]:
    """Tasks by the module and name of the coroutine each one runs."""
    origins: collections.Counter[str] = collections.Counter()
    for task in tasks:
        coro: Any = task.get_coro()
        code = getattr(coro, "cr_code", None)
        origins[f"{coro.__module__ if code is None else code.co_filename}:{coro.__qualname__}"] += 1
    return origins


def not_hypercorns(tasks: set[asyncio.Task[Any]]) -> dict[str, int]:
    """The tasks of ``tasks`` that hypercorn did not start (its own two per connection,
    the connection's and the ASGI app's, are the server's whatever the handler)."""
    return {k: n for k, n in task_origins(tasks).items() if "/hypercorn/" not in k}


async def test_connected_websockets_park_no_task_each(in_process: InProcess) -> None:
    user = await make_user()
    token = token_for(user)
    url = f"{in_process.url}{SOCKETIO_PATH}/?EIO=4&transport=websocket".replace("http", "ws")
    clients = ClientLoop()
    held: list[aiohttp.ClientWebSocketResponse] = []

    async def connect_all() -> aiohttp.ClientSession:
        """Half on a websocket from the start, half upgraded from long-polling."""
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        for start in range(0, SOCKETS, 20):
            opened = await asyncio.gather(
                *(
                    silent_client(http, in_process.url, token, upgrade=i % 2 == 1)
                    for i in range(start, start + 20)
                )
            )
            held.extend(c.ws for c in opened)
        return http

    async def close_all(http: aiohttp.ClientSession) -> None:
        await asyncio.gather(*(ws.close() for ws in held))
        await http.close()

    eio = in_process.sio.eio
    http: aiohttp.ClientSession | None = None
    try:
        # one socket first: the first connect starts what serves them all (the ping
        # wheel, the sweep, pools), which must not count as per socket
        await clients.run(connected_websocket_once(url, token))
        await wait_for(lambda: not eio.sockets, 10, "the warm-up socket gone")
        before = set(asyncio.all_tasks())
        http = await clients.run(connect_all())
        await wait_for(
            lambda: sum(s.upgraded and not s.closed for s in eio.sockets.values()) == SOCKETS,
            10,
            f"{SOCKETS} websockets connected (half of them upgraded)",
        )

        def added() -> set[asyncio.Task[Any]]:
            return set(asyncio.all_tasks()) - before

        # the connect handlers' tasks end; what a socket parks for its life stays
        idle = await wait_until(lambda: sum(not_hypercorns(added()).values()) < 5, 5)
        now = added()
        assert idle, f"tasks besides hypercorn's: {not_hypercorns(now)}"
        print(
            f"\n{SOCKETS} idle websockets: {len(now)} tasks added, all but "
            f"{sum(not_hypercorns(now).values())} hypercorn's"
        )
    finally:
        if http is not None:
            await clients.run(close_all(http))
        clients.close()
    await wait_for(lambda: not eio.sockets, 10, "every socket forgotten once its client left")
    await wait_for(lambda: len(added()) < 5, 10, "the connections' tasks ended")


async def connected_websocket_once(url: str, token: str) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await connected_websocket(http, url, token)
        await ws.close()
