"""GET /api/jobs and GET /api/lists/{id}/videos: pages newest first with an opaque
cursor, filters and search; job names, sources and priorities set at submission."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from models.entities import JobStatus, ProcessingJob, Video, VideoStatus
from models.events import utcnow
from tests.quart_app.conftest import Api
from tests.support.builders import make_job, make_list, make_user


async def _all_pages(api: Api, user: Any, path: str, *, between: Any = None) -> list[list[str]]:
    """Every page of ``path`` (ids per page), calling ``between()`` after each page."""
    pages: list[list[str]] = []
    cursor: str | None = None
    joiner = "&" if "?" in path else "?"
    while True:
        url = path if cursor is None else f"{path}{joiner}cursor={cursor}"
        status, body = await api.call("GET", url, user)
        assert status == 200, body
        pages.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "paging does not end"
        if between is not None:
            await between()


async def test_pages_newest_first_with_no_job_twice_or_skipped_while_jobs_are_added(
    api: Api,
) -> None:
    user = await make_user()
    vlist = await make_list(user)
    jobs = [await make_job(vlist, events=1) for _ in range(11)]
    # ties on created_at are broken by id: four jobs share one timestamp
    base = utcnow() - timedelta(hours=1)
    for i, job in enumerate(jobs):
        created = base + timedelta(seconds=min(i, 4))
        await ProcessingJob.filter(id=job.id).update(created_at=created)
    rows = await ProcessingJob.filter(owner_id=user.id).order_by("-created_at", "-id")
    expected = [str(r.id) for r in rows]
    added: list[str] = []

    async def add_a_job() -> None:  # a job submitted while the client pages
        added.append(str((await make_job(vlist, events=1)).id))

    pages = await _all_pages(api, user, "/api/jobs?limit=3", between=add_a_job)
    seen = [job_id for page in pages for job_id in page]
    assert [len(p) for p in pages[:-1]] == [3] * (len(pages) - 1)
    assert seen == expected  # all of them, once each, newest first; none of the added
    assert added and not set(added) & set(seen)

    # a fresh first page starts with the jobs added meanwhile, newest first
    status, body = await api.call("GET", "/api/jobs?limit=100", user)
    assert [j["id"] for j in body["items"]] == added[::-1] + expected
    assert body["next_cursor"] is None


async def test_limit_and_cursor_are_validated(pg_api: Api) -> None:
    user = await make_user()
    status, body = await pg_api.call("GET", "/api/jobs", user)
    assert status == 200 and body == {"items": [], "next_cursor": None}
    for bad in ("limit=0", "limit=101", "cursor=not-a-cursor", "cursor=" + "A" * 300):
        status, body = await pg_api.call("GET", f"/api/jobs?{bad}", user)
        assert status == 400, bad
        assert body["code"] in {"validation_error", "invalid_cursor"}, (bad, body)
    status, body = await pg_api.call("GET", "/api/jobs?cursor=bm90IGpzb24", user)
    assert status == 400 and body["code"] == "invalid_cursor"


async def test_status_list_and_text_filters(api: Api) -> None:
    user, other = await make_user(), await make_user()
    talks = await make_list(user, name="Conference Talks")
    holidays = await make_list(user, name="Holidays 100%")
    by_status = {
        status: await make_job(talks, status=status, events=1)
        for status in (
            JobStatus.PENDING,
            JobStatus.PROCESSING,
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
        )
    }
    beach = await make_job(holidays, status=JobStatus.COMPLETED, events=1)
    await ProcessingJob.filter(id=beach.id).update(name="Beach_day uploads")
    await make_job(await make_list(other, name="Conference Talks"), events=1)

    async def ids(query: str) -> set[str]:
        status, body = await api.call("GET", f"/api/jobs?{query}", user)
        assert status == 200, (query, body)
        return {j["id"] for j in body["items"]}

    def of(*statuses: JobStatus) -> set[str]:
        return {str(by_status[s].id) for s in statuses}

    assert await ids("status=active") == of(JobStatus.PENDING, JobStatus.PROCESSING)
    assert await ids("status=failed,cancelled") == of(JobStatus.FAILED, JobStatus.CANCELLED)
    assert await ids("status=failed&status=cancelled") == of(JobStatus.FAILED, JobStatus.CANCELLED)
    assert await ids("status=completed") == of(JobStatus.COMPLETED) | {str(beach.id)}
    assert await ids("status=finished") == of(
        JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED
    ) | {str(beach.id)}
    assert await ids(f"list_id={holidays.id}") == {str(beach.id)}
    assert await ids(f"list_id={holidays.id}&status=active") == set()
    assert await ids(f"list_id={uuid.uuid4()}") == set()
    # q: the job's name or its list's name, any case; LIKE wildcards are plain text
    assert await ids("q=conference%20TALKS") == of(*by_status)
    assert await ids("q=BEACH") == {str(beach.id)}
    assert await ids("q=100%25") == {str(beach.id)}
    assert await ids("q=B_ach") == set()  # "_" would match the "e" of "Beach"
    assert await ids("q=_day") == {str(beach.id)}
    assert await ids("q=talks&status=active") == of(JobStatus.PENDING, JobStatus.PROCESSING)

    for bad in ("status=bogus", "status=active,bogus", "list_id=123", "q="):
        status, body = await api.call("GET", f"/api/jobs?{bad}", user)
        assert status == 400 and body["code"] == "validation_error", bad


async def test_jobs_are_named_with_source_priority_and_list(api: Api) -> None:
    user = await make_user()
    vlist = await make_list(user, name="Talks")
    videos = {"videos": [{"url": f"https://example.com/{i}.mp4"} for i in range(2)]}
    csv = "url,title\nhttps://example.com/a.mp4,A\n"

    async def submit(path: str, **kwargs: Any) -> dict[str, Any]:
        status, created = await api.call("POST", f"/api/lists/{vlist.id}{path}", user, **kwargs)
        assert status == 202, created
        status, job = await api.call("GET", f"/api/jobs/{created['job_id']}", user)
        assert status == 200
        return dict(job)

    job = await submit("/videos/bulk", json=videos)
    assert (job["name"], job["source"], job["priority"]) == (
        "JSON import · 2 videos",
        "json",
        "normal",
    )
    assert job["list_id"] == str(vlist.id) and job["list_name"] == "Talks"
    assert job["created_at"] and job["started_at"] is None and job["finished_at"] is None
    job = await submit("/videos/bulk", json={**videos, "name": "  Day  1 ", "priority": "high"})
    assert (job["name"], job["priority"]) == ("Day 1", "high")
    job = await submit("/videos/bulk?name=From%20query&priority=low", json=videos)
    assert (job["name"], job["priority"]) == ("From query", "low")
    job = await submit("/videos/bulk", data=csv.encode(), headers={"Content-Type": "text/csv"})
    assert (job["name"], job["source"]) == ("CSV import · 1 video", "csv")
    job = await submit(
        "/videos/bulk?name=Evening&priority=high",
        data=csv.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert (job["name"], job["source"], job["priority"]) == ("Evening", "csv", "high")

    for path, kwargs in (
        ("/videos/bulk?priority=urgent", {"json": videos}),
        ("/videos/bulk", {"json": {**videos, "priority": "urgent"}}),
        ("/videos/bulk", {"json": {**videos, "name": ""}}),
        ("/videos/bulk", {"json": {**videos, "name": "x" * 201}}),
        ("/videos/upload?priority=3", {"data": b"", "headers": {"Content-Type": "text/csv"}}),
    ):
        status, body = await api.call("POST", f"/api/lists/{vlist.id}{path}", user, **kwargs)
        assert status == 400 and body["code"] == "validation_error", (path, kwargs, body)
    assert await ProcessingJob.filter(owner_id=user.id).count() == 5  # none of the bad ones


async def test_list_videos_pages_newest_first_with_a_status_filter(api: Api) -> None:
    user, other = await make_user(), await make_user()
    vlist = await make_list(user)
    base = utcnow() - timedelta(hours=1)
    statuses = [VideoStatus.READY, VideoStatus.FAILED, VideoStatus.CANCELLED, VideoStatus.PENDING]
    made = []
    for i in range(10):
        made.append(
            await Video.create(
                list_id=vlist.id,
                source=f"https://example.com/{i}.mp4",
                title=f"V{i}",
                status=statuses[i % 4],
                created_at=base + timedelta(seconds=i // 3),  # ties broken by id
            )
        )
    await Video.filter(id__in=[v.id for v in made]).update(created_at=base)  # all tied
    for i, v in enumerate(made[:6]):
        await Video.filter(id=v.id).update(created_at=base + timedelta(seconds=i))
    rows = await Video.filter(list_id=vlist.id).order_by("-created_at", "-id")
    expected = [str(r.id) for r in rows]

    pages = await _all_pages(api, user, f"/api/lists/{vlist.id}/videos?limit=4")
    assert [len(p) for p in pages] == [4, 4, 2]
    assert [v for p in pages for v in p] == expected

    status, body = await api.call(
        "GET", f"/api/lists/{vlist.id}/videos?status=failed,cancelled", user
    )
    assert status == 200 and body["next_cursor"] is None
    assert {v["status"] for v in body["items"]} == {"failed", "cancelled"}
    assert [v["id"] for v in body["items"]] == [
        str(r.id) for r in rows if r.status in {VideoStatus.FAILED, VideoStatus.CANCELLED}
    ]
    status, body = await api.call("GET", f"/api/lists/{vlist.id}/videos?status=nope", user)
    assert status == 400 and body["code"] == "validation_error"
    status, body = await api.call("GET", f"/api/lists/{vlist.id}/videos?cursor=zz", user)
    assert status == 400 and body["code"] == "invalid_cursor"
    await api.assert_not_found(other, [("GET", f"/api/lists/{vlist.id}/videos")])
