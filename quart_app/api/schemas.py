"""Request and response models of the REST API (they make /openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.entities import MAX_JOB_NAME
from models.events import MAX_SEQ
from models.pages import MAX_CURSOR_LENGTH
from quart_app.core.accounts import MAX_PASSWORD

JobStatusText = Literal["pending", "processing", "completed", "failed", "cancelled"]
VideoStatusText = Literal["pending", "processing", "ready", "failed", "cancelled"]
JobSourceText = Literal["csv", "json", "upload", "retry", "demo", "import"]
PriorityText = Literal["high", "normal", "low"]
#: ``active``: pending or processing; ``finished``: completed, failed or cancelled
JobFilter = Literal[
    "active", "finished", "pending", "processing", "completed", "failed", "cancelled"
]

_EXAMPLE_JOB_ID = "3f2b8c1e-9a4d-4e57-b1c2-6d0f8e7a5b34"
_EXAMPLE_LIST_ID = "0b6e3c57-2f1a-4d89-a3e4-5c7d9b1f2e60"
_EXAMPLE_CURSOR = (
    "WyIyMDI2LTEyLTAxVDEwOjAwOjAwLjEyMzQ1NiswMDowMCIsIjNmMmI4YzFlLTlhNGQtNGU1Ny1iMWMy"
    "LTZkMGY4ZTdhNWIzNCJd"
)

#: the ``cursor`` query parameter of a paginated list
PageCursor = Annotated[
    str | None,
    Field(
        max_length=MAX_CURSOR_LENGTH,
        description="next_cursor of the previous page",
        examples=[_EXAMPLE_CURSOR],
    ),
]


def _split_repeated(value: Any) -> Any:
    """``a,b`` and repeated parameters (``?status=a&status=b``) both mean [a, b]; an
    empty value means no filter."""
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in values):
        return value  # not text: validation says what is wrong
    return [p.strip() for v in values for p in v.split(",") if p.strip()] or None


def _clean_name(value: str | None) -> str | None:
    if value is None:
        return None
    cleaned = " ".join(value.split())
    if not cleaned:
        raise ValueError("name must not be blank")
    if any(ord(c) < 32 or ord(c) == 127 for c in value if c not in "\t\n\r"):
        raise ValueError("name must not hold control characters")
    return cleaned


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    """The one error shape of every 4xx/5xx answer: a stable ``code``, a sentence, and
    for some codes a detail field."""

    code: str = Field(description="stable, machine-readable", examples=["not_found"])
    message: str = Field(description="a sentence for people", examples=["no such list"])
    rows: list[dict[str, Any]] | None = Field(
        default=None,
        description="import rejected: every bad row (row from 1, field, error, value)",
        examples=[[{"row": 3, "field": "url", "error": "not an http(s) URL or a file"}]],
    )
    errors: list[dict[str, Any]] | None = Field(
        default=None,
        description="validation_error: pydantic's errors as {loc, msg}",
        examples=[[{"loc": ["name"], "msg": "Field required"}]],
    )
    retry_after: int | None = Field(
        default=None, description="429: seconds to wait (also in Retry-After)", examples=[12]
    )


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
    status: VideoStatusText
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


class VideosPage(BaseModel):
    """One page of a list's videos, newest first; ``next_cursor`` fetches the next
    page (null on the last one)."""

    items: list[VideoOut]
    next_cursor: str | None = Field(examples=[_EXAMPLE_CURSOR, None])


class VideosQuery(BaseModel):
    status: list[VideoStatusText] | None = Field(
        default=None,
        description="only videos in these states (comma-separated or repeated)",
        examples=[["failed"], ["pending", "processing"]],
    )
    limit: int = Field(default=50, ge=1, le=200, description="videos per page")
    cursor: PageCursor = None

    _split_status = field_validator("status", mode="before")(_split_repeated)


class JobOptions(BaseModel):
    """How to name and rank a new job; a name left out is derived ("CSV import · 10
    videos", "Upload · 3 files")."""

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_JOB_NAME,
        description="the job's name, shown wherever the job is shown",
        examples=["Conference talks, day 1"],
    )
    priority: PriorityText | None = Field(
        default=None,
        description="stored with the job (default normal); it does not change the order yet",
        examples=["normal"],
    )

    _name = field_validator("name")(_clean_name)


class BulkVideoIn(Strict):
    url: str = Field(examples=["https://example.com/talks/keynote.mp4"])
    title: str | None = Field(default=None, examples=["Keynote"])


class BulkJsonIn(Strict):
    """A JSON import: the videos, and optionally the job's name and priority."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Conference talks, day 1",
                    "priority": "normal",
                    "videos": [
                        {"url": "https://example.com/talks/keynote.mp4", "title": "Keynote"},
                        {"url": "talks/panel.mp4", "title": "Panel"},
                    ],
                }
            ]
        },
    )

    videos: list[BulkVideoIn]
    name: str | None = Field(default=None, min_length=1, max_length=MAX_JOB_NAME)
    priority: PriorityText | None = None


class ImportAccepted(BaseModel):
    job_id: UUID = Field(examples=[_EXAMPLE_JOB_ID])
    total_videos: int = Field(examples=[10])


class JobOut(BaseModel):
    """A processing job of the user, with its latest progress event."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _EXAMPLE_JOB_ID,
                    "name": "CSV import · 10 videos",
                    "source": "csv",
                    "priority": "normal",
                    "list_id": _EXAMPLE_LIST_ID,
                    "list_name": "Conference talks",
                    "status": "completed",
                    "total_videos": 10,
                    "processed_videos": 10,
                    "failed_videos": 2,
                    "retryable_videos": 2,
                    "retry_of_id": None,
                    "last_seq": 12,
                    "cancel_requested": False,
                    "created_at": "2026-12-01T10:00:00.123456Z",
                    "started_at": "2026-12-01T10:00:00.456789Z",
                    "finished_at": "2026-12-01T10:01:02.000000Z",
                    "latest_event": None,
                }
            ]
        }
    )

    id: UUID
    name: str = Field(description="given at submission, or derived from the source")
    source: JobSourceText = Field(
        description="how the job was made (import: before sources were recorded)"
    )
    priority: PriorityText
    list_id: UUID
    list_name: str
    status: JobStatusText
    total_videos: int
    processed_videos: int
    failed_videos: int
    retryable_videos: int = Field(
        description="failed videos still in this job: what POST .../retry would retry"
    )
    retry_of_id: UUID | None = Field(description="the job whose failed videos this retries")
    last_seq: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    latest_event: dict[str, Any] | None


class JobsPage(BaseModel):
    """One page of the user's jobs, newest first; ``next_cursor`` fetches the next page
    (null on the last one).  Jobs created while paging appear on a new first page, never
    twice nor in place of another."""

    items: list[JobOut]
    next_cursor: str | None = Field(examples=[_EXAMPLE_CURSOR, None])


class JobsQuery(BaseModel):
    status: list[JobFilter] | None = Field(
        default=None,
        description=(
            "only jobs in these states (comma-separated or repeated); active = pending or"
            " processing, finished = completed, failed or cancelled"
        ),
        examples=[["active"], ["completed", "failed"]],
    )
    list_id: UUID | None = Field(
        default=None, description="only jobs of this list", examples=[_EXAMPLE_LIST_ID]
    )
    q: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="case-insensitive text in the job's name or its list's name",
        examples=["talks"],
    )
    limit: int = Field(default=20, ge=1, le=100, description="jobs per page")
    cursor: PageCursor = None

    _split_status = field_validator("status", mode="before")(_split_repeated)


class CancelOut(BaseModel):
    job_id: str
    result: Literal["cancelled", "cancel_requested", "already_finished", "not_found"]
    status: JobStatusText | None = None


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
