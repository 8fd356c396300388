"""Deleting a list removes every file it owns under MEDIA_ROOT (uploads, thumbnails),
also while its job is processing; deleting a job keeps its videos and their files;
nothing under IMPORT_ROOT is ever removed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from models.entities import ProcessingJob, User, Video, VideoList
from quart_app.core.config import Config
from tasks.media import ProcessedMedia, process_media, thumbnail_path
from tasks.processing import default_processor, run_job
from tests.quart_app.conftest import Api
from tests.support.builders import make_list, make_user, multipart
from tests.support.media import make_video


def clips(directory: Path, count: int) -> list[tuple[str, str, bytes]]:
    """``count`` real MP4s (H.264, 1 s) as multipart file parts."""
    parts = []
    for i in range(count):
        path = make_video(directory / f"clip{i}.mp4", seconds=1.0 + i / 10)
        parts.append(("file", f"clip {i}.mp4", path.read_bytes()))
    return parts


async def upload(api: Api, user: User, vlist: VideoList, parts: list) -> ProcessingJob:
    body, headers = multipart(parts)
    status, answer = await api.call(
        "POST", f"/api/lists/{vlist.id}/videos/upload", user, data=body, headers=headers
    )
    assert status == 202, answer
    return await ProcessingJob.get(id=answer["job_id"])


async def processed_upload(
    api: Api, directory: Path, count: int
) -> tuple[User, VideoList, ProcessingJob]:
    """A new user's list with ``count`` uploaded clips, their job run to completion."""
    user = await make_user()
    vlist = await make_list(user)
    job = await upload(api, user, vlist, clips(directory, count))
    assert await run_job(job.id, api.config) == "completed"
    return user, vlist, job


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def files_of(config: Config, videos: list[Video]) -> set[Path]:
    """The upload and thumbnail of each video (as stored)."""
    out = set()
    for video in videos:
        out.add(config.media_root / video.source.removeprefix("upload:"))
        if video.thumbnail_path:
            out.add(config.media_root / video.thumbnail_path)
    return out


async def test_deleting_a_list_removes_its_uploads_and_thumbnails(
    pg_api: Api, tmp_path: Path
) -> None:
    api, config = pg_api, pg_api.config
    user = await make_user()
    doomed, kept = await make_list(user, "doomed"), await make_list(user, "kept")
    job = await upload(api, user, doomed, clips(tmp_path / "a", 3))
    other = await upload(api, user, kept, clips(tmp_path / "b", 1))
    # a video of the doomed list read from IMPORT_ROOT: the operator's file stays
    imported = make_video(config.import_root / "operator.mp4")
    answer = await api.import_videos(
        user, doomed.id, {"videos": [{"url": "operator.mp4", "title": "mine"}]}
    )
    for job_id in (job.id, other.id, answer["job_id"]):
        assert await run_job(job_id, config) == "completed"

    doomed_files = files_of(
        config, await Video.filter(list_id=doomed.id, source__startswith="upload:")
    )
    doomed_files.add(thumbnail_path(config, (await Video.get(job_id=answer["job_id"])).id))
    kept_files = files_of(config, await Video.filter(list_id=kept.id))
    assert len(doomed_files) == 7 and all(p.is_file() for p in doomed_files)  # 3+3+1
    assert len(kept_files) == 2 and all(p.is_file() for p in kept_files)

    assert (await api.call("DELETE", f"/api/lists/{doomed.id}", user))[0] == 204

    assert files_under(config.media_root) == kept_files  # nothing of the list remains
    assert imported.is_file()


async def test_deleting_a_job_keeps_its_videos_and_their_files(pg_api: Api, tmp_path: Path) -> None:
    """Videos belong to their list: deleting a job deletes its history only."""
    api, config = pg_api, pg_api.config
    user, vlist, job = await processed_upload(api, tmp_path, 2)
    videos = await Video.filter(list_id=vlist.id)
    owned = files_of(config, videos)
    assert len(owned) == 4

    assert (await api.call("DELETE", f"/api/jobs/{job.id}", user))[0] == 204

    assert all(p.is_file() for p in owned)
    status, page = await api.call("GET", f"/api/lists/{vlist.id}/videos", user)
    assert status == 200 and len(page["items"]) == 2
    thumb = page["items"][0]["thumbnail_url"]
    status, jpeg = await api.call("GET", thumb, user)
    assert status == 200 and jpeg[:2] == b"\xff\xd8"

    # the files go with the list
    assert (await api.call("DELETE", f"/api/lists/{vlist.id}", user))[0] == 204
    assert files_under(config.media_root) == set()


async def test_list_deleted_while_its_job_processes_leaves_no_file(
    pg_api: Api, tmp_path: Path
) -> None:
    """The list goes while the worker is inside its second video, whose thumbnail is
    written only after the list's files were removed: that one goes too."""
    api, config = pg_api, pg_api.config
    user = await make_user()
    vlist = await make_list(user)
    job = await upload(api, user, vlist, clips(tmp_path, 3))
    late_source = make_video(config.import_root / "late.mp4")
    in_flight, deleted = asyncio.Event(), asyncio.Event()

    async def processor(video: Video, cfg: Config) -> ProcessedMedia:
        if video.position != 1:
            return await default_processor(video, cfg)
        in_flight.set()
        await deleted.wait()
        # the upload is gone by now; write this video's thumbnail late, as a worker
        # finishing it would
        return await process_media("import:late.mp4", video.id, cfg)

    run = asyncio.create_task(run_job(job.id, config, processor=processor))
    await asyncio.wait_for(in_flight.wait(), 30)
    first = await Video.get(job_id=job.id, position=0)
    assert (config.media_root / str(first.thumbnail_path)).is_file()

    assert (await api.call("DELETE", f"/api/lists/{vlist.id}", user))[0] == 204
    assert files_under(config.media_root) == set()
    deleted.set()
    outcome = await asyncio.wait_for(run, 30)

    assert outcome == "deleted"
    assert files_under(config.media_root) == set()
    assert late_source.is_file()
    assert not await ProcessingJob.exists(id=job.id)


async def test_a_file_that_cannot_be_removed_is_logged_not_500(
    pg_api: Api, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api, config = pg_api, pg_api.config
    user, vlist, _job = await processed_upload(api, tmp_path, 1)
    video = await Video.get(list_id=vlist.id)
    # a directory where the thumbnail should be: unlink fails (also for root)
    thumb = config.media_root / str(video.thumbnail_path)
    thumb.unlink()
    (thumb / "x").mkdir(parents=True)

    assert (await api.call("DELETE", f"/api/lists/{vlist.id}", user))[0] == 204

    assert not await VideoList.exists(id=vlist.id)
    assert f"could not remove {thumb}" in caplog.text
    assert files_under(config.media_root) == set()  # the upload went all the same
