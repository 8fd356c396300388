"""Reading and writing the progress history (table ``job_progress_events``).

The one code path that stores events: the API (first ``pending`` event, cancel of an
unclaimed job) and the worker's publisher both call :func:`record_event`, so an event
row and its job's counters (``last_seq`` and the video counts) always change together.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from tortoise import connections
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.entities import ACTIVE_JOB_STATUSES, JobProgressEvent, JobStatus, ProcessingJob
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


#: the user (a row even without jobs), each job of theirs that is active or finished
#: since the cutoff, and its latest event: the ``(owner_id, created_at)`` index on the
#: jobs and the unique ``(job_id, seq)`` index on the events, one statement
_SNAPSHOT_SQL = (
    "SELECT j.id AS job_id, e.progress_data AS data FROM users u"
    " LEFT JOIN processing_jobs j ON j.owner_id = u.id"
    " AND (j.status IN ({statuses}) OR j.finished_at >= {cutoff})"
    " LEFT JOIN job_progress_events e ON e.job_id = j.id AND e.seq = j.last_seq"
    " WHERE u.id = {owner} ORDER BY j.created_at, j.id"
)
_ACTIVE = sorted(str(s) for s in ACTIVE_JOB_STATUSES)


def _snapshot_sql(dialect: str) -> str:
    if dialect == "postgres":
        marks = [f"${i}" for i in range(1, len(_ACTIVE) + 3)]
    else:
        marks = ["?"] * (len(_ACTIVE) + 2)
    return _SNAPSHOT_SQL.format(
        statuses=", ".join(marks[: len(_ACTIVE)]), cutoff=marks[-2], owner=marks[-1]
    )


_SNAPSHOT_SQL_BY_DIALECT: dict[str, str] = {}


async def connect_snapshot(owner_id: uuid.UUID, finished_since: datetime) -> list[Any] | None:
    """The latest event of each of ``owner_id``'s jobs that is active or finished at or
    after ``finished_since``, oldest job first (jobs without an event yet are left out);
    None when the user does not exist.  One SQL statement: the connect path's only one.
    """
    client = connections.get("default")
    dialect = client.capabilities.dialect
    sql = _SNAPSHOT_SQL_BY_DIALECT.get(dialect)
    if sql is None:
        sql = _SNAPSHOT_SQL_BY_DIALECT[dialect] = _snapshot_sql(dialect)
    # PostgreSQL columns are uuid; SQLite stores the text form (and its adapter writes
    # datetimes as the same ISO text the ORM stored, which compares in time order)
    owner: Any = owner_id if dialect == "postgres" else str(owner_id)
    rows = await client.execute_query_dict(sql, [*_ACTIVE, finished_since, owner])
    if not rows:
        return None
    out = []
    for row in rows:
        data = row["data"]
        if data is None:  # no job, or a job with no event yet
            continue
        out.append(json.loads(data) if isinstance(data, str | bytes) else data)
    return out
