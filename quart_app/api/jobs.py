"""Processing jobs: list, get, cancel, delete, progress history."""

from __future__ import annotations

import uuid
from datetime import UTC

from quart import Blueprint
from quart_schema import (
    document_response,
    tag,
    validate_querystring,
    validate_request,
    validate_response,
)

from models.entities import (
    ACTIVE_JOB_STATUSES,
    FINAL_JOB_STATUSES,
    JobStatus,
    ProcessingJob,
)
from models.history import events_after, latest_events
from quart_app.api.job_ops import cancel_job, delete_job
from quart_app.api.schemas import (
    BatchCancelIn,
    BatchCancelOut,
    CancelOut,
    ErrorOut,
    HistoryOut,
    HistoryQuery,
    JobOut,
    JobsOut,
    JobsQuery,
)
from quart_app.errors import ApiError
from quart_app.request_auth import current_user_id, require_user
from quart_app.services import services

bp = Blueprint("jobs", __name__, url_prefix="/api/jobs")


async def owned_job(job_id: uuid.UUID) -> ProcessingJob:
    """The current user's job, or ApiError 404 (also for another user's job)."""
    found = await ProcessingJob.get_or_none(id=job_id, owner_id=current_user_id())
    if found is None:
        raise ApiError(404, "not_found", "no such job")
    return found


async def jobs_out(jobs: list[ProcessingJob]) -> list[JobOut]:
    latest = await latest_events((uuid.UUID(str(j.id)), j.last_seq) for j in jobs)
    return [
        JobOut(
            id=j.id,
            list_id=uuid.UUID(str(j.list_id)),
            status=JobStatus(j.status).value,
            total_videos=j.total_videos,
            processed_videos=j.processed_videos,
            failed_videos=j.failed_videos,
            last_seq=j.last_seq,
            cancel_requested=j.cancel_requested,
            created_at=j.created_at,
            started_at=j.started_at,
            finished_at=j.finished_at,
            latest_event=latest.get(str(j.id)),
        )
        for j in jobs
    ]


@bp.get("")
@require_user
@tag(["jobs"])
@validate_querystring(JobsQuery)
@validate_response(JobsOut)
@document_response(ErrorOut, 400)
async def list_jobs(query_args: JobsQuery) -> JobsOut:
    """The user's jobs, newest first, each with its latest event.  ``status=active``:
    pending or processing; ``finished``: completed, failed or cancelled."""
    query = ProcessingJob.filter(owner_id=current_user_id())
    if query_args.status == "active":
        query = query.filter(status__in=list(ACTIVE_JOB_STATUSES))
    elif query_args.status == "finished":
        query = query.filter(status__in=list(FINAL_JOB_STATUSES))
    elif query_args.status is not None:
        query = query.filter(status=JobStatus(query_args.status))
    jobs = await query.order_by("-created_at").limit(query_args.limit)
    return JobsOut(jobs=await jobs_out(jobs))


@bp.get("/<uuid:job_id>")
@require_user
@tag(["jobs"])
@validate_response(JobOut)
@document_response(ErrorOut, 404)
async def get_job(job_id: uuid.UUID) -> JobOut:
    """One job with its latest event."""
    return (await jobs_out([await owned_job(job_id)]))[0]


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
