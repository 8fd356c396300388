"""The web process's memory under 18,000 abandoned engine.io handshakes (no Socket.IO
CONNECT) from 200 addresses, at the default caps: at most ``WS_MAX_PENDING_SESSIONS``
are held at once, the rest are refused with 429, and every held one is closed after
``WS_CONNECT_TIMEOUT``.  The RSS figures are printed (run with ``-s``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp

from quart_app.core.config import Config
from socket_layer.protocol import SOCKETIO_PATH
from tests.benchmarks.common import rss_bytes
from tests.support.live import LiveServer
from tests.support.waiting import wait_for

HANDSHAKES = 18_000
ADDRESSES = 200
#: what the web process may grow by (measured +50 MB at the default caps; 18,000 held
#: sessions grew it by 211 MB before the cap)
RSS_GROWTH_LIMIT = 64 * 1024 * 1024
MB = 1024 * 1024


async def _abandon(server: LiveServer, address: str, count: int, tally: dict[int, int]) -> None:
    url = f"{server.url}{SOCKETIO_PATH}/?EIO=4&transport=polling"
    connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=20)
    async with aiohttp.ClientSession(connector=connector) as http:
        for _ in range(count):
            async with http.get(url) as r:
                await r.read()
                tally[r.status] = tally.get(r.status, 0) + 1


async def test_abandoned_handshakes_keep_memory_bounded(
    db: str, start_live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    defaults = Config()
    timeout = defaults.ws_connect_timeout
    # the default caps, timeout and pings (the tests' short pings would close them first)
    server = await start_live_server(ws_ping_interval=30.0, ws_ping_timeout=60.0)
    assert server.proc is not None
    pid = server.proc.pid
    before = rss_bytes(pid)
    tally: dict[int, int] = {}
    per_address = HANDSHAKES // ADDRESSES
    await asyncio.gather(
        *(_abandon(server, f"127.0.3.{i + 1}", per_address, tally) for i in range(ADDRESSES))
    )
    held = rss_bytes(pid)

    async def timed_out() -> float:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/metrics") as r:
                text = await r.text()
        for line in text.splitlines():
            if line.startswith("reeltrack_socketio_packets_refused_total") and (
                'reason="connect_timeout"' in line
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    # every held session is closed by the connect timeout
    async def all_closed() -> bool:
        return await timed_out() >= tally.get(200, 0)

    await wait_for(all_closed, within=timeout * 4, what="the connect timeouts", interval=0.5)
    after = rss_bytes(pid)
    print(
        f"\n{HANDSHAKES} abandoned handshakes from {ADDRESSES} addresses: "
        f"{tally.get(200, 0)} held, {tally.get(429, 0)} refused (429); RSS "
        f"{before / MB:.0f} MB before, {held / MB:.0f} MB holding them, "
        f"{after / MB:.0f} MB after the connect timeout"
    )
    assert tally.get(200, 0) + tally.get(429, 0) == HANDSHAKES, tally
    assert tally.get(429, 0) > 0  # the total cap was reached
    assert held - before < RSS_GROWTH_LIMIT, (before, held)
    assert defaults.ws_max_pending_sessions < HANDSHAKES
