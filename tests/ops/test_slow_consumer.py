"""Sockets that stop reading get a bounded send buffer (``WS_SEND_BUFFER_BYTES``).

hypercorn has no write timeout: everything published for a client that stopped reading
used to stay queued in the web process (1,000 x 64 KB pinned ~106 MB until it read
again).  Here a raw websocket client with a small receive buffer completes its
Socket.IO handshake and stops reading while 1,000 x 64 KB events for its user go
through the worker's emitter (Redis publish -> the web process's client manager): the
server closes it once more than the bound waits for it, counts it in
``reeltrack_socketio_slow_consumers_closed_total{transport}``, and its memory stays
bounded, while another user's clients (websocket and long-polling) keep receiving
their job's events contiguously and ``/api/health`` stays fast.  Both client managers
(``SOCKETIO_MANAGER``) are checked.  A long-polling client that stops polling gets the
same bound on its engine.io queue.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
import pytest
from engineio.packet import MESSAGE, Packet

from models.entities import ProcessingJob
from quart_app.core.tokens import issue_token
from socket_layer.protocol import SOCKETIO_PATH
from tasks.publisher import make_emitter
from tests.benchmarks.common import rss_bytes
from tests.conftest import TEST_SECRET
from tests.support.attackers import stalled_websocket, tcp_connection
from tests.support.builders import add_event, bounded_eio_socket, make_empty_job, make_user
from tests.support.health_watch import HealthWatch
from tests.support.live import LiveServer
from tests.support.sio_client import RecordingClient, connect_client
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

EVENTS = 1000
EVENT_BYTES = 64 * 1024
SEND_BUFFER = 1024 * 1024
#: every this many flood events the other user's job moves on
WITNESS_EVERY = 50
#: the stalled socket must be gone this long after the flood was published
CLOSED_WITHIN_S = 5.0
#: what the web process may grow by over the flood: the bound per socket, the Redis
#: listener's buffers and the allocator's slack (the unbounded queue grew ~106 MB)
RSS_GROWTH_LIMIT = 32 * 1024 * 1024
METRIC = "reeltrack_socketio_slow_consumers_closed_total"


async def closed_count(http: httpx.AsyncClient, transport: str) -> float:
    prefix = f'{METRIC}{{transport="{transport}"}} '
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[1])
    return 0.0


async def flood(
    server: LiveServer,
    stalled_user: object,
    witness_job: ProcessingJob,
    witness_user: object,
    witnesses: list[RecordingClient],
    sample: Callable[[], None],
) -> int:
    """Publish EVENTS x EVENT_BYTES for ``stalled_user`` through the worker's emitter,
    with an event of the witness's job every WITNESS_EVERY, each awaited on every
    witness before the flood goes on (that paces the flood so Redis never cuts the web
    process's subscription for its output buffer); ``sample()`` runs at each of them.
    Returns the witness events sent."""
    emitter = make_emitter(server.config)
    pad = "x" * EVENT_BYTES
    sent = 0
    try:
        for i in range(EVENTS):
            await emitter.publish_progress(stalled_user, {"job_id": str(uuid.uuid4()), "pad": pad})
            if i % WITNESS_EVERY == 0:
                await emitter.publish_progress(witness_user, await add_event(witness_job))
                sent += 1
                for witness in witnesses:
                    await witness.wait_for("progress", count=sent, wait_s=30)
                sample()
    finally:
        await emitter.close()
    return sent


@pytest.mark.parametrize("manager", ["user-channels", "stock"])
async def test_a_websocket_that_stops_reading_is_closed_and_others_are_served(
    db: str, start_live_server: Callable[..., Awaitable[LiveServer]], manager: str
) -> None:
    server = await start_live_server(
        ws_send_buffer_bytes=SEND_BUFFER,
        socketio_manager=manager,
        # pings must not be what closes the stalled socket within the test
        ws_ping_interval=30.0,
        ws_ping_timeout=60.0,
    )
    assert server.proc is not None
    pid = server.proc.pid
    stalled_user, witness_user = await make_user(), await make_user()
    job = await make_empty_job(witness_user, total_videos=EVENTS)
    witness_token = issue_token(TEST_SECRET, witness_user.id)
    witnesses: dict[str, RecordingClient] = {
        t: await connect_client(server.url, token=witness_token, transports=[t])
        for t in ("websocket", "polling")
    }
    sock = await asyncio.to_thread(
        stalled_websocket, server.port, issue_token(TEST_SECRET, stalled_user.id)
    )
    client_port = sock.getsockname()[1]
    peak, kernel_queue = 0, 0

    def sample() -> None:
        nonlocal peak, kernel_queue
        peak = max(peak, rss_bytes(pid))
        kernel_queue = max(kernel_queue, tcp_connection(server.port, client_port)[1])

    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            before_count = await closed_count(http, "websocket")
            before = rss_bytes(pid)
            async with HealthWatch(server.port) as health:
                t0 = time.monotonic()
                sent = await flood(
                    server, stalled_user.id, job, witness_user.id, [*witnesses.values()], sample
                )
                published = time.monotonic() - t0
                closed = await wait_until(
                    lambda: not tcp_connection(server.port, client_port)[0], CLOSED_WITHIN_S
                )
                gone_in = time.monotonic() - t0
            after = rss_bytes(pid)
            after_count = await closed_count(http, "websocket")
        received = {t: [e["seq"] for e in c.events("progress")] for t, c in witnesses.items()}
        stayed = {t: not c.disconnected.is_set() for t, c in witnesses.items()}
    finally:
        sock.close()
        for c in witnesses.values():
            await c.close()
    print(
        f"\n[{manager}] {EVENTS} x {EVENT_BYTES // 1024} KB for a websocket that stopped "
        f"reading, published in {published:.2f} s: "
        f"{'closed' if closed else 'STILL OPEN'} {gone_in:.2f} s after the flood began "
        f"(its kernel send queue at most {kernel_queue / 1024:.0f} KB); web RSS "
        f"{before / 2**20:.0f} -> peak {peak / 2**20:.0f} -> {after / 2**20:.0f} MB; "
        f"/api/health p90 {sorted(health.times)[int(0.9 * (len(health.times) - 1))] * 1000:.1f} "
        f"ms, worst {max(health.times) * 1000:.1f} ms over {len(health.times)}"
    )
    assert closed, "the server never closed the websocket that stopped reading"
    assert after_count == before_count + 1
    assert max(peak, after) - before < RSS_GROWTH_LIMIT, (before, peak, after)
    for t, seqs in received.items():
        assert seqs == list(range(1, sent + 1)), t
    assert stayed == {"websocket": True, "polling": True}
    health.assert_fast()


async def test_a_polling_client_that_stops_polling_is_closed_past_the_bound(
    db: str, start_live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    server = await start_live_server(
        ws_send_buffer_bytes=SEND_BUFFER, ws_ping_interval=30.0, ws_ping_timeout=60.0
    )
    assert server.proc is not None
    pid = server.proc.pid
    stalled_user, witness_user = await make_user(), await make_user()
    job = await make_empty_job(witness_user, total_videos=EVENTS)
    witness = await connect_client(
        server.url, token=issue_token(TEST_SECRET, witness_user.id), transports=["polling"]
    )
    url = f"{SOCKETIO_PATH}/?EIO=4&transport=polling"
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            opened = await http.get(url)
            sid = json.loads(opened.text[1:])["sid"]
            token = issue_token(TEST_SECRET, stalled_user.id)
            posted = await http.post(f"{url}&sid={sid}", content=f'40{{"token":"{token}"}}')
            assert posted.status_code == 200, posted.text
            ack = await http.get(f"{url}&sid={sid}")  # the CONNECT ack; then no more polls
            assert "40{" in ack.text, ack.text
            before_count = await closed_count(http, "polling")
            before = peak = rss_bytes(pid)

            def sample() -> None:
                nonlocal peak
                peak = max(peak, rss_bytes(pid))

            sent = await flood(server, stalled_user.id, job, witness_user.id, [witness], sample)
            seqs = [e["seq"] for e in witness.events("progress")]
            after = rss_bytes(pid)
            after_count = await closed_count(http, "polling")
            late = await http.get(f"{url}&sid={sid}")  # the session is gone, not 64 MB
        stayed = not witness.disconnected.is_set()
    finally:
        await witness.close()
    print(
        f"\n{EVENTS} x {EVENT_BYTES // 1024} KB for a polling client that stopped polling: "
        f"its next poll answered {late.status_code} ({len(late.content)} bytes); web RSS "
        f"{before / 2**20:.0f} -> peak {peak / 2**20:.0f} -> {after / 2**20:.0f} MB"
    )
    assert after_count == before_count + 1
    assert late.status_code == 400, (late.status_code, len(late.content))
    assert max(peak, after) - before < RSS_GROWTH_LIMIT, (before, peak, after)
    assert seqs == list(range(1, sent + 1))
    assert stayed


async def test_one_large_message_passes_an_empty_backlog_and_the_next_closes() -> None:
    """The bound is checked before a message is added: a message larger than the bound
    reaches a socket with nothing waiting (a large resume answer); the next one finds
    the backlog over the bound and closes the session, its queue emptied."""
    eio, sock, queue = bounded_eio_socket(100)
    await sock.send(Packet(MESSAGE, data="x" * 1000))
    assert (queue.qsize(), queue.queued_bytes) == (1, 1001)
    await sock.send(Packet(MESSAGE, data="y"))
    assert queue.overflowed and queue.queued_bytes == 0
    assert await wait_until(lambda: "s1" not in eio.sockets, 2)
    assert sock.closed and queue.get_nowait() is None  # the writer's wake-up, nothing else
