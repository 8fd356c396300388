"""``reeltrack demo``: sample videos, the demo user, an enqueued import that shows a failure."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from redis import Redis
from rq import Queue

from models.entities import JobStatus, ProcessingJob, User
from models.history import events_after
from quart_app.core.config import Config
from tasks.processing import run_job
from tasks.queue import QUEUE_NAME
from tests.support.live import child_environ
from tests.support.services import RedisServer

ROOT = Path(__file__).resolve().parents[2]


async def test_demo_command_imports_samples_and_they_process(
    db: str, config: Callable[..., Config], own_redis: RedisServer
) -> None:
    cfg = config(redis_url=own_redis.url)
    username = f"demo{uuid.uuid4().hex[:8]}"
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "quart_app.cli", "demo", "--username", username, "--count", "6"],
        cwd=ROOT,
        env=child_environ(cfg),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
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
