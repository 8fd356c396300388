"""``reeltrack demo``: sample videos, the demo user, an enqueued import that shows a failure."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue

from models.entities import JobSource, JobStatus, ProcessingJob, User, Video
from models.history import events_after
from quart_app.core.config import Config
from tasks.processing import run_job
from tasks.queue import QUEUE_NAME
from tests.support.live import child_environ
from tests.support.services import RedisServer

ROOT = Path(__file__).resolve().parents[2]


async def _demo(cfg: Config, *args: str) -> tuple[str, subprocess.CompletedProcess[str]]:
    """Run ``reeltrack demo`` for a new username with ``args``; asserts it exits 0 and
    returns the username and the run."""
    username = f"demo{uuid.uuid4().hex[:8]}"
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "quart_app.cli", "demo", "--username", username, *args],
        cwd=ROOT,
        env=child_environ(cfg),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return username, run


async def test_demo_command_imports_samples_and_they_process(
    db: str, config: Callable[..., Config], own_redis: RedisServer
) -> None:
    cfg = config(redis_url=own_redis.url)
    username, run = await _demo(cfg, "--count", "6")
    assert "created user" in run.stdout
    user = await User.get(username=username)
    job = await ProcessingJob.get(owner_id=user.id)
    assert job.status == JobStatus.PENDING and job.total_videos == 6
    queued = Queue(QUEUE_NAME, connection=Redis.from_url(own_redis.url)).get_job_ids()
    assert job.rq_job_id in queued
    files = sorted(p.name for p in (cfg.import_root / "demo").iterdir())
    assert len(files) == 6 and "corrupt-sample.mp4" in files
    assert await run_job(job.id, cfg) == "completed"
    history = await events_after(job.id)
    assert history[-1]["processed_videos"] == 6 and history[-1]["failed_videos"] == 1
    assert [e["video_title"] for e in history if e["error"]] == [
        "A corrupt file (fails on purpose)"
    ]


async def test_demo_job_is_paced_to_about_a_minute_with_a_few_failures(
    db: str, config: Callable[..., Config], own_redis: RedisServer
) -> None:
    cfg = config(redis_url=own_redis.url)
    username, _run = await _demo(cfg, "--count", "130")
    job = await ProcessingJob.get(owner__username=username)
    assert job.name == "Demo · 130 videos" and job.source == JobSource.DEMO
    rq_job = Queue(QUEUE_NAME, connection=Redis.from_url(own_redis.url)).fetch_job(job.rq_job_id)
    assert rq_job is not None
    assert rq_job.kwargs == {"pace_s": pytest.approx(60 / 130)}  # about a minute in all
    titles = [v.title for v in await Video.filter(job_id=job.id, title__contains="on purpose")]
    assert len(titles) == 3  # rows 60 and 120 (a corrupt file, a playlist), and the last
    assert {t.split(" (")[0] for t in titles} == {"A corrupt file", "A playlist, not a video"}


async def test_a_paced_run_gives_each_video_its_time(
    db: str, config: Callable[..., Config], own_redis: RedisServer
) -> None:
    cfg = config(redis_url=own_redis.url)
    username, _run = await _demo(cfg, "--count", "3", "--duration", "0")
    job = await ProcessingJob.get(owner__username=username)
    rq_job = Queue(QUEUE_NAME, connection=Redis.from_url(own_redis.url)).fetch_job(job.rq_job_id)
    assert rq_job is not None and rq_job.kwargs == {}  # --duration 0: full speed
    started = time.monotonic()
    assert await run_job(job.id, cfg, pace_s=0.25) == "completed"
    assert time.monotonic() - started >= 3 * 0.25
