"""GET /api/jobs/{id}/progress-history on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.entities import JobStatus
from tests.quart_app.conftest import Api
from tests.support.builders import make_job, make_list, make_user


async def test_history_is_ordered_by_seq(api: Api) -> None:
    user = await make_user()
    job = await make_job(await make_list(user), events=5, seq_order=[3, 5, 1, 4, 2])
    status, body = await api.call("GET", f"/api/jobs/{job.id}/progress-history", user)
    assert status == 200
    assert [e["seq"] for e in body["events"]] == [1, 2, 3, 4, 5]
    assert body["last_seq"] == 5
    assert all(e["job_id"] == str(job.id) for e in body["events"])


async def test_after_seq_pages_through_1000_events(api: Api) -> None:
    user = await make_user()
    job = await make_job(
        await make_list(user), status=JobStatus.PROCESSING, total=1000, events=1000
    )
    status, body = await api.call(
        "GET", f"/api/jobs/{job.id}/progress-history?after_seq=500&limit=100", user
    )
    assert status == 200
    assert [e["seq"] for e in body["events"]] == list(range(501, 601))

    status, body = await api.call("GET", f"/api/jobs/{job.id}/progress-history", user)
    assert [e["seq"] for e in body["events"]] == list(range(1, 101))  # default limit 100
    status, body = await api.call(
        "GET", f"/api/jobs/{job.id}/progress-history?after_seq=990&limit=1000", user
    )
    assert [e["seq"] for e in body["events"]] == list(range(991, 1001))


async def test_since_is_strictly_after(api: Api) -> None:
    user = await make_user()
    start = datetime(2026, 11, 29, 10, 0, 0, 123456, tzinfo=UTC)
    job = await make_job(await make_list(user), events=4, start=start, step=timedelta(seconds=1))
    # exactly seq 2's timestamp, in three spellings of the same instant
    spellings = [
        "2026-11-29T10:00:01.123456Z",
        "2026-11-29T10:00:01.123456+00:00",
        "2026-11-29T12:00:01.123456+02:00",
    ]
    for since in spellings:
        status, body = await api.call(
            "GET",
            f"/api/jobs/{job.id}/progress-history",
            user,
            query_string={"since": since},
        )
        assert status == 200, body
        assert [e["seq"] for e in body["events"]] == [3, 4], since
    # one microsecond earlier includes seq 2; combined with after_seq
    status, body = await api.call(
        "GET",
        f"/api/jobs/{job.id}/progress-history",
        user,
        query_string={"since": "2026-11-29T10:00:01.123455Z", "after_seq": "2"},
    )
    assert [e["seq"] for e in body["events"]] == [3, 4]
    status, body = await api.call(
        "GET",
        f"/api/jobs/{job.id}/progress-history",
        user,
        query_string={"since": "2026-11-29T10:00:01.123455Z"},
    )
    assert [e["seq"] for e in body["events"]] == [2, 3, 4]


async def test_bad_parameters_answer_400_json(api: Api) -> None:
    user = await make_user()
    job = await make_job(await make_list(user), events=3)
    for query in (
        "after_seq=-1",
        "after_seq=abc",
        "after_seq=2147483648",  # beyond the seq column: was a 500 from the DB
        "limit=0",
        "limit=1001",
        "limit=ten",
        "since=yesterday",
        "since=2026-13-45T99:00:00Z",
    ):
        status, body = await api.call("GET", f"/api/jobs/{job.id}/progress-history?{query}", user)
        assert status == 400, query
        assert body["code"] == "validation_error", query
        assert body["errors"], query


async def test_other_users_history_is_404(api: Api) -> None:
    owner, stranger = await make_user(), await make_user()
    job = await make_job(await make_list(owner), events=3)
    status, body = await api.call("GET", f"/api/jobs/{job.id}/progress-history", stranger)
    assert status == 404 and body["code"] == "not_found"
    status, _ = await api.call("GET", "/api/jobs/not-a-uuid/progress-history", owner)
    assert status == 404
