"""Reading and writing the progress history (table ``job_progress_events``).

The one code path that stores events: the API (first ``pending`` event, cancel of an
unclaimed job) and the worker's publisher both call :func:`record_event`, so an event
row and its job's counters (``last_seq`` and the video counts) always change together.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.entities import JobProgressEvent, JobStatus, ProcessingJob
from models.events import ProgressEvent

MAX_PAGE = 1000


async def record_event(event: ProgressEvent, *, expect_status: JobStatus | None = None) -> bool:
    """Store ``event`` and copy its counters onto the job, in one transaction.

    ``event.seq`` must be the job's ``last_seq + 1``; the (job_id, seq) unique constraint
    rejects duplicates (tortoise IntegrityError).  With ``expect_status`` the write only
    happens while the job still has that status (a conditional transition); returns False
    when it did not (another writer got there first, or the job is gone).
    """
    updates: dict[str, Any] = {
        "last_seq": event.seq,
        "status": JobStatus(event.status),
        "total_videos": event.total_videos,
        "processed_videos": event.processed_videos,
        "failed_videos": event.failed_videos,
    }
    if event.is_final:
        updates["finished_at"] = event.created_at
    async with in_transaction():
        query = ProcessingJob.filter(id=event.job_id, last_seq=event.seq - 1)
        if expect_status is not None:
            query = query.filter(status=expect_status)
        if await query.update(**updates) != 1:
            return False
        await JobProgressEvent.create(
            job_id=event.job_id,
            seq=event.seq,
            created_at=event.created_at,
            progress_data=event.to_wire(),
        )
    return True


async def events_after(
    job_id: uuid.UUID | str,
    *,
    after_seq: int = 0,
    since: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Events of one job with seq > ``after_seq`` (and created strictly after ``since``),
    ordered by seq, at most ``limit`` (capped at :data:`MAX_PAGE`)."""
    query = JobProgressEvent.filter(job_id=job_id, seq__gt=after_seq)
    if since is not None:
        query = query.filter(created_at__gt=since)
    rows = (
        await query.order_by("seq")
        .limit(min(limit, MAX_PAGE))
        .values_list("progress_data", flat=True)
    )
    return cast(list[dict[str, Any]], list(rows))


async def missed_events(
    owner_id: uuid.UUID | str, last_seqs: dict[uuid.UUID, int], max_events: int
) -> tuple[list[dict[str, Any]], bool]:
    """What a client of ``owner_id`` missed: events after each given seq, in (job, seq)
    order, at most ``max_events``; the flag says whether some were left out.

    Job ids that are not the owner's are ignored silently.
    """
    if not last_seqs:
        return [], False
    owned = await ProcessingJob.filter(id__in=list(last_seqs), owner_id=owner_id).values_list(
        "id", "last_seq"
    )
    wanted = [(jid, last_seqs[jid]) for jid, last in owned if last > last_seqs[jid]]
    if not wanted:
        return [], False
    condition = Q()
    for jid, after in wanted:
        condition |= Q(job_id=jid, seq__gt=after)
    rows = await (
        JobProgressEvent.filter(condition)
        .order_by("job_id", "seq")
        .limit(max_events + 1)
        .values_list("progress_data", flat=True)
    )
    events = cast(list[dict[str, Any]], list(rows))
    return events[:max_events], len(events) > max_events


async def latest_events(jobs: Iterable[tuple[uuid.UUID, int]]) -> dict[str, dict[str, Any]]:
    """The latest event of each (job_id, last_seq) pair, keyed by job id text."""
    pairs = [(jid, seq) for jid, seq in jobs if seq > 0]
    if not pairs:
        return {}
    condition = Q()
    for jid, seq in pairs:
        condition |= Q(job_id=jid, seq=seq)
    rows = await JobProgressEvent.filter(condition).values_list("job_id", "progress_data")
    return {str(jid): data for jid, data in rows}
