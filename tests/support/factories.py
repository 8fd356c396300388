"""Rows for tests, written straight through the models (no REST API needed).

The caller must have Tortoise open (e.g. ``await open_db(url)``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from models.entities import JobStatus, ProcessingJob, User, VideoList
from models.events import ProgressEvent, utcnow
from models.history import record_event


async def create_user(username: str | None = None) -> User:
    """A user with an unusable password hash (tests log in with issued tokens)."""
    return await User.create(
        username=username or f"u{uuid.uuid4().hex[:12]}", password_hash="!test-no-login"
    )


async def create_job(owner: User, *, total_videos: int = 10) -> ProcessingJob:
    """A job (in a fresh list of ``owner``) with no events yet (status pending, seq 0)."""
    video_list = await VideoList.create(owner=owner, name="test list")
    return await ProcessingJob.create(
        list=video_list, owner=owner, total_videos=total_videos, status=JobStatus.PENDING
    )


async def add_event(
    job: ProcessingJob,
    *,
    status: str = "processing",
    processed: int | None = None,
    failed: int = 0,
    created_at: datetime | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Persist the job's next event (seq = last_seq + 1) via ``record_event``; returns
    its wire form.  ``processed`` defaults to seq - 1 capped at total_videos."""
    await job.refresh_from_db()
    seq = job.last_seq + 1
    total = job.total_videos
    done = min(total, seq - 1) if processed is None else processed
    progress = 100 if status == "completed" else (done * 100 // total if total else 0)
    event = ProgressEvent(
        job_id=job.id,
        seq=seq,
        status=status,  # type: ignore[arg-type]
        progress=progress,
        current_video=done,
        total_videos=total,
        processed_videos=done if status != "completed" else total,
        failed_videos=failed,
        message=fields.pop("message", f"event {seq}"),
        created_at=created_at or utcnow(),
        **fields,
    )
    if not await record_event(event):
        raise RuntimeError(f"record_event refused seq {seq} of job {job.id}")
    return event.to_wire()


async def add_events(job: ProcessingJob, count: int, **kwargs: Any) -> list[dict[str, Any]]:
    """``count`` consecutive processing events."""
    return [await add_event(job, **kwargs) for _ in range(count)]


def minutes_ago(minutes: float) -> datetime:
    return utcnow() - timedelta(minutes=minutes)
