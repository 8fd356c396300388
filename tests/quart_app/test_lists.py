"""Lists, videos, thumbnails and uploads."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from rq.job import JobStatus as RQStatus

from models.entities import JobStatus, ProcessingJob, Video, VideoList
from quart_app.uploads import upload_dir
from socket_layer.protocol import user_room
from tests.quart_app.conftest import Api, ApiFactory, Published, processing_job_with_rq_job
from tests.support.builders import make_job, make_list, make_user, make_video, multipart

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"


async def test_list_crud_and_isolation(api: Api) -> None:
    user, stranger = await make_user(), await make_user()
    status, created = await api.call("POST", "/api/lists", user, json={"name": "  Talks  "})
    assert status == 201 and created["name"] == "Talks" and created["video_count"] == 0
    list_id = created["id"]
    await make_video(await VideoList.get(id=list_id))

    status, body = await api.call("GET", "/api/lists", user)
    assert [(li["id"], li["video_count"]) for li in body["lists"]] == [(list_id, 1)]
    status, body = await api.call("GET", "/api/lists", stranger)
    assert body["lists"] == []
    status, one = await api.call("GET", f"/api/lists/{list_id}", user)
    assert status == 200 and one["video_count"] == 1

    await api.assert_not_found(
        stranger,
        [
            ("GET", f"/api/lists/{list_id}"),
            ("GET", f"/api/lists/{list_id}/videos"),
            ("DELETE", f"/api/lists/{list_id}"),
            ("POST", f"/api/lists/{list_id}/videos/bulk"),
            ("POST", f"/api/lists/{list_id}/videos/upload"),
            ("GET", f"/api/lists/{uuid.uuid4()}"),
            ("GET", "/api/lists/xyz"),
        ],
    )

    for bad in ({}, {"name": ""}, {"name": "   "}, {"name": "x" * 201}, {"name": 3}):
        status, body = await api.call("POST", "/api/lists", user, json=bad)
        assert status == 400 and body["code"] == "validation_error", bad

    status, _ = await api.call("DELETE", f"/api/lists/{list_id}", user)
    assert status == 204
    assert not await VideoList.exists(id=list_id)
    assert not await Video.exists(list_id=list_id)


async def test_videos_and_thumbnails(api: Api) -> None:
    user, stranger = await make_user(), await make_user()
    vlist = await make_list(user)
    thumbs = api.config.media_root / "thumbnails"
    thumbs.mkdir(parents=True, exist_ok=True)
    (thumbs / "t.jpg").write_bytes(JPEG)
    ready = await make_video(
        vlist,
        title="ready one",
        status="ready",
        duration_s=1.5,
        width=320,
        height=240,
        thumbnail_path="thumbnails/t.jpg",
    )
    pending = await make_video(vlist, title="pending one")
    escaping = await make_video(vlist, title="bad thumb", thumbnail_path="../../etc/passwd")

    status, body = await api.call("GET", f"/api/lists/{vlist.id}/videos", user)
    assert status == 200
    by_id = {v["id"]: v for v in body["items"]}
    signed = by_id[str(ready.id)]["thumbnail_url"]
    assert signed.startswith(f"/api/videos/{ready.id}/thumbnail?")
    assert by_id[str(ready.id)]["status"] == "ready" and by_id[str(ready.id)]["width"] == 320
    assert by_id[str(pending.id)]["thumbnail_url"] is None

    # the owner's bearer token, or the signed URL (for <img>, no header) serve the JPEG
    for path, headers in (
        (f"/api/videos/{ready.id}/thumbnail", api.headers(user)),
        (signed, {}),
    ):
        response = await api.client.get(path, headers=headers)
        assert response.status_code == 200, path
        assert response.mimetype == "image/jpeg"
        assert await response.get_data() == JPEG

    # nobody else, and nothing outside MEDIA_ROOT
    for video_id, who in ((ready.id, stranger), (pending.id, user), (escaping.id, user)):
        status, body = await api.call("GET", f"/api/videos/{video_id}/thumbnail", who)
        assert status == 404 and body["code"] == "not_found"
    query = signed.split("?", 1)[1]
    tampered = signed[:-3] + ("AAA" if not signed.endswith("AAA") else "BBB")
    for path in (
        tampered,
        signed.replace(f"u={user.id}", f"u={stranger.id}"),  # signed for another owner
        f"/api/videos/{pending.id}/thumbnail?{query}",  # signature of another video
        f"/api/videos/{ready.id}/thumbnail?u={user.id}&sig=junk",
    ):
        status, body = await api.call("GET", path)
        assert status == 404, path
    assert (await api.call("GET", f"/api/videos/{ready.id}/thumbnail"))[0] == 401

    status, one = await api.call("GET", f"/api/videos/{ready.id}", user)
    assert status == 200 and one["title"] == "ready one"
    assert (await api.call("GET", f"/api/videos/{ready.id}", stranger))[0] == 404


async def test_upload_streams_files_to_media_root(api: Api) -> None:
    user = await make_user()
    vlist = await make_list(user)
    body, headers = multipart(
        [("file", "first clip.mp4", b"A" * 1000), ("file", "../../evil.mkv", b"B" * 10)],
        {"note": "ignored"},
    )
    status, answer = await api.call(
        "POST", f"/api/lists/{vlist.id}/videos/upload", user, data=body, headers=headers
    )
    assert status == 202, answer
    assert answer["total_videos"] == 2
    videos = await Video.filter(job_id=answer["job_id"]).order_by("position")
    assert [v.title for v in videos] == ["first clip", "evil"]
    root = api.config.media_root.resolve()
    contents = []
    for video in videos:
        assert video.source.startswith("upload:uploads/")
        path = (root / video.source.removeprefix("upload:")).resolve()
        assert path.is_relative_to(upload_dir(root, user.id, vlist.id))
        contents.append(path.read_bytes())
    assert contents == [b"A" * 1000, b"B" * 10]
    job = await ProcessingJob.get(id=answer["job_id"])
    assert job.status == JobStatus.PENDING and job.total_videos == 2

    # deleting the list removes its uploads
    assert (await api.call("DELETE", f"/api/lists/{vlist.id}", user))[0] == 204
    assert not upload_dir(root, user.id, vlist.id).exists()


async def test_upload_limits(pg_database_url: str, api_factory: ApiFactory) -> None:
    async with api_factory(pg_database_url, max_upload_bytes=100, max_videos_per_job=2) as api:
        user = await make_user()
        vlist = await make_list(user)
        path = f"/api/lists/{vlist.id}/videos/upload"
        cases = [
            ([("file", "a.mp4", b"x" * 50), ("file", "b.mp4", b"x" * 101)], 413, "file_too_large"),
            ([("file", f"{i}.mp4", b"x") for i in range(3)], 400, "too_many_files"),
            ([("other", "a.mp4", b"x")], 400, "no_files"),
        ]
        for files, expected, code in cases:
            body, headers = multipart(files)
            status, answer = await api.call("POST", path, user, data=body, headers=headers)
            assert status == expected and answer["code"] == code, answer
        status, answer = await api.call("POST", path, user, json={"x": 1})
        assert status == 415
        assert await Video.filter(list_id=vlist.id).count() == 0
        uploads = upload_dir(api.config.media_root, user.id, vlist.id)
        assert not uploads.exists() or not any(uploads.iterdir())

        # exactly at the limits is fine
        body, headers = multipart([("file", "a.mp4", b"x" * 100), ("file", "b.mp4", b"")])
        status, answer = await api.call("POST", path, user, data=body, headers=headers)
        assert status == 202, answer


async def test_delete_list_announces_the_jobs_no_worker_runs(api: Api) -> None:
    """A pending job and one waiting for its next slice are announced ``cancelled`` to
    the owner's clients; a running one is left to its worker."""
    waiting = await processing_job_with_rq_job(api, RQStatus.SCHEDULED)
    running = await processing_job_with_rq_job(api, RQStatus.STARTED)
    vlist = await waiting.list
    await ProcessingJob.filter(id=running.id).update(list_id=vlist.id)
    pending = await make_job(vlist, events=1)
    owner = await vlist.owner
    async with Published(api) as published:
        assert (await api.call("DELETE", f"/api/lists/{vlist.id}", owner))[0] == 204
        announced = [await published.next(), await published.next()]
        with pytest.raises(TimeoutError):
            await published.next(wait=0.3)
    assert sorted((m["data"]["job_id"], m["data"]["seq"]) for m in announced) == sorted(
        [(str(waiting.id), 4), (str(pending.id), 2)]
    )
    assert {m["data"]["status"] for m in announced} == {"cancelled"}
    assert {m["data"]["message"] for m in announced} == {"List deleted"}
    assert {m["room"] for m in announced} == {user_room(owner.id)}
    assert not await ProcessingJob.filter(list_id=vlist.id).exists()


async def test_errors_are_json_never_html(pg_api: Api, tmp_path: Path) -> None:
    user = await make_user()
    for method, path, kwargs in (
        ("GET", "/api/nothing", {}),
        ("PUT", "/api/health", {}),
        ("DELETE", "/api/jobs", {}),
        ("POST", "/api/lists", {"data": b"{", "headers": {"Content-Type": "application/json"}}),
        ("POST", "/api/lists", {"data": b"name=x", "headers": {"Content-Type": "text/plain"}}),
    ):
        response = await pg_api.client.open(
            path,
            method=method,
            headers={**pg_api.headers(user), **kwargs.get("headers", {})},
            data=kwargs.get("data"),
        )
        assert response.status_code in {400, 404, 405, 415}, (method, path)
        assert response.mimetype == "application/json", (method, path)
        body = await response.get_json()
        assert set(body) >= {"code", "message"}


async def test_request_body_limit_is_json_413(
    pg_database_url: str, api_factory: ApiFactory
) -> None:
    async with api_factory(pg_database_url, max_request_bytes=1000) as api:
        user = await make_user()
        vlist = await make_list(user)
        body, headers = multipart([("file", "a.mp4", b"x" * 5000)])
        status, answer = await api.call(
            "POST", f"/api/lists/{vlist.id}/videos/upload", user, data=body, headers=headers
        )
        assert status == 413 and answer["code"]
