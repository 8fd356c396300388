"""Processing jobs: list (paginated, filtered), get, retry, cancel, delete, history."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC

from quart import Blueprint
from quart_schema import (
    document_response,
    tag,
    validate_querystring,
    validate_request,
    validate_response,
)
from tortoise.expressions import Q
from tortoise.functions import Count

from models.entities import (
    ACTIVE_JOB_STATUSES,
    FINAL_JOB_STATUSES,
    JobPriority,
    JobSource,
    JobStatus,
    ProcessingJob,
    Video,
    VideoStatus,
)
from models.history import events_after, latest_events
from models.pages import BadCursor, newest_first
from quart_app.api.job_ops import cancel_job, delete_job, retry_failed
from quart_app.api.schemas import (
    BatchCancelIn,
    BatchCancelOut,
    CancelOut,
    ErrorOut,
    HistoryOut,
    HistoryQuery,
    ImportAccepted,
    JobOut,
    JobsPage,
    JobsQuery,
)
from quart_app.errors import ApiError
from quart_app.request_auth import current_user_id, require_user
from quart_app.services import services

bp = Blueprint("jobs", __name__, url_prefix="/api/jobs")


async def owned_job(job_id: uuid.UUID) -> ProcessingJob:
    """The current user's job (with its list), or ApiError 404 (also for another user's
    job)."""
    found = (
        await ProcessingJob.filter(id=job_id, owner_id=current_user_id())
        .select_related("list")
        .first()
    )
    if found is None:
        raise ApiError(404, "not_found", "no such job")
    return found


async def jobs_out(jobs: list[ProcessingJob]) -> list[JobOut]:
    """The JSON of ``jobs`` (their list fetched with them: ``select_related("list")``),
    with their latest events and retryable counts in one query each."""
    latest = await latest_events((uuid.UUID(str(j.id)), j.last_seq) for j in jobs)
    failed_rows = (
        await Video.filter(job_id__in=[j.id for j in jobs], status=VideoStatus.FAILED)
        .annotate(n=Count("id"))
        .group_by("job_id")
        .values_list("job_id", "n")
        if jobs
        else []
    )
    retryable = {str(job_id): int(n) for job_id, n in failed_rows}
    return [
        JobOut(
            id=j.id,
            name=j.name,
            source=JobSource(j.source).value,
            priority=JobPriority(j.priority).value,
            list_id=uuid.UUID(str(j.list_id)),
            list_name=j.list.name,
            status=JobStatus(j.status).value,
            total_videos=j.total_videos,
            processed_videos=j.processed_videos,
            failed_videos=j.failed_videos,
            retryable_videos=retryable.get(str(j.id), 0),
            retry_of_id=uuid.UUID(str(j.retry_of_id)) if j.retry_of_id else None,
            last_seq=j.last_seq,
            cancel_requested=j.cancel_requested,
            created_at=j.created_at,
            started_at=j.started_at,
            finished_at=j.finished_at,
            latest_event=latest.get(str(j.id)),
        )
        for j in jobs
    ]


def _statuses(filters: Sequence[str]) -> set[JobStatus]:
    wanted: set[JobStatus] = set()
    for name in filters:
        if name == "active":
            wanted |= ACTIVE_JOB_STATUSES
        elif name == "finished":
            wanted |= FINAL_JOB_STATUSES
        else:
            wanted.add(JobStatus(name))
    return wanted


@bp.get("")
@require_user
@tag(["jobs"])
@validate_querystring(JobsQuery)
@validate_response(JobsPage)
@document_response(ErrorOut, 400)
async def list_jobs(query_args: JobsQuery) -> JobsPage:
    """The user's jobs, newest first, a page at a time.

    Filters combine: ``status`` (comma-separated or repeated; ``active`` = pending or
    processing, ``finished`` = completed, failed or cancelled), ``list_id``, ``q`` (text
    in the job's or its list's name, any case).  Pass ``next_cursor`` back as ``cursor``
    for the next page; a malformed cursor is 400 ``invalid_cursor``.
    """
    query = ProcessingJob.filter(owner_id=current_user_id())
    if query_args.status:
        query = query.filter(status__in=sorted(_statuses(query_args.status)))
    if query_args.list_id is not None:
        query = query.filter(list_id=query_args.list_id)
    if query_args.q is not None:
        text = query_args.q
        query = query.filter(Q(name__icontains=text) | Q(list__name__icontains=text))
    try:
        jobs, next_cursor = await newest_first(
            query.select_related("list"), limit=query_args.limit, cursor=query_args.cursor
        )
    except BadCursor:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API returned") from None
    return JobsPage(items=await jobs_out(jobs), next_cursor=next_cursor)


@bp.get("/<uuid:job_id>")
@require_user
@tag(["jobs"])
@validate_response(JobOut)
@document_response(ErrorOut, 404)
async def get_job(job_id: uuid.UUID) -> JobOut:
    """One job with its latest event."""
    return (await jobs_out([await owned_job(job_id)]))[0]


@bp.post("/<uuid:job_id>/retry")
@require_user
@tag(["jobs"])
@validate_response(ImportAccepted, 202)
@document_response(ErrorOut, 404)
@document_response(ErrorOut, 409)
@document_response(ErrorOut, 503)
async def retry(job_id: uuid.UUID) -> tuple[ImportAccepted, int]:
    """Retry the failed videos of a finished job: a new job ("Retry of <name>") over
    exactly those videos, which move to it as ``pending``.

    409 ``job_active`` while the job is pending or processing; 409 ``nothing_to_retry``
    when it has no failed video (none failed, or they were retried already).
    """
    job = await retry_failed(services(), await owned_job(job_id))
    return ImportAccepted(job_id=job.id, total_videos=job.total_videos), 202


@bp.post("/<uuid:job_id>/cancel")
@require_user
@tag(["jobs"])
@validate_response(CancelOut)
@document_response(ErrorOut, 404)
@document_response(ErrorOut, 409)
async def cancel(job_id: uuid.UUID) -> CancelOut:
    """Cancel a job: ``cancelled`` when no worker had claimed it yet (final event
    written now), ``cancel_requested`` when a worker stops it before its next video.
    409 when the job has already finished."""
    job = await owned_job(job_id)
    result = await cancel_job(services(), job)
    if result == "already_finished":
        raise ApiError(
            409,
            "job_finished",
            "the job has already finished",
            job_status=JobStatus(job.status).value,
        )
    return CancelOut(job_id=str(job.id), result=result, status=JobStatus(job.status).value)  # type: ignore[arg-type]


@bp.post("/cancel")
@require_user
@tag(["jobs"])
@validate_request(BatchCancelIn)
@validate_response(BatchCancelOut)
async def cancel_many(data: BatchCancelIn) -> BatchCancelOut:
    """Cancel several jobs; one result per id, in the order given.  Unknown, malformed
    and other users' ids are reported as ``not_found``."""
    results: list[CancelOut] = []
    owner = current_user_id()
    for raw in data.job_ids:
        try:
            job_id = uuid.UUID(raw)
        except (ValueError, TypeError):
            results.append(CancelOut(job_id=raw[:64], result="not_found"))
            continue
        job = await ProcessingJob.get_or_none(id=job_id, owner_id=owner)
        if job is None:
            results.append(CancelOut(job_id=str(job_id), result="not_found"))
            continue
        result = await cancel_job(services(), job)
        results.append(
            CancelOut(job_id=str(job_id), result=result, status=JobStatus(job.status).value)  # type: ignore[arg-type]
        )
    return BatchCancelOut(results=results)


@bp.delete("/<uuid:job_id>")
@require_user
@tag(["jobs"])
@document_response(ErrorOut, 404)
async def delete(job_id: uuid.UUID) -> tuple[str, int]:
    """Cancel the job if it runs, then delete it and its history (204)."""
    await delete_job(services(), await owned_job(job_id))
    return "", 204


@bp.get("/<uuid:job_id>/progress-history")
@require_user
@tag(["jobs"])
@validate_querystring(HistoryQuery)
@validate_response(HistoryOut)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 404)
async def progress_history(job_id: uuid.UUID, query_args: HistoryQuery) -> HistoryOut:
    """Events of the job ordered by seq: seq > ``after_seq`` (default 0) and, with
    ``since`` (ISO-8601; without an offset it is UTC), created strictly after it; at most
    ``limit`` (1..1000, default 100).  Page on with ``after_seq`` = the last seq seen."""
    job = await owned_job(job_id)
    since = query_args.since
    if since is not None:
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
    events = await events_after(
        job.id, after_seq=query_args.after_seq, since=since, limit=query_args.limit
    )
    return HistoryOut(job_id=job.id, events=events, last_seq=job.last_seq)
