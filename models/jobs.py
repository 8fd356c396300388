"""A new job's rows: the record of a video to create, and the one transaction that writes
a job, its videos and its first event.

Submitting a job (publishing that event, enqueueing it) is :mod:`tasks.submission`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from tortoise.transactions import in_transaction

from models.entities import JobStatus, ProcessingJob, Video, VideoStatus
from models.events import ProgressEvent, job_event
from models.history import record_event


@dataclass(frozen=True)
class NewVideo:
    """One video to create: ``source`` as stored on Video.source (``import:<rel>``,
    ``upload:<rel>`` or an http(s) URL), and its title."""

    source: str
    title: str


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


async def create_job_with_videos(
    owner_id: uuid.UUID | str,
    list_id: uuid.UUID | str,
    videos: Sequence[NewVideo],
) -> tuple[ProcessingJob, ProgressEvent]:
    """Write the videos (in order), their job and its first ``pending`` event (seq 1) in
    one transaction; returns the job and that event.

    Either everything is written or nothing is (the transaction rolls back on error).
    """
    n = len(videos)
    async with in_transaction():
        job = await ProcessingJob.create(
            list_id=list_id, owner_id=owner_id, status=JobStatus.PENDING, total_videos=n
        )
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
        first = job_event(
            job.id, 1, "pending", f"Queued {n} video{'s' if n != 1 else ''}", total_videos=n
        )
        if not await record_event(first):  # cannot happen: the job was just created
            raise RuntimeError("could not write the first event of a new job")
    job.last_seq = 1
    return job, first


async def abandon_videos(job_id: uuid.UUID | str, reason: str) -> None:
    """The pending videos of a job that will never run them: failed, with ``reason``
    (never left pending)."""
    await Video.filter(job_id=job_id, status=VideoStatus.PENDING).update(
        status=VideoStatus.FAILED, error=reason
    )
