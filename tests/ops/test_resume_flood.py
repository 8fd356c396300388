"""A resume flood against a live web process: one user with 5 sockets sends 10 resumes
at once on each, repeatedly.  Every resume is answered at once (the excess with
``resume_in_progress`` or ``resume_rate_limited`` in its ack, never a hang), and
meanwhile another user's ``GET /api/jobs`` stays fast and its live job events arrive
contiguous (before: 12 ms -> 1.4 s for that GET)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from quart_app.core.tokens import issue_token
from socket_layer.emitter import ProgressEmitter
from socket_layer.protocol import (
    ERROR_RESUME_IN_PROGRESS,
    ERROR_RESUME_RATE_LIMITED,
    SOCKETIO_PATH,
)
from tests.conftest import TEST_SECRET
from tests.support.builders import add_event, auth_headers, make_empty_job, make_user
from tests.support.live import LiveServer
from tests.support.sio_client import connect_client

pytestmark = pytest.mark.slow

SOCKETS = 5
IN_FLIGHT = 10
ROUNDS = 5
#: the other user's GET /api/jobs, worst of the run (about 10-30 ms here unloaded)
GET_WITHIN_S = 0.5


async def test_a_resume_flood_is_answered_with_errors_and_others_stay_fast(
    db: str, start_live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    server = await start_live_server()
    url = f"{server.url}{SOCKETIO_PATH}"
    flooder, witness = await make_user(), await make_user()
    jobs = [await make_empty_job(flooder, total_videos=1000) for _ in range(20)]
    for job in jobs:
        for _ in range(50):
            await add_event(job)
    resume = {"jobs": {str(job.id): 0 for job in jobs}}
    their_job = await make_empty_job(witness, total_videos=1000)
    flood = [
        await connect_client(
            url, token=issue_token(TEST_SECRET, flooder.id), transports=["websocket"]
        )
        for _ in range(SOCKETS)
    ]
    watcher = await connect_client(
        url, token=issue_token(TEST_SECRET, witness.id), transports=["websocket"]
    )
    emitter = ProgressEmitter(server.config.redis_url or "")
    answers: Counter[str] = Counter()
    slowest_get = 0.0
    sent = 0
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(ROUNDS):
                calls = [
                    c.call("resume", resume, wait_s=30) for c in flood for _ in range(IN_FLIGHT)
                ]
                pending = asyncio.gather(*calls)
                for _ in range(3):  # the other user, while the flood is in flight
                    event = await add_event(their_job)
                    await emitter.publish_progress(witness.id, event)
                    sent += 1
                    t0 = time.monotonic()
                    async with http.get(
                        f"{server.url}/api/jobs", headers=auth_headers(server.config, witness)
                    ) as response:
                        assert response.status == 200
                        await response.read()
                    slowest_get = max(slowest_get, time.monotonic() - t0)
                acks: list[Any] = await pending
                for ack in acks:
                    answers[ack.get("error", "events")] += 1
        seqs = [e["seq"] for e in (await watcher.wait_for("progress", count=sent))]
    finally:
        await emitter.close()
        for c in [*flood, watcher]:
            await c.close()
    print(f"\nresume answers {dict(answers)}; slowest GET /api/jobs {slowest_get * 1000:.0f} ms")
    assert sum(answers.values()) == SOCKETS * IN_FLIGHT * ROUNDS
    # in flight on a socket -> resume_in_progress; the user's bucket empty -> rate limited
    assert answers[ERROR_RESUME_IN_PROGRESS] > 0 and answers[ERROR_RESUME_RATE_LIMITED] > 0
    assert answers["events"] <= 10 + ROUNDS * SOCKETS  # the burst, then one per refill
    assert set(answers) <= {"events", ERROR_RESUME_IN_PROGRESS, ERROR_RESUME_RATE_LIMITED}
    assert seqs == list(range(1, sent + 1))
    assert slowest_get < GET_WITHIN_S, f"GET /api/jobs took {slowest_get:.3f} s during the flood"
