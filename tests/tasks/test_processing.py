"""The job run in-process against real PostgreSQL and Redis (DESIGN sections 4 and 7)."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import av

from models.entities import (
    JobProgressEvent,
    JobStatus,
    ProcessingJob,
    User,
    Video,
    VideoList,
    VideoStatus,
)
from models.events import utcnow
from models.history import events_after
from models.jobs import NewVideo
from quart_app.core.config import Config
from socket_layer.emitter import ProgressEmitter
from tasks.media import ProcessedMedia
from tasks.processing import claim, default_processor, run_job
from tasks.publisher import JobPublisher
from tasks.submission import submit_job
from tests.support.builders import ChannelRecorder, place_videos, seed_job, seqs, video_event
from tests.support.services import free_port


async def _import(
    config: Config, items: list[NewVideo]
) -> tuple[User, ProcessingJob, ChannelRecorder]:
    user = await User.create(username=f"p{id(items)}{len(items)}x{free_port()}", password_hash="x")
    vlist = await VideoList.create(owner=user, name="list")
    assert config.redis_url
    recorder = await ChannelRecorder.start(config.redis_url, user.id)
    emitter = ProgressEmitter(config.redis_url)
    try:
        job = await submit_job(user.id, vlist.id, items, emitter=emitter, redis=None, enqueue=False)
    finally:
        await emitter.close()
    return user, job, recorder


async def test_ten_videos_events_contiguous_and_equal_to_history(
    db: str, config: Callable[..., Config], samples: Path
) -> None:
    cfg = config()
    items = place_videos(samples, cfg.import_root, 10)
    _user, job, recorder = await _import(cfg, items)
    try:
        assert await run_job(job.id, cfg) == "completed"
        published = await recorder.wait_for(lambda ev: len(ev) >= 12)
    finally:
        await recorder.stop()
    assert [e["status"] for e in published] == ["pending"] + ["processing"] * 10 + ["completed"]
    assert seqs(published) == list(range(1, 13))
    progress = [e["progress"] for e in published]
    assert progress == sorted(progress) and progress[-1] == 100
    assert all(e["job_id"] == str(job.id) for e in published)
    history = await events_after(job.id, after_seq=0, limit=1000)
    assert history == published
    stored = await ProcessingJob.get(id=job.id)
    assert stored.status == JobStatus.COMPLETED and stored.last_seq == 12
    assert (stored.processed_videos, stored.failed_videos) == (10, 0)
    videos = await Video.filter(job_id=job.id).order_by("position")
    assert all(v.status == VideoStatus.READY for v in videos)
    assert all(v.width and v.height and v.duration_s and v.video_codec for v in videos)
    assert {v.video_codec for v in videos} >= {"h264", "vp8", "mpeg4"}
    assert videos[0].audio_codec == "aac"
    for v in videos:
        thumb = cfg.media_root / str(v.thumbnail_path)
        assert thumb.read_bytes()[:2] == b"\xff\xd8"
        with av.open(str(thumb)) as c:  # a real JPEG that decodes
            frame = next(c.decode(video=0))
            assert frame.width <= 320 and frame.width == v.width


async def test_corrupt_file_and_unreachable_url_fail_only_their_videos(
    db: str, config: Callable[..., Config], samples: Path
) -> None:
    cfg = config(import_allow_private_hosts=True, fetch_timeout=5)
    items = place_videos(samples, cfg.import_root, 3)
    (cfg.import_root / "broken.mp4").write_bytes((samples / "corrupt.mp4").read_bytes())
    closed = free_port()  # nothing listens there
    items.insert(1, NewVideo(source="import:broken.mp4", title="Broken"))
    items.append(NewVideo(source=f"http://127.0.0.1:{closed}/gone.mp4", title="Gone"))
    _user, job, recorder = await _import(cfg, items)
    try:
        assert await run_job(job.id, cfg) == "completed"
        published = await recorder.wait_for(lambda ev: len(ev) >= 7)
    finally:
        await recorder.stop()
    with_error = [e for e in published if e["error"]]
    assert [e["video_title"] for e in with_error] == ["Broken", "Gone"]
    assert all(e["status"] == "processing" and e["video_id"] for e in with_error)
    assert "cannot decode" in with_error[0]["error"]
    assert "cannot connect" in with_error[1]["error"]
    assert str(cfg.import_root) not in with_error[0]["error"]  # no server paths leak
    final = published[-1]
    assert final["status"] == "completed" and final["progress"] == 100
    assert (final["processed_videos"], final["failed_videos"]) == (5, 2)
    assert seqs(published) == list(range(1, 8))
    assert await events_after(job.id, limit=100) == published
    videos = {v.title: v for v in await Video.filter(job_id=job.id)}
    assert videos["Broken"].status == VideoStatus.FAILED and videos["Broken"].error
    assert videos["Gone"].status == VideoStatus.FAILED and videos["Gone"].thumbnail_path is None
    for title in ("Clip 0", "Clip 1", "Clip 2"):
        v = videos[title]
        assert v.status == VideoStatus.READY and v.bitrate and v.size_bytes and v.fps
        assert (cfg.media_root / str(v.thumbnail_path)).stat().st_size > 100


async def test_every_video_failing_ends_the_job_failed(
    db: str, config: Callable[..., Config], samples: Path
) -> None:
    cfg = config()
    items = [NewVideo(source="import:missing.mp4", title=f"M{i}") for i in range(2)]
    _user, job, recorder = await _import(cfg, items)
    try:
        assert await run_job(job.id, cfg) == "failed"
        published = await recorder.wait_for(lambda ev: len(ev) >= 4)
    finally:
        await recorder.stop()
    assert [e["status"] for e in published] == ["pending", "processing", "processing", "failed"]
    assert published[-1]["failed_videos"] == 2
    assert (await ProcessingJob.get(id=job.id)).status == JobStatus.FAILED


def _interrupting(at: int, action: Callable[[str], object]) -> Callable[..., object]:
    """A processor that runs ``action(job_id)`` (awaitable) while processing video ``at``."""
    count = {"n": 0}

    async def processor(video: Video, cfg: Config) -> ProcessedMedia:
        count["n"] += 1
        result = await default_processor(video, cfg)
        if count["n"] == at:
            await action(str(video.job_id))  # type: ignore[misc]
        return result

    return processor


async def test_cancel_mid_job_ends_with_cancelled_and_nothing_after(
    db: str, config: Callable[..., Config], samples: Path
) -> None:
    cfg = config()
    items = place_videos(samples, cfg.import_root, 8)
    _user, job, recorder = await _import(cfg, items)

    async def cancel(job_id: str) -> None:
        await ProcessingJob.filter(id=job_id).update(cancel_requested=True)

    try:
        result = await run_job(job.id, cfg, processor=_interrupting(3, cancel))  # type: ignore[arg-type]
        assert result == "cancelled"
        history = await events_after(job.id, limit=100)
        published = await recorder.wait_for(lambda ev: len(ev) >= len(history))
    finally:
        await recorder.stop()
    assert [e["status"] for e in history] == ["pending"] + ["processing"] * 3 + ["cancelled"]
    assert published == history  # the final cancelled is the last thing sent
    assert history[-1]["processed_videos"] == 3
    stored = await ProcessingJob.get(id=job.id)
    assert stored.status == JobStatus.CANCELLED and stored.finished_at is not None
    # the videos it never reached end cancelled, none is left pending
    assert await Video.filter(job_id=job.id, status=VideoStatus.PENDING).count() == 0
    assert await Video.filter(job_id=job.id, status=VideoStatus.CANCELLED).count() == 5


async def test_delete_mid_job_publishes_cancelled_and_leaves_nothing(
    db: str, config: Callable[..., Config], samples: Path
) -> None:
    cfg = config()
    items = place_videos(samples, cfg.import_root, 6)
    _user, job, recorder = await _import(cfg, items)

    async def delete(job_id: str) -> None:
        await ProcessingJob.filter(id=job_id).delete()

    try:
        result = await run_job(job.id, cfg, processor=_interrupting(2, delete))  # type: ignore[arg-type]
        assert result == "deleted"
        published = await recorder.wait_for(lambda ev: any(e["status"] == "cancelled" for e in ev))
    finally:
        await recorder.stop()
    # video 2's event could not be stored (the job was gone): it is not published; the
    # cancelled event takes the next seq after the last stored one
    assert [e["status"] for e in published] == ["pending", "processing", "cancelled"]
    assert seqs(published) == [1, 2, 3]
    assert not await ProcessingJob.filter(id=job.id).exists()
    assert not await JobProgressEvent.filter(job_id=job.id).exists()


async def test_seed_helper_creates_pending_job(db: str, config: Callable[..., Config]) -> None:
    _user, job = await seed_job([NewVideo(source="import:x.mp4", title="x")])
    stored = await ProcessingJob.get(id=job.id)
    assert stored.status == JobStatus.PENDING and stored.last_seq == 1
    assert struct.calcsize("<f") == 4


async def test_run_whose_job_was_taken_over_stops_without_publishing_a_taken_seq(
    db: str, config: Callable[..., Config], samples: Path
) -> None:
    """Two writers of one job (the stale check re-queued it while its worker was only
    cut off): the run that lost the job stops at its next write, and no seq reaches
    clients with two contents."""
    cfg = config()
    items = place_videos(samples, cfg.import_root, 6)
    _user, job, recorder = await _import(cfg, items)
    taken: dict[str, dict[str, object]] = {}

    async def take_over(job_id: str) -> None:
        await ProcessingJob.filter(id=job_id).update(heartbeat_at=utcnow() - timedelta(hours=1))
        other = await claim(uuid.UUID(job_id), cfg, rq_job_id=None)
        assert other is not None, "the stale job was not re-claimed"
        assert cfg.redis_url
        emitter = ProgressEmitter(cfg.redis_url)
        try:
            publisher = JobPublisher(
                job_id=other.id,
                owner_id=other.owner_id,
                last_seq=other.last_seq,
                total_videos=other.total_videos,
                emitter=emitter,
                buffer_size=10,
            )
            event = video_event(publisher, 3, "Resumed by another worker")
            await publisher.send(event)
            taken["event"] = event.to_wire()
        finally:
            await emitter.close()

    try:
        result = await run_job(job.id, cfg, processor=_interrupting(3, take_over))  # type: ignore[arg-type]
        history = await events_after(job.id, limit=100)
        published = await recorder.wait_for(lambda ev: len(ev) >= len(history))
    finally:
        await recorder.stop()
    assert result == "lost"
    # the other writer's event took seq 4; this run's video-3 event never went out
    assert history[-1] == taken["event"]
    assert published == history
    assert len({e["seq"] for e in published}) == len(published)
    assert "Resumed by another worker" in [e["message"] for e in published]
