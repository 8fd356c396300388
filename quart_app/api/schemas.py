"""Request and response models of the REST API (they make /openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.events import MAX_SEQ
from quart_app.core.accounts import MAX_PASSWORD


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    code: str
    message: str


class Credentials(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class UserOut(BaseModel):
    id: UUID
    username: str
    created_at: datetime | None = None


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class AuthOptionsOut(BaseModel):
    allow_registration: bool


class ListIn(Strict):
    name: str = Field(min_length=1, max_length=200)

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name must not be blank")
        return value.strip()


class ListOut(BaseModel):
    id: UUID
    name: str
    created_at: datetime
    video_count: int = 0


class ListsOut(BaseModel):
    lists: list[ListOut]


class VideoOut(BaseModel):
    id: UUID
    list_id: UUID
    job_id: UUID | None
    position: int
    source: str
    title: str
    status: str
    duration_s: float | None
    width: int | None
    height: int | None
    fps: float | None
    video_codec: str | None
    audio_codec: str | None
    bitrate: int | None
    size_bytes: int | None
    thumbnail_url: str | None
    error: str | None
    created_at: datetime
    processed_at: datetime | None


class VideosOut(BaseModel):
    videos: list[VideoOut]


class BulkVideoIn(Strict):
    url: str
    title: str | None = None


class BulkJsonIn(Strict):
    videos: list[BulkVideoIn]


class ImportAccepted(BaseModel):
    job_id: UUID
    total_videos: int


class JobOut(BaseModel):
    id: UUID
    list_id: UUID
    status: str
    total_videos: int
    processed_videos: int
    failed_videos: int
    last_seq: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    latest_event: dict[str, Any] | None


class JobsOut(BaseModel):
    jobs: list[JobOut]


class JobsQuery(BaseModel):
    status: (
        Literal["active", "finished", "pending", "processing", "completed", "failed", "cancelled"]
        | None
    ) = None
    limit: int = Field(default=100, ge=1, le=1000)


class CancelOut(BaseModel):
    job_id: str
    result: Literal["cancelled", "cancel_requested", "already_finished", "not_found"]
    status: str | None = None


class BatchCancelIn(Strict):
    job_ids: list[str] = Field(min_length=1, max_length=1000)


class BatchCancelOut(BaseModel):
    results: list[CancelOut]


class HistoryQuery(BaseModel):
    since: datetime | None = None
    #: bounded like the seq column: a larger cursor made the DB query fail (500)
    after_seq: int = Field(default=0, ge=0, le=MAX_SEQ)
    limit: int = Field(default=100, ge=1, le=1000)


class HistoryOut(BaseModel):
    job_id: UUID
    events: list[dict[str, Any]]
    last_seq: int


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    checks: dict[str, str]
