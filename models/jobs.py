"""Creating a processing job: the one place that writes a new job's rows.

Used by the REST API and by ``tasks.imports`` (the demo, scripts); each adds its own
publishing and enqueueing around it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from tortoise.transactions import in_transaction

from models.entities import JobStatus, ProcessingJob, Video
from models.events import ProgressEvent, utcnow
from models.history import record_event


async def create_job_with_videos(
    owner_id: uuid.UUID | str,
    list_id: uuid.UUID | str,
    items: Sequence[tuple[str, str]],
) -> tuple[ProcessingJob, ProgressEvent]:
    """Write the videos (``(source, title)`` in order), their job and its first
    ``pending`` event (seq 1) in one transaction; returns the job and that event.

    Either everything is written or nothing is (the transaction rolls back on error).
    """
    n = len(items)
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
                    source=source,
                    title=title[:500],
                )
                for i, (source, title) in enumerate(items)
            ]
        )
        first = ProgressEvent(
            job_id=uuid.UUID(str(job.id)),
            seq=1,
            status="pending",
            progress=0,
            current_video=0,
            total_videos=n,
            processed_videos=0,
            failed_videos=0,
            message=f"Queued {n} video{'s' if n != 1 else ''}",
            created_at=utcnow(),
        )
        if not await record_event(first):  # cannot happen: the job was just created
            raise RuntimeError("could not write the first event of a new job")
    job.last_seq = 1
    return job, first
