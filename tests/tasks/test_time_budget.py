"""VIDEO_TIME_BUDGET and JOB_TIME_BUDGET: a server trickling bytes cannot hold the worker
for FETCH_TIMEOUT per row; every video still ends with its own final state and event."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from models.entities import JobStatus, ProcessingJob, Video, VideoStatus
from models.history import events_after
from models.jobs import NewVideo
from quart_app.core.config import Config
from socket_layer.emitter import ProgressEmitter
from tasks.media import budget_message
from tasks.processing import run_job
from tests.support.builders import ChannelRecorder, make_user, place_videos, seed_job, seqs
from tests.support.services import start_app

#: far above the budgets below: without them each trickling row would take this long
FETCH_TIMEOUT = 20.0


@pytest.fixture
async def trickle() -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP origin whose /slow/<n> sends one byte every 0.1 s for a minute; yields its
    address and the list of paths requested."""
    hits: list[str] = []

    async def slow(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        resp = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            for _ in range(600):
                await resp.write(b"\0")
                await asyncio.sleep(0.1)
        return resp

    app = web.Application()
    app.router.add_get("/slow/{n}", slow)
    runner, port = await start_app(app)
    try:
        yield f"127.0.0.1:{port}", hits
    finally:
        await runner.cleanup()


def _job_budget(config: Callable[..., Config], seconds: float) -> Config:
    """Settings where only JOB_TIME_BUDGET (``seconds``) can stop a trickling row."""
    return config(
        import_allow_private_hosts=True,
        fetch_timeout=FETCH_TIMEOUT,
        video_time_budget=FETCH_TIMEOUT,
        job_time_budget=seconds,
    )


def _slow_rows(origin: str, count: int) -> list[NewVideo]:
    return [NewVideo(source=f"http://{origin}/slow/{i}", title=f"Slow {i}") for i in range(count)]


async def _run(cfg: Config, items: list[NewVideo]) -> tuple[ProcessingJob, list[dict], float, str]:
    user = await make_user()
    assert cfg.redis_url
    recorder = await ChannelRecorder.start(cfg.redis_url, user.id)
    emitter = ProgressEmitter(cfg.redis_url)
    try:
        _user, job = await seed_job(items, owner=user, emitter=emitter)
    finally:
        await emitter.close()
    try:
        started = time.monotonic()
        outcome = await run_job(job.id, cfg)
        elapsed = time.monotonic() - started
        published = await recorder.wait_for(
            lambda ev: bool(ev) and ev[-1]["status"] != "processing" and len(ev) >= len(items) + 2
        )
    finally:
        await recorder.stop()
    return job, published, elapsed, outcome


async def test_video_over_its_budget_fails_in_about_the_budget(
    db: str, config: Callable[..., Config], samples: Path, trickle: tuple[str, list[str]]
) -> None:
    origin, _hits = trickle
    cfg = config(
        import_allow_private_hosts=True, fetch_timeout=FETCH_TIMEOUT, video_time_budget=1.5
    )
    items = [NewVideo(source=f"http://{origin}/slow/1", title="Trickle")]
    items += place_videos(samples, cfg.import_root, 1)
    job, published, elapsed, outcome = await _run(cfg, items)
    assert outcome == "completed"
    assert elapsed < 6, f"{elapsed:.1f}s: the budget (1.5 s) did not stop the fetch"
    videos = {v.title: v for v in await Video.filter(job_id=job.id)}
    assert videos["Trickle"].status == VideoStatus.FAILED
    assert videos["Trickle"].error == budget_message(cfg)
    assert "1.5s" in budget_message(cfg)
    assert videos["Clip 0"].status == VideoStatus.READY
    assert [e["status"] for e in published] == ["pending", "processing", "processing", "completed"]
    assert published[1]["error"] == budget_message(cfg)
    assert seqs(published) == [1, 2, 3, 4]
    assert not list((cfg.media_root / "tmp").iterdir())  # the partial download is gone


async def test_job_over_its_budget_fails_the_rest_with_one_event_each(
    db: str, config: Callable[..., Config], samples: Path, trickle: tuple[str, list[str]]
) -> None:
    origin, hits = trickle
    cfg = _job_budget(config, 2.0)
    items = place_videos(samples, cfg.import_root, 1) + _slow_rows(origin, 5)
    job, published, elapsed, outcome = await _run(cfg, items)
    assert outcome == "completed"  # one video is ready
    assert elapsed < 7, f"{elapsed:.1f}s: the job budget (2 s) did not stop the run"
    assert hits == ["/slow/0"]  # the rows after the budget ran out were never fetched
    videos = await Video.filter(job_id=job.id).order_by("position")
    assert videos[0].status == VideoStatus.READY
    for v in videos[1:]:
        assert v.status == VideoStatus.FAILED and v.error
        assert v.error.startswith("job time budget exceeded (2s"), v.error
    # every video's final state is published, seq contiguous, the history the same
    assert [e["status"] for e in published] == ["pending"] + ["processing"] * 6 + ["completed"]
    assert [e["error"] is not None for e in published[1:7]] == [False] + [True] * 5
    assert seqs(published) == list(range(1, 9))
    final = published[-1]
    assert (final["processed_videos"], final["failed_videos"]) == (6, 5)
    assert "job time budget exceeded" in final["message"]
    assert await events_after(job.id, after_seq=0, limit=100) == published
    stored = await ProcessingJob.get(id=job.id)
    assert stored.status == JobStatus.COMPLETED and stored.last_seq == 8


async def test_job_whose_every_video_runs_out_ends_failed_with_the_budget_error(
    db: str, config: Callable[..., Config], trickle: tuple[str, list[str]]
) -> None:
    origin, _hits = trickle
    cfg = _job_budget(config, 1.0)
    items = _slow_rows(origin, 3)
    job, published, elapsed, outcome = await _run(cfg, items)
    assert outcome == "failed" and elapsed < 6
    final = published[-1]
    assert final["status"] == "failed" and final["failed_videos"] == 3
    assert final["error"].startswith("job time budget exceeded")
    assert seqs(published) == list(range(1, 6))
    assert (await ProcessingJob.get(id=job.id)).status == JobStatus.FAILED
