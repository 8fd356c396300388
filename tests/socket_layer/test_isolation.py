"""Isolation: a user's sockets receive only that user's events, snapshots and resumes."""

from __future__ import annotations

from socket_layer.emitter import ProgressEmitter
from tests.socket_layer.conftest import token_for
from tests.support.builders import add_event, make_empty_job, make_user
from tests.support.live import LiveServer
from tests.support.sio_client import connect_client


async def test_user_b_receives_nothing_of_user_a(
    live_server: LiveServer, db: str, transports: list[str], emitter: ProgressEmitter
) -> None:
    alice, bob = await make_user(), await make_user()
    a_job = await make_empty_job(alice, total_videos=5)
    await add_event(a_job, status="pending")  # in A's snapshot, never in B's
    b_job = await make_empty_job(bob, total_videos=5)

    a = await connect_client(live_server.url, token=token_for(alice), transports=transports)
    b = await connect_client(live_server.url, token=token_for(bob), transports=transports)
    try:
        assert [j["job_id"] for j in (await a.wait_for("snapshot"))["jobs"]] == [str(a_job.id)]
        assert await b.wait_for("snapshot") == {"jobs": []}

        a_events = []
        for _ in range(4):
            event = await add_event(a_job)
            a_events.append(event)
            await emitter.publish_progress(alice.id, event)
        # B's own event is published after all of A's: once B has it, any of A's events
        # that were (wrongly) routed to B would have arrived before it
        marker = await add_event(b_job, status="pending")
        await emitter.publish_progress(bob.id, marker)
        assert await a.wait_for("progress", count=4) == a_events
        assert await b.wait_for("progress") == marker
        assert b.events("progress") == [marker]
        assert [e["job_id"] for e in a.events("progress")] == [str(a_job.id)] * 4

        # B asking for A's job: nothing, no error, no hint it exists
        ack = await b.call("resume", {"jobs": {str(a_job.id): 0}})
        assert ack == {"events": [], "truncated": False}
        ack = await b.call("resume", {"jobs": {str(a_job.id): 0, str(b_job.id): 0}})
        assert ack == {"events": [marker], "truncated": False}
        assert (await a.call("resume", {"jobs": {str(a_job.id): 1}}))["events"] == a_events
    finally:
        await a.close()
        await b.close()
