"""A new job's rows: the record of a video to create, and the one transaction that writes
a job, its videos and its first event.

Submitting a job (publishing that event, enqueueing it) is :mod:`tasks.submission`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypedDict

from tortoise.transactions import in_transaction

from models.entities import (
    ACTIVE_JOB_STATUSES,
    MAX_JOB_NAME,
    JobPriority,
    JobSource,
    JobStatus,
    ProcessingJob,
    User,
    Video,
    VideoStatus,
)
from models.events import ProgressEvent, job_event
from models.history import record_event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewVideo:
    """One video to create: ``source`` as stored on Video.source (``import:<rel>``,
    ``upload:<rel>`` or an http(s) URL), and its title."""

    source: str
    title: str


@dataclass(frozen=True)
class JobSpec:
    """What a submitter says about a new job: its source, an optional name given by the
    client (else :func:`default_job_name`), its priority."""

    source: JobSource
    name: str | None = None
    priority: JobPriority = JobPriority.NORMAL


#: the spec of a job whose submitter says nothing about it
UNSPECIFIED = JobSpec(source=JobSource.IMPORT)


@dataclass(frozen=True)
class FailedVideosOf:
    """The videos of a retry job: the failed videos of ``job`` (a finished job)."""

    job: ProcessingJob


class NothingToRetry(Exception):
    """The job has no failed video left to retry (none failed, or they were retried
    already, possibly by a concurrent request)."""


def plural(count: int, word: str) -> str:
    """``1 video``, ``2 videos``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


_SOURCE_LABELS = {
    JobSource.CSV: ("CSV import", "video"),
    JobSource.JSON: ("JSON import", "video"),
    JobSource.UPLOAD: ("Upload", "file"),
    JobSource.DEMO: ("Demo", "video"),
    JobSource.IMPORT: ("Import", "video"),
}


def default_job_name(source: JobSource, count: int, *, retry_of: str | None = None) -> str:
    """The name of a job the client did not name: "CSV import · 10 videos",
    "Upload · 3 files", "Retry of <name>"; at most MAX_JOB_NAME characters."""
    if source == JobSource.RETRY:
        return f"Retry of {retry_of or 'a job'}"[:MAX_JOB_NAME]
    label, unit = _SOURCE_LABELS[source]
    return f"{label} · {plural(count, unit)}"


class JobCounters(TypedDict):
    total_videos: int
    processed_videos: int
    failed_videos: int


def job_counters(job: ProcessingJob) -> JobCounters:
    """The job row's counters, as :func:`models.events.job_event` takes them."""
    return JobCounters(
        total_videos=job.total_videos,
        processed_videos=job.processed_videos,
        failed_videos=job.failed_videos,
    )


def _queued_event(job: ProcessingJob, message: str) -> ProgressEvent:
    return job_event(job.id, 1, "pending", message, total_videos=job.total_videos)


async def _within_high_limit(
    owner_id: uuid.UUID | str, spec: JobSpec, high_limit: int | None
) -> JobSpec:
    """``spec``, or it as ``normal`` when it asks for ``high`` and the owner already has
    ``high_limit`` unfinished high jobs (None: no limit).  Called inside the creating
    transaction: the owner's row stays locked until it commits, so submissions racing
    each other are counted one after the other and never pass the limit together."""
    if spec.priority != JobPriority.HIGH or high_limit is None:
        return spec
    # FOR UPDATE on PostgreSQL; SQLite's transactions already run one at a time
    await User.select_for_update().filter(id=owner_id).only("id").first()
    active = await ProcessingJob.filter(
        owner_id=owner_id,
        priority=JobPriority.HIGH,
        status__in=ACTIVE_JOB_STATUSES,
    ).count()
    if active < high_limit:
        return spec
    log.info(
        "owner %s has %d unfinished high jobs: this one is submitted as normal", owner_id, active
    )
    return replace(spec, priority=JobPriority.NORMAL)


async def _create_job(
    owner_id: uuid.UUID | str,
    list_id: uuid.UUID | str,
    spec: JobSpec,
    total: int,
    *,
    retry_of: ProcessingJob | None = None,
    high_limit: int | None = None,
) -> ProcessingJob:
    spec = await _within_high_limit(owner_id, spec, high_limit)
    name = (spec.name or "").strip()[:MAX_JOB_NAME] or default_job_name(
        spec.source, total, retry_of=retry_of.name if retry_of else None
    )
    return await ProcessingJob.create(
        list_id=list_id,
        owner_id=owner_id,
        status=JobStatus.PENDING,
        total_videos=total,
        name=name,
        source=spec.source,
        priority=spec.priority,
        retry_of_id=retry_of.id if retry_of else None,
    )


async def create_job_with_videos(
    owner_id: uuid.UUID | str,
    list_id: uuid.UUID | str,
    videos: Sequence[NewVideo],
    spec: JobSpec = UNSPECIFIED,
    *,
    high_limit: int | None = None,
) -> tuple[ProcessingJob, ProgressEvent]:
    """Write the videos (in order), their job and its first ``pending`` event (seq 1) in
    one transaction; returns the job and that event.  A ``high`` spec is stored
    ``normal`` when the owner already has ``high_limit`` unfinished high jobs.

    Either everything is written or nothing is (the transaction rolls back on error).
    """
    n = len(videos)
    async with in_transaction():
        job = await _create_job(owner_id, list_id, spec, n, high_limit=high_limit)
        await Video.bulk_create(
            [
                Video(
                    id=uuid.uuid4(),
                    list_id=list_id,
                    job_id=job.id,
                    position=i,
                    source=video.source,
                    title=video.title[:500],
                )
                for i, video in enumerate(videos)
            ]
        )
        first = _queued_event(job, f"Queued {plural(n, 'video')}")
        if not await record_event(first):  # cannot happen: the job was just created
            raise RuntimeError("could not write the first event of a new job")
    job.last_seq = 1
    return job, first


#: what a retried video forgets of its failed attempt
_RESET_VIDEO: dict[str, object] = {
    "status": VideoStatus.PENDING,
    "error": None,
    "processed_at": None,
    "duration_s": None,
    "width": None,
    "height": None,
    "fps": None,
    "video_codec": None,
    "audio_codec": None,
    "bitrate": None,
    "size_bytes": None,
    "thumbnail_path": None,
}


async def create_retry_job(
    original: ProcessingJob, spec: JobSpec, *, high_limit: int | None = None
) -> tuple[ProcessingJob, ProgressEvent]:
    """A new job over exactly the failed videos of ``original`` (which must be final):
    in one transaction the videos move to the new job, ``pending`` again with their
    error and metadata cleared (order kept), and its first event (seq 1) is written.
    ``high_limit`` as in :func:`create_job_with_videos`.

    Raises :class:`NothingToRetry` when ``original`` has no failed video, or when a
    concurrent retry took some of them first (then nothing is written).
    """
    async with in_transaction():
        ids = await Video.filter(job_id=original.id, status=VideoStatus.FAILED).values_list(
            "id", flat=True
        )
        if not ids:
            raise NothingToRetry(str(original.id))
        job = await _create_job(
            original.owner_id,
            original.list_id,
            spec,
            len(ids),
            retry_of=original,
            high_limit=high_limit,
        )
        moved = await Video.filter(
            id__in=list(ids), job_id=original.id, status=VideoStatus.FAILED
        ).update(job_id=job.id, **_RESET_VIDEO)
        if moved != len(ids):  # another retry moved some meanwhile: roll back
            raise NothingToRetry(str(original.id))
        first = _queued_event(job, f"Retrying {plural(len(ids), 'failed video')}")
        if not await record_event(first):
            raise RuntimeError("could not write the first event of a new job")
    job.last_seq = 1
    return job, first


async def abandon_videos(
    job_id: uuid.UUID | str, reason: str, *, status: VideoStatus = VideoStatus.FAILED
) -> None:
    """The unfinished videos of a job that will never run them (pending, or left
    ``processing`` by a run that died) end ``status`` (``failed`` when the job could not
    run, ``cancelled`` when a user stopped it), with ``reason``; never left pending."""
    await Video.filter(
        job_id=job_id, status__in=[VideoStatus.PENDING, VideoStatus.PROCESSING]
    ).update(status=status, error=reason)
