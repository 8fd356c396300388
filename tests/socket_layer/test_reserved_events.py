"""Client packets the server must refuse, against a real web process over both transports.

- An event with a reserved name (``42["disconnect"]``, ``42["connect"]``...) would make
  python-socketio run the server's own handler: a ``disconnect`` freed the slot of a
  socket that stayed connected and in its room, so one user held 20 live sockets with a
  limit of 5 and the connection gauge read 0.  Such a client is disconnected, and the
  limit, the registry and the gauge keep counting the sockets that are really there.
- Packets that pass the parse guard but made python-socketio log a traceback
  (``42["connect"]``, ``resume`` with extra arguments, a binary placeholder naming no
  attachment) are refused quietly: a counter moves, no traceback reaches the log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import pytest
from redis import asyncio as aioredis

from quart_app.core.metrics import sample_value
from socket_layer.emitter import ProgressEmitter
from socket_layer.protocol import (
    REASON_TOO_MANY_CONNECTIONS,
    RESERVED_EVENTS,
    presence_key,
)
from tests.conftest import live_config, tortoise_open
from tests.socket_layer.conftest import token_for
from tests.support.attackers import RawSocket
from tests.support.builders import add_event, make_empty_job, make_user
from tests.support.live import LiveServer
from tests.support.sio_client import TRANSPORT_IDS, RecordingClient, connect_client

ATTACKERS = 20
#: pings far apart: within a test only the server's refusal can close a raw socket
QUIET_PINGS = {"ws_ping_interval": 20.0, "ws_ping_timeout": 20.0}


async def metric(server: LiveServer, name: str, **labels: str) -> float:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        r = await http.get("/metrics")
    value = sample_value(r.text, name, labels)
    return 0.0 if value is None else value


@pytest.mark.parametrize("transport", ["websocket", "polling"], ids=TRANSPORT_IDS)
async def test_reserved_event_names_cannot_free_a_slot(
    db: str,
    start_live_server: Callable[..., Awaitable[LiveServer]],
    redis: aioredis.Redis,
    transport: str,
) -> None:
    server = await start_live_server(**QUIET_PINGS)
    limit = server.config.ws_max_connections_per_user
    assert limit == 5
    user = await make_user()
    token = token_for(user)
    job = await make_empty_job(user, total_videos=10)
    gauge = {"transport": transport}

    async with aiohttp.ClientSession() as http:
        # 20 raw sockets of one user, each sending 42["disconnect"] once it is in
        raws = [RawSocket(http, server, transport) for _ in range(ATTACKERS)]
        accepted: list[RawSocket] = []
        try:
            for raw in raws:
                await raw.open()
                if await raw.connect(token):
                    accepted.append(raw)
                    await raw.send('2["disconnect"]')
            assert accepted, "no attacker socket got in at all"
            # an event for the user now: a socket still in the room would receive it
            emitter = ProgressEmitter.for_config(server.config)
            try:
                await emitter.publish_progress(user.id, await add_event(job))
            finally:
                await emitter.close()
            outcomes = await asyncio.gather(*(raw.outcome() for raw in accepted))
            live = outcomes.count("live")
            counted = await metric(server, "reeltrack_socketio_connections", **gauge)
            assert live == 0, f"{live} sockets still live (limit {limit}), the gauge says {counted}"
        finally:
            await asyncio.gather(*(raw.close() for raw in raws))
        assert await metric(server, "reeltrack_socketio_connections", **gauge) == 0
        assert await redis.zcard(presence_key(user.id)) == 0
        refused = await metric(
            server, "reeltrack_socketio_packets_refused_total", reason="reserved_event"
        )
        assert refused == len(accepted)

    # the python client lets a program emit the reserved names too
    clients = [
        await connect_client(server.url, token=token, transports=[transport]) for _ in range(limit)
    ]
    try:
        over = await connect_client(
            server.url, token=token, transports=[transport], expect_refusal=True
        )
        assert over.refusal_message == REASON_TOO_MANY_CONNECTIONS
        assert await metric(server, "reeltrack_socketio_connections", **gauge) == limit
        for client, name in zip(clients[:2], ("disconnect", "connect"), strict=True):
            await client.sio.emit(name)
            await asyncio.wait_for(client.disconnected.wait(), 10)
        # 3 sockets are left, and the registry and the gauge say 3
        assert await redis.zcard(presence_key(user.id)) == limit - 2
        assert await metric(server, "reeltrack_socketio_connections", **gauge) == limit - 2
        clients += [
            await connect_client(server.url, token=token, transports=[transport]) for _ in range(2)
        ]
        over = await connect_client(
            server.url, token=token, transports=[transport], expect_refusal=True
        )
        assert over.refusal_message == REASON_TOO_MANY_CONNECTIONS
        assert await metric(server, "reeltrack_socketio_connections", **gauge) == limit
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    assert "Traceback" not in server.output()


@pytest.fixture(scope="module")
async def quiet_server(
    pg_database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveServer]:
    """One web process (and Tortoise on its database) for the refusal cases below."""
    async with tortoise_open(pg_database_url) as url:
        config = live_config(tmp_path_factory.mktemp("refusals"), url, redis_url, **QUIET_PINGS)
        server = await LiveServer(config).astart()
        try:
            yield server
        finally:
            await asyncio.to_thread(server.close)


def _binary(num: Any, count: int = 1) -> list[str | bytes]:
    header = json.dumps(["resume", {"_placeholder": True, "num": num}])
    return [f"5{count}-{header}", *([b"\x00"] * min(count, 1))]


#: case -> (packets sent after connecting, the counter's reason)
REFUSED: dict[str, tuple[list[str | bytes], str]] = {
    **{f"reserved-{name}": ([f'2["{name}"]'], "reserved_event") for name in RESERVED_EVENTS},
    "reserved-binary-disconnect": (
        ['51-["disconnect",{"_placeholder":true,"num":0}]', b"\x00"],
        "reserved_event",
    ),
    **{f"placeholder-{num!r}": (_binary(num), "binary") for num in (5, 1, -1, "0", True, None)},
    "attachments-0": (_binary(0, count=0), "binary"),
    "attachments-9": (_binary(0, count=9), "binary"),
}


@pytest.mark.parametrize("transport", ["websocket", "polling"], ids=TRANSPORT_IDS)
@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_refused_packet_closes_the_socket_quietly(
    quiet_server: LiveServer, transport: str, case: str
) -> None:
    """The server closes the socket, counts the reason, and logs no traceback."""
    server = quiet_server
    packets, reason = REFUSED[case]
    log_start = len(server.output())
    before = await metric(server, "reeltrack_socketio_packets_refused_total", reason=reason)
    async with aiohttp.ClientSession() as http:
        raw = RawSocket(http, server, transport)
        try:
            await raw.open()
            assert await raw.connect(token_for(await make_user()))
            await raw.send(*packets)
            assert await raw.outcome() == "closed", raw.packets
        finally:
            await raw.close()
    after = await metric(server, "reeltrack_socketio_packets_refused_total", reason=reason)
    assert after == before + 1, (reason, before, after)
    out = server.output()[log_start:]
    assert "Traceback" not in out, out[out.find("Traceback") - 300 :][:3000]


@pytest.mark.parametrize("transport", ["websocket", "polling"], ids=TRANSPORT_IDS)
async def test_resume_with_extra_arguments_is_answered_quietly(
    quiet_server: LiveServer, transport: str
) -> None:
    """An error in the ack, the counter moves, the socket lives on, no traceback."""
    server = quiet_server
    log_start = len(server.output())
    client: RecordingClient = await connect_client(
        server.url, token=token_for(await make_user()), transports=[transport]
    )
    try:
        before = await metric(
            server, "reeltrack_socketio_packets_refused_total", reason="resume_arguments"
        )
        ack: Any = await client.call("resume", ({"jobs": {}}, 1), wait_s=5)
        assert isinstance(ack, dict) and "error" in ack, ack
        assert await client.call("resume", {"jobs": {}}) == {"events": [], "truncated": False}
        assert not client.disconnected.is_set()
        after = await metric(
            server, "reeltrack_socketio_packets_refused_total", reason="resume_arguments"
        )
        assert after == before + 1
    finally:
        await client.close()
    out = server.output()[log_start:]
    assert "Traceback" not in out, out[out.find("Traceback") - 300 :][:3000]
