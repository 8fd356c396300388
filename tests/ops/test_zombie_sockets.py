"""A malformed Socket.IO packet ends its websocket at once, at the DEFAULT ping settings
(python-engineio's writer used to sit out ping interval + timeout, 90 s): 400 sockets
of one user, each sending one malformed packet, are all closed within about a second
and the web process's file descriptors are back to where they were."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import aiohttp

from quart_app.core.config import Config
from quart_app.core.tokens import issue_token
from socket_layer.protocol import SOCKETIO_PATH
from tests.conftest import TEST_SECRET
from tests.support.attackers import connected_websocket
from tests.support.builders import make_user
from tests.support.live import LiveServer
from tests.support.waiting import wait_for

ZOMBIES = 400
CLOSED_WITHIN_S = 1.5
#: descriptors the burst of connects may add for good (Redis/DB pool connections)
POOL_SLACK = 64


def client_connections(port: int) -> set[int]:
    """The client ports of the TCP connections on ``port`` (the server side) in any
    state but LISTEN/TIME_WAIT."""
    peers: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] not in ("0A", "06"):
                    peers.add(int(fields[2].rsplit(":", 1)[1], 16))
    return peers


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_400_sockets_sending_a_malformed_packet_close_at_once(
    db: str, start_live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    defaults = Config()
    server = await start_live_server(
        ws_ping_interval=defaults.ws_ping_interval,
        ws_ping_timeout=defaults.ws_ping_timeout,
        ws_max_connections_per_user=ZOMBIES,
    )
    assert server.proc is not None
    pid = server.proc.pid
    user = await make_user()
    token = issue_token(TEST_SECRET, user.id)
    url = f"ws://127.0.0.1:{server.port}{SOCKETIO_PATH}/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        # one warm-up socket, so the baseline has the pools a first connect opens
        async with http.ws_connect(url) as warm:
            await warm.receive(timeout=10)
        baseline = open_fds(pid)

        # connections that were there before: LiveServer's readiness probe is one,
        # which hypercorn keeps (CLOSE_WAIT) until its keep-alive timeout, 5 s after
        # the accept, as any idle HTTP/1.1 connection its client closed
        earlier = client_connections(server.port)
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        for start in range(0, ZOMBIES, 50):  # well under the pending-session cap
            sockets += await asyncio.gather(
                *(connected_websocket(http, url, token) for _ in range(start, start + 50))
            )
        assert open_fds(pid) >= baseline + ZOMBIES
        zombies = client_connections(server.port) - earlier
        assert len(zombies) == ZOMBIES, len(zombies)

        async def closed_after(ws: aiohttp.ClientWebSocketResponse) -> float:
            while True:
                msg = await ws.receive(timeout=30)
                if msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    return time.monotonic()

        t0 = time.monotonic()
        await asyncio.gather(*(ws.send_str("42[") for ws in sockets))
        ends = await asyncio.gather(*(closed_after(ws) for ws in sockets))
        slowest = max(ends) - t0
        print(f"\n{ZOMBIES} malformed packets: every websocket closed within {slowest:.3f} s")
        assert slowest < CLOSED_WITHIN_S, slowest
        for ws in sockets:
            await ws.close()
    took = await wait_for(
        lambda: not zombies & client_connections(server.port),
        within=5,
        what="the server's TCP connections of the 400 sockets",
    )
    # the connects may have grown the Redis and database pools; not one per socket
    print(f"descriptors {open_fds(pid)} (baseline {baseline}) {took:.2f} s later")
    assert open_fds(pid) <= baseline + POOL_SLACK, (open_fds(pid), baseline)
