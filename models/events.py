"""The progress event: one schema for the DB, Socket.IO and REST (DESIGN section 3)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

EventStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]
FINAL_EVENT_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
#: the largest seq the history can hold (``job_progress_events.seq`` is a 32-bit int)
MAX_SEQ = 2**31 - 1


class ProgressEvent(BaseModel):
    """One progress event of one job. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: UUID
    seq: int = Field(ge=1)
    status: EventStatus
    progress: int = Field(ge=0, le=100)
    current_video: int = Field(ge=0)
    total_videos: int = Field(ge=0)
    processed_videos: int = Field(ge=0)
    failed_videos: int = Field(ge=0)
    message: str = Field(max_length=1000)
    video_id: UUID | None = None
    video_title: str | None = Field(default=None, max_length=500)
    error: str | None = Field(default=None, max_length=2000)
    created_at: datetime

    @model_validator(mode="after")
    def _consistent(self) -> ProgressEvent:
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        if self.processed_videos > self.total_videos:
            raise ValueError("processed_videos exceeds total_videos")
        if self.failed_videos > self.processed_videos:
            raise ValueError("failed_videos exceeds processed_videos")
        if self.status == "completed" and self.progress != 100:
            raise ValueError("a completed event has progress 100")
        return self

    @field_serializer("created_at")
    def _iso_z(self, value: datetime) -> str:
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    @field_serializer("job_id", "video_id")
    def _uuid_text(self, value: UUID | None) -> str | None:
        return None if value is None else str(value)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_EVENT_STATUSES

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict sent over Socket.IO, returned by REST and stored."""
        return self.model_dump(mode="json")

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ProgressEvent:
        """Validate a stored or received dict; raises pydantic.ValidationError."""
        return cls.model_validate(data)


def utcnow() -> datetime:
    return datetime.now(UTC)


def job_event(
    job_id: UUID | str,
    seq: int,
    status: EventStatus,
    message: str,
    *,
    total_videos: int,
    processed_videos: int = 0,
    failed_videos: int = 0,
    progress: int | None = None,
    current_video: int | None = None,
    video_id: UUID | None = None,
    video_title: str | None = None,
    error: str | None = None,
    created_at: datetime | None = None,
) -> ProgressEvent:
    """Event ``seq`` of a job: the one builder of progress events.

    ``progress`` defaults to ``processed_videos`` as a share of ``total_videos`` and
    ``current_video`` to ``processed_videos``; ``created_at`` to now.  Text fields are cut
    to their wire limits.  Raises pydantic.ValidationError for inconsistent counters.
    """
    if progress is None:
        progress = (processed_videos * 100 // total_videos) if total_videos else 0
    return ProgressEvent(
        job_id=job_id if isinstance(job_id, UUID) else UUID(str(job_id)),
        seq=seq,
        status=status,
        progress=progress,
        current_video=processed_videos if current_video is None else current_video,
        total_videos=total_videos,
        processed_videos=processed_videos,
        failed_videos=failed_videos,
        message=message[:1000],
        video_id=video_id,
        video_title=None if video_title is None else video_title[:500],
        error=None if error is None else error[:2000],
        created_at=created_at or utcnow(),
    )
