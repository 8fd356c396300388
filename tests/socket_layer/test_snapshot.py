"""``snapshot`` right after connect: the latest event of each of the user's jobs that is
active or finished less than 5 minutes ago — and nothing falls between it and the live
stream (the room is joined before the snapshot is read)."""

from __future__ import annotations

import asyncio
from typing import Any

from socket_layer.emitter import ProgressEmitter
from tests.socket_layer.conftest import token_for
from tests.support.builders import add_event, make_empty_job, make_user, minutes_ago
from tests.support.live import LiveServer
from tests.support.sio_client import RecordingClient, connect_client


async def test_snapshot_holds_latest_event_of_active_and_recently_finished_jobs(
    live_server: LiveServer, db: str, transports: list[str]
) -> None:
    user = await make_user()
    expected: list[dict[str, Any]] = []

    processing = await make_empty_job(user)
    await add_event(processing, status="pending")
    await add_event(processing)
    expected.append(await add_event(processing))

    pending = await make_empty_job(user)
    expected.append(await add_event(pending, status="pending"))

    done_now = await make_empty_job(user, total_videos=2)
    await add_event(done_now, status="pending")
    expected.append(await add_event(done_now, status="completed"))

    failed_4min = await make_empty_job(user, total_videos=2)
    await add_event(failed_4min, status="pending", created_at=minutes_ago(6))
    expected.append(await add_event(failed_4min, status="failed", created_at=minutes_ago(4)))

    old_done = await make_empty_job(user, total_videos=2)
    await add_event(old_done, status="pending", created_at=minutes_ago(12))
    await add_event(old_done, status="completed", created_at=minutes_ago(10))

    old_cancelled = await make_empty_job(user, total_videos=2)
    await add_event(old_cancelled, status="pending", created_at=minutes_ago(7))
    await add_event(old_cancelled, status="cancelled", created_at=minutes_ago(6))

    stranger = await make_user()
    foreign = await make_empty_job(stranger)
    await add_event(foreign, status="pending")

    client = await connect_client(live_server.url, token=token_for(user), transports=transports)
    try:
        snapshot = await client.wait_for("snapshot")
    finally:
        await client.close()
    assert snapshot == {"jobs": expected}  # oldest job first, latest event of each
    assert len(client.events("snapshot")) == 1


async def test_snapshot_then_live_events_leave_no_gap(
    live_server: LiveServer, db: str, transports: list[str], emitter: ProgressEmitter
) -> None:
    """Events are persisted and published continuously while clients connect; every
    client's snapshot seq followed by its live events is contiguous up to the end."""
    user = await make_user()
    job = await make_empty_job(user, total_videos=60)
    await emitter.publish_progress(user.id, await add_event(job, status="pending"))
    stop = asyncio.Event()

    async def produce() -> None:
        while True:
            event = await add_event(job)
            await emitter.publish_progress(user.id, event)  # persist, then publish
            if event["processed_videos"] >= 59 or stop.is_set():
                return
            await asyncio.sleep(0.005)

    producer = asyncio.create_task(produce())
    clients: list[RecordingClient] = []
    try:
        for _ in range(5):
            clients.append(
                await connect_client(live_server.url, token=token_for(user), transports=transports)
            )
        await producer
        await job.refresh_from_db()
        last = job.last_seq
        for client in clients:
            snap = await client.wait_for("snapshot")
            start = snap["jobs"][0]["seq"] if snap["jobs"] else 0

            def seqs(c: RecordingClient = client) -> list[int]:
                return [e["seq"] for e in c.events("progress")]

            while start < last and (not seqs() or seqs()[-1] < last):
                await client.wait_for("progress", count=len(seqs()) + 1, wait_s=10)
            live = [s for s in seqs() if s > start]
            assert live == list(range(start + 1, last + 1)), (start, seqs())
    finally:
        stop.set()
        await producer
        await asyncio.gather(*(c.close() for c in clients))
