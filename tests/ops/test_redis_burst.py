"""The REST rate limit under a burst, against a live web process: 2,000 concurrent
requests of one user with RATE_LIMIT_PER_MINUTE=600 get exactly 600 answers 200 and the
rest 429 (redis-py's default pool raised "Too many connections" past 100 in use, and the
limiter then let every request through), and no Redis failure is counted."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from quart_app.core.metrics import sample_value
from tests.support.builders import auth_headers, make_user
from tests.support.live import LiveServer

pytestmark = pytest.mark.slow

LIMIT = 600
BURST = 2000


async def test_a_burst_of_2000_requests_is_limited_to_600(
    db: str, start_live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    server = await start_live_server(rate_limit_per_minute=LIMIT)
    user = await make_user()
    headers = auth_headers(server.config, user)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def one() -> int:
            async with http.get(f"{server.url}/api/me", headers=headers) as response:
                await response.read()
                return response.status

        statuses = Counter(await asyncio.gather(*(one() for _ in range(BURST))))
        async with http.get(f"{server.url}/metrics") as response:
            text = await response.text()
    # a minute boundary inside the burst lets the sliding window admit a few more
    assert LIMIT <= statuses[200] <= LIMIT + 30, statuses
    assert statuses[429] == BURST - statuses[200], statuses
    failures = sample_value(
        text,
        "reeltrack_redis_connection_failures_total",
        {"process": "web", "operation": "rate_limit"},
    )
    assert not failures
