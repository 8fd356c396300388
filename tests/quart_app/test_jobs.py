"""Creating jobs by import, listing, cancelling and deleting them."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from rq import Queue
from rq.job import JobStatus as RQStatus
from rq.registry import ScheduledJobRegistry

from models.entities import JobProgressEvent, JobStatus, ProcessingJob, Video, VideoStatus
from models.history import record_event
from socket_layer.protocol import user_room
from tasks.journal import RedisJournal, journal_key
from tasks.queue import JOB_FUNCTION, QUEUE_NAME, rq_job_id_for
from tests.quart_app.conftest import (
    Api,
    ApiFactory,
    Published,
    processing_job_with_rq_job,
    services_of,
)
from tests.support.builders import event_for, make_job, make_list, make_user
from tests.support.services import free_port


def _videos(n: int) -> dict[str, Any]:
    return {
        "videos": [{"url": f"https://example.com/v{i}.mp4", "title": f"V {i}"} for i in range(n)]
    }


async def test_import_creates_videos_job_first_event_and_rq_job(
    api: Api, quart_redis_url: str
) -> None:
    user = await make_user()
    vlist = await make_list(user)
    async with Published(api) as published:
        body = await api.import_videos(user, vlist.id, _videos(3))
        assert body["total_videos"] == 3
        message = await published.next()
    job_id = body["job_id"]

    job = await ProcessingJob.get(id=job_id)
    assert job.owner_id == user.id and job.list_id == vlist.id
    assert job.status == JobStatus.PENDING and job.total_videos == 3 and job.last_seq == 1
    assert job.rq_job_id == rq_job_id_for(job_id)
    videos = await Video.filter(job_id=job_id).order_by("position")
    assert [(v.position, v.source, v.title) for v in videos] == [
        (i, f"https://example.com/v{i}.mp4", f"V {i}") for i in range(3)
    ]
    assert all(v.status == VideoStatus.PENDING for v in videos)
    events = await JobProgressEvent.filter(job_id=job_id).values_list("seq", "progress_data")
    assert len(events) == 1
    seq, first = events[0]
    assert seq == 1 and first["status"] == "pending" and first["progress"] == 0
    assert first["total_videos"] == 3 and first["job_id"] == job_id

    # published to the owner's room, the same event as stored
    assert message["room"] == user_room(user.id)
    assert message["data"] == first

    # the RQ job is on queue "videos" with the right function and argument
    sync = redis.Redis.from_url(quart_redis_url)
    try:
        queue = Queue(QUEUE_NAME, connection=sync)
        rq_job = queue.fetch_job(rq_job_id_for(job_id))
        assert rq_job is not None
        assert rq_job.func_name == JOB_FUNCTION == "tasks.process_video_list"
        assert rq_job.args == (job_id,)
        assert rq_job.origin == "videos"
        assert rq_job.id in queue.job_ids
    finally:
        sync.close()


async def test_redis_down_at_enqueue_answers_503_and_fails_the_job(
    pg_database_url: str,
    api_factory: ApiFactory,
) -> None:
    async with api_factory(pg_database_url, redis_url=f"redis://127.0.0.1:{free_port()}/0") as api:
        user = await make_user()
        vlist = await make_list(user)
        status, body = await api.call(
            "POST", f"/api/lists/{vlist.id}/videos/bulk", user, json=_videos(2)
        )
        assert status == 503 and body["code"] == "queue_unavailable"
        job = await ProcessingJob.get(id=body["job_id"])
        assert job.status == JobStatus.FAILED and job.last_seq == 2 and job.finished_at
        history = await JobProgressEvent.filter(job_id=job.id).order_by("seq")
        assert [(e.seq, e.progress_data["status"]) for e in history] == [
            (1, "pending"),
            (2, "failed"),
        ]
        assert history[1].progress_data["error"]
        assert {v.status for v in await Video.filter(job_id=job.id)} == {VideoStatus.FAILED}


async def test_jobs_list_and_get_carry_latest_event(api: Api) -> None:
    user, other = await make_user(), await make_user()
    vlist = await make_list(user)
    pending = await make_job(vlist, events=1)
    running = await make_job(vlist, status=JobStatus.PROCESSING, events=4)
    done = await make_job(vlist, status=JobStatus.COMPLETED, events=2)
    await make_job(await make_list(other), events=1)

    status, body = await api.call("GET", "/api/jobs", user)
    assert status == 200
    assert body["next_cursor"] is None
    by_id = {j["id"]: j for j in body["items"]}
    assert set(by_id) == {str(pending.id), str(running.id), str(done.id)}
    assert by_id[str(running.id)]["latest_event"]["seq"] == 4
    assert by_id[str(pending.id)]["latest_event"]["status"] == "pending"

    status, body = await api.call("GET", "/api/jobs?status=active", user)
    assert {j["id"] for j in body["items"]} == {str(pending.id), str(running.id)}
    status, body = await api.call("GET", "/api/jobs?status=completed", user)
    assert [j["id"] for j in body["items"]] == [str(done.id)]
    status, body = await api.call("GET", "/api/jobs?status=bogus", user)
    assert status == 400 and body["code"] == "validation_error"

    status, one = await api.call("GET", f"/api/jobs/{running.id}", user)
    assert status == 200 and one["latest_event"]["seq"] == 4 and one["status"] == "processing"


async def test_other_users_job_is_404_everywhere(api: Api) -> None:
    owner, stranger = await make_user(), await make_user()
    job = await make_job(await make_list(owner), events=1)
    await api.assert_not_found(
        stranger,
        [
            ("GET", f"/api/jobs/{job.id}"),
            ("POST", f"/api/jobs/{job.id}/cancel"),
            ("DELETE", f"/api/jobs/{job.id}"),
            ("GET", f"/api/jobs/{job.id}/progress-history"),
            ("GET", f"/api/jobs/{uuid.uuid4()}"),
            ("GET", "/api/jobs/123"),
        ],
    )
    job = await ProcessingJob.get(id=job.id)
    assert job.status == JobStatus.PENDING and not job.cancel_requested


async def test_cancel_pending_job_writes_final_event(api: Api) -> None:
    user = await make_user()
    vlist = await make_list(user)
    status, created = await api.call(
        "POST", f"/api/lists/{vlist.id}/videos/bulk", user, json=_videos(2)
    )
    job_id = created["job_id"]
    async with Published(api) as published:
        status, body = await api.call("POST", f"/api/jobs/{job_id}/cancel", user)
        assert status == 200 and body["result"] == "cancelled" and body["status"] == "cancelled"
        message = await published.next()
    job = await ProcessingJob.get(id=job_id)
    assert job.status == JobStatus.CANCELLED and job.cancel_requested and job.last_seq == 2
    stored = await JobProgressEvent.get(job_id=job_id, seq=2)
    assert stored.progress_data["status"] == "cancelled"
    assert message["data"] == stored.progress_data
    # cancelled before a worker started: no video is left pending
    videos = await Video.filter(job_id=job_id)
    assert {v.status for v in videos} == {VideoStatus.CANCELLED}
    assert {v.error for v in videos} == {"cancelled before it was processed"}

    status, body = await api.call("POST", f"/api/jobs/{job_id}/cancel", user)
    assert status == 409 and body["code"] == "job_finished"


async def test_cancel_claimed_job_only_requests(api: Api) -> None:
    user = await make_user()
    job = await make_job(await make_list(user), events=1, total=5)
    # a worker claims it: conditional pending -> processing with seq 2
    claimed = event_for(job.id, 2, total=5, status="processing")
    assert await record_event(claimed, expect_status=JobStatus.PENDING)
    status, body = await api.call("POST", f"/api/jobs/{job.id}/cancel", user)
    assert status == 200 and body["result"] == "cancel_requested"
    job = await ProcessingJob.get(id=job.id)
    assert job.cancel_requested and job.status == JobStatus.PROCESSING and job.last_seq == 2


async def test_batch_cancel_reports_per_id(api: Api) -> None:
    user, other = await make_user(), await make_user()
    vlist = await make_list(user)
    pending = await make_job(vlist, events=1)
    running = await make_job(vlist, status=JobStatus.PROCESSING, events=3)
    finished = await make_job(vlist, status=JobStatus.COMPLETED, events=2)
    foreign = await make_job(await make_list(other), events=1)
    ids = [str(pending.id), str(running.id), str(finished.id), str(foreign.id), "junk"]
    status, body = await api.call("POST", "/api/jobs/cancel", user, json={"job_ids": ids})
    assert status == 200
    assert [(r["job_id"], r["result"]) for r in body["results"]] == [
        (str(pending.id), "cancelled"),
        (str(running.id), "cancel_requested"),
        (str(finished.id), "already_finished"),
        (str(foreign.id), "not_found"),
        ("junk", "not_found"),
    ]
    assert not (await ProcessingJob.get(id=foreign.id)).cancel_requested
    status, body = await api.call("POST", "/api/jobs/cancel", user, json={"job_ids": []})
    assert status == 400
    status, body = await api.call("POST", "/api/jobs/cancel", user, json={"ids": ids})
    assert status == 400 and body["code"] == "validation_error"


async def test_delete_pending_job_publishes_cancelled_and_removes_history(api: Api) -> None:
    user = await make_user()
    job = await make_job(await make_list(user), events=1, total=4)
    async with Published(api) as published:
        status, _ = await api.call("DELETE", f"/api/jobs/{job.id}", user)
        assert status == 204
        message = await published.next()
    assert message["room"] == user_room(user.id)
    assert message["data"]["status"] == "cancelled" and message["data"]["seq"] == 2
    assert message["data"]["job_id"] == str(job.id)
    assert not await ProcessingJob.exists(id=job.id)
    assert not await JobProgressEvent.exists(job_id=job.id)
    status, _ = await api.call("GET", f"/api/jobs/{job.id}", user)
    assert status == 404


async def delete_and_collect(api: Api, job: ProcessingJob, wait: float) -> dict[str, Any] | None:
    owner = await job.owner
    message = None
    async with Published(api) as published:
        status, _ = await api.call("DELETE", f"/api/jobs/{job.id}", owner)
        assert status == 204
        with contextlib.suppress(TimeoutError):
            message = await published.next(wait=wait)
    assert not await ProcessingJob.exists(id=job.id)
    assert not await JobProgressEvent.exists(job_id=job.id)
    return message


async def test_delete_a_running_job_leaves_the_announcement_to_its_worker(api: Api) -> None:
    job = await processing_job_with_rq_job(api, RQStatus.STARTED)
    assert await delete_and_collect(api, job, wait=0.3) is None


@pytest.mark.parametrize("rq_status", [RQStatus.QUEUED, RQStatus.SCHEDULED, None])
async def test_delete_a_job_waiting_between_slices_announces_it(
    api: Api, rq_status: RQStatus | None
) -> None:
    """No worker holds a job waiting for its next slice (queued, scheduled: deferred) or
    whose RQ job is gone: the next slice finds no row and says nothing, so the API
    tells the owner's clients."""
    job = await processing_job_with_rq_job(api, rq_status)
    message = await delete_and_collect(api, job, wait=5)
    assert message is not None
    assert message["room"] == user_room(job.owner_id)
    assert message["data"]["job_id"] == str(job.id)
    assert message["data"]["status"] == "cancelled" and message["data"]["seq"] == 4
    assert message["data"]["message"] == "Job deleted"


async def test_delete_processing_job_removes_its_journal_of_unpersisted_events(
    api: Api, quart_redis_url: str
) -> None:
    user = await make_user()
    job = await make_job(await make_list(user), status=JobStatus.PROCESSING, events=2)
    client = aioredis.Redis.from_url(quart_redis_url)
    journal = RedisJournal(client)
    try:
        # what a worker writes while its DB writes fail (tasks/journal.py)
        await journal.put(event_for(job.id, 3))
        assert await client.exists(journal_key(job.id))
        status, _ = await api.call("DELETE", f"/api/jobs/{job.id}", user)
        assert status == 204
        assert not await client.exists(journal_key(job.id))  # nothing can come back
    finally:
        await client.aclose()


async def test_a_cancelled_or_deleted_waiting_job_passes_its_place_in_line_on(
    pg_database_url: str, api_factory: ApiFactory
) -> None:
    """USER_MAX_ACTIVE_JOBS=1: two of the user's jobs go into the queue, the others wait,
    scheduled.  A cancel or a delete by the API (no worker runs them) gives a job's
    place to the next waiter at once: its RQ job is due now, not when it asks again."""
    async with api_factory(pg_database_url, user_max_active_jobs=1) as api:
        user = await make_user()
        vlist = await make_list(user)
        ids = [(await api.import_videos(user, vlist.id, _videos(1)))["job_id"] for _ in range(4)]
        connection = services_of(api).rq_redis
        queue = Queue(QUEUE_NAME, connection=connection)
        scheduled = ScheduledJobRegistry(QUEUE_NAME, connection=connection)

        def due_at(job_id: str) -> float:
            return scheduled.get_scheduled_time(rq_job_id_for(job_id)).timestamp()

        queued = set(queue.get_job_ids())  # other tests' jobs too: this Redis db is shared
        assert {rq_job_id_for(i) for i in ids[:2]} <= queued
        assert not {rq_job_id_for(i) for i in ids[2:]} & queued
        asked_for = {i: due_at(i) for i in ids[2:]}  # when they would ask again
        status, body = await api.call("POST", f"/api/jobs/{ids[0]}/cancel", user)
        assert status == 200 and body["result"] == "cancelled", body
        assert due_at(ids[2]) <= time.time()
        assert due_at(ids[3]) == asked_for[ids[3]]
        status, _ = await api.call("DELETE", f"/api/jobs/{ids[1]}", user)
        assert status == 204
        assert due_at(ids[3]) <= time.time()
