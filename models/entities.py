"""Tortoise ORM models (DESIGN section 2). Migrations in migrations/<dialect> follow them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model


class VideoStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"
    #: its job was cancelled (or could not run) before the video was processed
    CANCELLED = "cancelled"


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_JOB_STATUSES


class JobSource(StrEnum):
    """How a job came to exist; ``import`` marks jobs created before sources were kept."""

    CSV = "csv"
    JSON = "json"
    UPLOAD = "upload"
    RETRY = "retry"
    DEMO = "demo"
    IMPORT = "import"


class JobPriority(StrEnum):
    """Stored with every job for fair scheduling; it does not change the order yet."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


#: the longest job name (given by the client or derived at submission)
MAX_JOB_NAME = 200

FINAL_JOB_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE_JOB_STATUSES = frozenset({JobStatus.PENDING, JobStatus.PROCESSING})


class User(Model):
    id = fields.UUIDField(primary_key=True)
    username = fields.CharField(max_length=64, unique=True)
    password_hash = fields.CharField(max_length=255)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "users"


class VideoList(Model):
    id = fields.UUIDField(primary_key=True)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="lists", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    created_at = fields.DatetimeField(auto_now_add=True)

    owner_id: str

    class Meta:
        table = "video_lists"
        indexes = (("owner", "created_at"),)


class Video(Model):
    id = fields.UUIDField(primary_key=True)
    list: fields.ForeignKeyRelation[VideoList] = fields.ForeignKeyField(
        "models.VideoList", related_name="videos", on_delete=fields.CASCADE
    )
    #: the import job that created this video; the worker processes a job's videos
    #: by position and resumes after the last one that is ready or failed
    job: fields.ForeignKeyNullableRelation[ProcessingJob] = fields.ForeignKeyField(
        "models.ProcessingJob", related_name="videos", null=True, on_delete=fields.SET_NULL
    )
    #: "http(s)://..." for URLs, "import:<relative path>" or "upload:<relative path>"
    source = fields.CharField(max_length=2048)
    title = fields.CharField(max_length=500)
    #: position within its import job, so a job processes videos in a stable order
    position = fields.IntField(default=0)
    status = fields.CharEnumField(VideoStatus, max_length=16, default=VideoStatus.PENDING)
    duration_s = fields.FloatField(null=True)
    width = fields.IntField(null=True)
    height = fields.IntField(null=True)
    fps = fields.FloatField(null=True)
    video_codec = fields.CharField(max_length=64, null=True)
    audio_codec = fields.CharField(max_length=64, null=True)
    bitrate = fields.BigIntField(null=True)
    size_bytes = fields.BigIntField(null=True)
    thumbnail_path = fields.CharField(max_length=1024, null=True)
    error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    processed_at = fields.DatetimeField(null=True)

    list_id: str
    job_id: str | None

    class Meta:
        table = "videos"
        indexes = (("job", "position"), ("list", "created_at"))


class ProcessingJob(Model):
    id = fields.UUIDField(primary_key=True)
    list: fields.ForeignKeyRelation[VideoList] = fields.ForeignKeyField(
        "models.VideoList", related_name="jobs", on_delete=fields.CASCADE
    )
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="jobs", on_delete=fields.CASCADE
    )
    status = fields.CharEnumField(
        JobStatus, max_length=16, default=JobStatus.PENDING, db_index=True
    )
    #: shown wherever the job is shown: given at submission or derived from its source
    name = fields.CharField(max_length=MAX_JOB_NAME, default="")
    source = fields.CharEnumField(JobSource, max_length=16, default=JobSource.IMPORT)
    priority = fields.CharEnumField(JobPriority, max_length=8, default=JobPriority.NORMAL)
    #: the job whose failed videos this job retries
    retry_of: fields.ForeignKeyNullableRelation[ProcessingJob] = fields.ForeignKeyField(
        "models.ProcessingJob", related_name="retries", null=True, on_delete=fields.SET_NULL
    )
    total_videos = fields.IntField(default=0)
    processed_videos = fields.IntField(default=0)
    failed_videos = fields.IntField(default=0)
    last_seq = fields.IntField(default=0)
    cancel_requested = fields.BooleanField(default=False)
    rq_job_id = fields.CharField(max_length=64, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    #: refreshed by the worker while it holds the job; the stale-job check reads it
    heartbeat_at = fields.DatetimeField(null=True)

    list_id: str
    owner_id: str
    retry_of_id: str | None

    class Meta:
        table = "processing_jobs"
        indexes = (("owner", "created_at"),)


class JobProgressEvent(Model):
    id = fields.BigIntField(primary_key=True)
    job: fields.ForeignKeyRelation[ProcessingJob] = fields.ForeignKeyField(
        "models.ProcessingJob", related_name="events", on_delete=fields.CASCADE
    )
    seq = fields.IntField()
    created_at = fields.DatetimeField(db_index=True)
    progress_data: dict[str, Any] = fields.JSONField()

    job_id: str

    class Meta:
        table = "job_progress_events"
        unique_together = (("job", "seq"),)
        # idx_job_progress_job_created (job_id, created_at DESC) is hand-written in the
        # migrations: aerich cannot express DESC (DESIGN section 2).
