"""Builders of database rows for tests (Tortoise must be open, e.g. inside
``app.test_app()``).  Users get a precomputed argon2 hash so building many is cheap."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from models.entities import JobProgressEvent, JobStatus, ProcessingJob, User, Video, VideoList
from models.events import ProgressEvent, utcnow
from quart_app.core.accounts import hash_password
from quart_app.core.config import Config
from quart_app.core.tokens import issue_token

PASSWORD = "correct-horse-battery"
_counter = itertools.count(1)


@lru_cache(maxsize=1)
def _password_hash() -> str:
    return hash_password(PASSWORD)


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}{next(_counter)}_{uuid.uuid4().hex[:8]}"


async def make_user(username: str | None = None) -> User:
    """A user whose password is :data:`PASSWORD`."""
    return await User.create(username=username or unique_name(), password_hash=_password_hash())


def token_for(config: Config, user: User) -> str:
    return issue_token(config.secret_key, user.id)


def auth_headers(config: Config, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(config, user)}"}


async def make_list(owner: User, name: str = "my list") -> VideoList:
    return await VideoList.create(owner_id=owner.id, name=name)


async def make_video(video_list: VideoList, **fields: object) -> Video:
    values: dict[str, object] = {"source": "https://example.com/v.mp4", "title": "a video"}
    values.update(fields)
    return await Video.create(list_id=video_list.id, **values)


def event_for(
    job_id: uuid.UUID | str,
    seq: int,
    *,
    total: int = 10,
    status: str = "processing",
    created_at: datetime | None = None,
    **fields: Any,
) -> ProgressEvent:
    """Event ``seq`` of a job of ``total`` videos (seq - 1 of them done); ``fields``
    override any wire field (``progress``, ``message``, ...)."""
    done = min(seq - 1, total)
    return ProgressEvent.model_validate(
        {
            "job_id": str(job_id),
            "seq": seq,
            "status": status,
            "progress": (done * 100 // total) if total else 0,
            "current_video": done,
            "total_videos": total,
            "processed_videos": done,
            "failed_videos": 0,
            "message": f"event {seq}",
            "created_at": created_at or utcnow(),
            **fields,
        }
    )


async def make_job(
    video_list: VideoList,
    *,
    status: JobStatus = JobStatus.PENDING,
    total: int = 10,
    events: int = 1,
    start: datetime | None = None,
    step: timedelta = timedelta(milliseconds=1),
    seq_order: list[int] | None = None,
) -> ProcessingJob:
    """A job with ``events`` history rows (seq 1..events, created ``step`` apart from
    ``start``), inserted in one bulk statement, in ``seq_order`` when given."""
    job = await ProcessingJob.create(
        list_id=video_list.id,
        owner_id=video_list.owner_id,
        status=status,
        total_videos=total,
        last_seq=events,
    )
    begin = start or utcnow() - step * events
    seqs = seq_order or list(range(1, events + 1))
    rows = []
    for seq in seqs:
        ev = event_for(
            job.id,
            seq,
            total=max(total, events),
            status="pending" if seq == 1 else "processing",
            created_at=begin + step * (seq - 1),
        )
        rows.append(
            JobProgressEvent(
                job_id=job.id, seq=seq, created_at=ev.created_at, progress_data=ev.to_wire()
            )
        )
    if rows:
        await JobProgressEvent.bulk_create(rows, batch_size=500)
    return job


def multipart(
    files: list[tuple[str, str, bytes]], fields: dict[str, str] | None = None
) -> tuple[bytes, dict[str, str]]:
    """Encode a multipart/form-data body; returns (body, headers with Content-Type)."""
    boundary = f"----reeltrack{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in (fields or {}).items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, filename, content in files:
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + content
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
