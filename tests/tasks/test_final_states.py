"""How a run ends, in words for people, and what RQ's own tools see of its progress."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.job import Job

from models.entities import JobStatus, ProcessingJob, User, Video, VideoList, VideoStatus
from models.history import events_after
from models.jobs import NewVideo
from quart_app.core.config import Config
from tasks.media import ProcessedMedia
from tasks.processing import default_processor, run_job
from tasks.submission import submit_job
from tests.support.builders import place_videos


async def _job(items: list[NewVideo]) -> ProcessingJob:
    user = await User.create(username=f"f{uuid.uuid4().hex[:12]}", password_hash="x")
    vlist = await VideoList.create(owner=user, name="list")
    return await submit_job(user.id, vlist.id, items, emitter=None, redis=None, enqueue=False)


def _corrupt(samples: Path, import_root: Path, name: str = "bad.mp4") -> NewVideo:
    shutil.copyfile(samples / "corrupt.mp4", import_root / name)
    return NewVideo(source=f"import:{name}", title=f"Broken {name}")


async def test_a_one_video_job_that_failed_ends_with_that_videos_error(
    db: str, config: Callable[..., Config], samples: Path
) -> None:
    cfg = config()
    job = await _job([_corrupt(samples, cfg.import_root)])
    assert await run_job(job.id, cfg) == "failed"
    video = await Video.get(job_id=job.id)
    assert video.status == VideoStatus.FAILED and video.error
    final = (await events_after(job.id))[-1]
    assert final["status"] == "failed" and final["progress"] == 100
    assert final["error"] == video.error
    assert final["message"] == f"The video failed: {video.error}"
    assert "All 1" not in final["message"]


async def test_final_messages_count_in_words(
    db: str, config: Callable[..., Config], samples: Path
) -> None:
    cfg = config()
    good = place_videos(samples, cfg.import_root, 2)
    bad = [_corrupt(samples, cfg.import_root, f"bad{i}.mp4") for i in range(2)]

    async def final_of(items: list[NewVideo]) -> dict[str, object]:
        job = await _job(items)
        await run_job(job.id, cfg)
        return (await events_after(job.id))[-1]

    ended = await final_of(good)
    assert (ended["status"], ended["message"]) == ("completed", "Completed: 2 ready")
    ended = await final_of([good[0], bad[0]])
    assert (ended["status"], ended["message"]) == ("completed", "Completed: 1 ready, 1 failed")
    ended = await final_of(bad)
    assert ended["status"] == "failed" and ended["message"] == "All 2 videos failed"
    assert ended["progress"] == 100 and ended["error"]  # the videos' shared error


async def test_an_unexpected_error_reads_as_words_not_a_class_name(
    db: str, config: Callable[..., Config], samples: Path
) -> None:
    cfg = config()
    items = place_videos(samples, cfg.import_root, 2)
    job = await _job(items)

    async def flaky(video: Video, config: Config) -> ProcessedMedia:
        if video.position == 0:
            raise KeyError("width")
        return await default_processor(video, config)

    assert await run_job(job.id, cfg, processor=flaky) == "completed"
    failed = await Video.get(job_id=job.id, position=0)
    assert failed.error == "internal error while processing this video"
    for event in await events_after(job.id):
        assert "KeyError" not in f"{event['message']} {event['error']}"


async def test_the_rq_jobs_meta_follows_the_progress(
    db: str, config: Callable[..., Config], samples: Path, redis_url: str
) -> None:
    cfg = config()
    items = place_videos(samples, cfg.import_root, 3) + [_corrupt(samples, cfg.import_root)]
    job = await _job(items)
    connection = Redis.from_url(redis_url)
    try:
        # the RQ job a worker would run (never executed here: run_job is called directly)
        rq_job = Queue(f"meta-{uuid.uuid4().hex[:8]}", connection=connection).enqueue_call(
            "tasks.process_video_list", args=(str(job.id),)
        )
        assert await run_job(job.id, cfg, rq_job=rq_job) == "completed"
        meta = Job.fetch(rq_job.id, connection=connection).get_meta()
    finally:
        connection.close()
    stored = await ProcessingJob.get(id=job.id)
    assert stored.status == JobStatus.COMPLETED
    final = (await events_after(job.id))[-1]
    assert meta["status"] == "completed" and meta["progress"] == 100
    assert (meta["processed"], meta["failed"], meta["total"]) == (4, 1, 4)
    assert meta["seq"] == final["seq"] == stored.last_seq
    assert meta["message"] == final["message"]
