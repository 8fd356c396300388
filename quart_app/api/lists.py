"""Video lists, their videos, bulk imports and uploads."""

from __future__ import annotations

import shutil
import uuid
from typing import Any

from pydantic import ValidationError
from quart import Blueprint, request
from quart_schema import (
    document_request,
    document_response,
    tag,
    validate_querystring,
    validate_request,
    validate_response,
)
from tortoise.functions import Count
from werkzeug.http import parse_options_header

from models.entities import JobPriority, JobSource, ProcessingJob, Video, VideoList, VideoStatus
from models.jobs import JobSpec, NewVideo
from models.pages import BadCursor, newest_first
from quart_app.api.job_ops import announce_deleted, submit_for_user, unheld
from quart_app.api.schemas import (
    BulkJsonIn,
    ErrorOut,
    ImportAccepted,
    JobOptions,
    ListIn,
    ListOut,
    ListsOut,
    VideosPage,
    VideosQuery,
)
from quart_app.api.videos import video_out
from quart_app.core.byte_sizes import byte_size
from quart_app.core.config import Config
from quart_app.errors import ApiError
from quart_app.import_parsing import ImportRejected, max_import_bytes, parse_csv, parse_json
from quart_app.json_body import loads_request_json
from quart_app.login_throttle import client_address
from quart_app.owned_files import files_of_list, remove_list_files
from quart_app.request_auth import current_user, current_user_id, require_user
from quart_app.request_body import body_limit
from quart_app.services import services
from quart_app.upload_slots import upload_slots
from quart_app.uploads import receive_uploads

bp = Blueprint("lists", __name__, url_prefix="/api/lists")

CSV_TYPES = {"text/csv", "application/csv", "text/plain"}
#: multipart headers and boundaries around an imported CSV file
MULTIPART_ENVELOPE_BYTES = 16 * 1024


async def owned_list(list_id: uuid.UUID) -> VideoList:
    """The current user's list, or ApiError 404 (also for another user's list)."""
    found = await VideoList.get_or_none(id=list_id, owner_id=current_user_id())
    if found is None:
        raise ApiError(404, "not_found", "no such list")
    return found


def list_out(item: VideoList, video_count: int = 0) -> ListOut:
    return ListOut(id=item.id, name=item.name, created_at=item.created_at, video_count=video_count)


@bp.post("")
@require_user
@tag(["lists"])
@validate_request(ListIn)
@validate_response(ListOut, 201)
async def create_list(data: ListIn) -> tuple[ListOut, int]:
    """Create an empty video list."""
    created = await VideoList.create(owner_id=current_user().id, name=data.name)
    return list_out(created), 201


@bp.get("")
@require_user
@tag(["lists"])
@validate_response(ListsOut)
async def get_lists() -> ListsOut:
    """The user's lists, newest first, with their video counts."""
    rows = (
        await VideoList.filter(owner_id=current_user_id())
        .annotate(video_count=Count("videos"))
        .order_by("-created_at")
    )
    return ListsOut(lists=[list_out(r, getattr(r, "video_count", 0)) for r in rows])


@bp.get("/<uuid:list_id>")
@require_user
@tag(["lists"])
@validate_response(ListOut)
@document_response(ErrorOut, 404)
async def get_list(list_id: uuid.UUID) -> ListOut:
    found = await owned_list(list_id)
    return list_out(found, await Video.filter(list_id=found.id).count())


@bp.delete("/<uuid:list_id>")
@require_user
@tag(["lists"])
@document_response(ErrorOut, 404)
async def delete_list(list_id: uuid.UUID) -> tuple[str, int]:
    """Delete the list, its videos and its jobs (running jobs stop before their next
    video; pending and waiting ones are announced as cancelled), then every file the list owns
    under MEDIA_ROOT: uploads and thumbnails (never a file under IMPORT_ROOT).  A file
    that cannot be removed is logged; the answer is still 204."""
    found = await owned_list(list_id)
    config = services().config
    waiting = await unheld(services(), await ProcessingJob.filter(list_id=found.id))
    owned = await files_of_list(config, found)
    await found.delete()
    await announce_deleted(services(), waiting, "List deleted")
    await remove_list_files(config, owned)
    return "", 204


@bp.get("/<uuid:list_id>/videos")
@require_user
@tag(["videos"])
@validate_querystring(VideosQuery)
@validate_response(VideosPage)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 404)
async def get_videos(list_id: uuid.UUID, query_args: VideosQuery) -> VideosPage:
    """Videos of a list with status, metadata, thumbnail_url and error, newest first,
    a page at a time.

    ``status`` keeps only videos in those states (comma-separated or repeated).  Pass
    ``next_cursor`` back as ``cursor`` for the next page; a malformed cursor is 400
    ``invalid_cursor``.
    """
    found = await owned_list(list_id)
    query = Video.filter(list_id=found.id)
    if query_args.status:
        query = query.filter(status__in=[VideoStatus(s) for s in query_args.status])
    try:
        rows, next_cursor = await newest_first(
            query, limit=query_args.limit, cursor=query_args.cursor
        )
    except BadCursor:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API returned") from None
    return VideosPage(items=[video_out(v) for v in rows], next_cursor=next_cursor)


def _job_spec(source: JobSource, options: JobOptions) -> JobSpec:
    return JobSpec(
        source=source,
        name=options.name,
        priority=JobPriority(options.priority or JobPriority.NORMAL),
    )


def _json_options(data: object, query: JobOptions) -> JobOptions:
    """``name``/``priority`` of a JSON import body (taken out of it), over the query's."""
    if not isinstance(data, dict):
        return query
    given = {key: data.pop(key) for key in ("name", "priority") if key in data}
    try:
        body = JobOptions.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ApiError(400, "validation_error", f"{field}: {first['msg']}") from None
    return query.model_copy(update=body.model_dump(exclude_unset=True))


def _too_large(what: str, limit: int) -> ApiError:
    return ApiError(413, "too_large", f"an import {what} may hold at most {byte_size(limit)}")


async def _read_limited(limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large("body", limit)
    data = bytearray()
    async for chunk in request.body:
        data.extend(chunk)
        if len(data) > limit:
            raise _too_large("body", limit)
    return bytes(data)


async def _import_items(options: JobOptions) -> tuple[list[NewVideo], JobSpec]:
    config = services().config
    max_rows = config.max_videos_per_job
    limit = max_import_bytes(max_rows)
    mimetype, _params = parse_options_header(request.headers.get("Content-Type", ""))
    if mimetype == "application/json":
        data = loads_request_json(await _read_limited(limit))
        spec = _job_spec(JobSource.JSON, _json_options(data, options))
        return parse_json(data, import_root=config.import_root, max_rows=max_rows), spec
    spec = _job_spec(JobSource.CSV, options)
    if mimetype in CSV_TYPES:
        raw = await _read_limited(limit)
        return parse_csv(raw, import_root=config.import_root, max_rows=max_rows), spec
    if mimetype == "multipart/form-data":
        if request.content_length is not None and request.content_length > limit:
            raise _too_large("body", limit)
        files = await request.files
        upload = files.get("file")
        if upload is None:
            raise ApiError(400, "missing_file", "send the CSV in multipart field 'file'")
        raw = upload.read(limit + 1)
        if len(raw) > limit:
            raise _too_large("file", limit)
        return parse_csv(raw, import_root=config.import_root, max_rows=max_rows), spec
    raise ApiError(
        415,
        "unsupported_media_type",
        "send text/csv, multipart/form-data with a 'file', or application/json",
    )


def _rejected(exc: ImportRejected) -> ApiError:
    details: dict[str, Any] = {}
    if exc.rows:
        details["rows"] = [r.to_json() for r in exc.rows]
    return ApiError(400, exc.code, exc.message, **details)


def _import_body_limit(config: Config) -> int:
    # the documented import size, plus room for a multipart envelope around the CSV
    return max_import_bytes(config.max_videos_per_job) + MULTIPART_ENVELOPE_BYTES


@bp.post("/<uuid:list_id>/videos/bulk")
@body_limit(_import_body_limit)
@require_user
@tag(["videos"])
@validate_querystring(JobOptions)
@document_request(BulkJsonIn)
@validate_response(ImportAccepted, 202)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 404)
@document_response(ErrorOut, 503)
async def bulk_import(list_id: uuid.UUID, query_args: JobOptions) -> tuple[ImportAccepted, int]:
    """Import videos from a CSV (``url,title`` header; a text/csv body or multipart
    ``file``) or JSON ``{"videos": [{"url", "title"}], "name", "priority"}``.

    Each url is an http(s) URL or a path inside IMPORT_ROOT.  Any bad row: 400 listing
    every bad row (``rows``: row number from 1, field, error) and nothing is created.
    The job's ``name`` and ``priority`` come from the query (any body) or the JSON body
    (which wins); without a name it is "CSV import · N videos" / "JSON import · N videos".
    """
    found = await owned_list(list_id)
    try:
        items, spec = await _import_items(query_args)
    except ImportRejected as exc:
        raise _rejected(exc) from None
    job = await submit_for_user(services(), found, items, spec)
    return ImportAccepted(job_id=job.id, total_videos=len(items)), 202


@bp.post("/<uuid:list_id>/videos/upload")
@body_limit(lambda config: config.max_request_bytes)  # streamed to disk
@require_user
@tag(["videos"])
@validate_response(ImportAccepted, 202)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 404)
@document_response(ErrorOut, 408)
@document_response(ErrorOut, 413)
@document_response(ErrorOut, 429)
@validate_querystring(JobOptions)
async def upload(list_id: uuid.UUID, query_args: JobOptions) -> tuple[ImportAccepted, int]:
    """Upload video files (multipart, field ``file``, repeatable); each becomes a video
    of one new job.  A file over MAX_UPLOAD_BYTES: 413 and nothing is kept.  More than
    UPLOADS_PER_ADDRESS uploads at once from one address: 429 with Retry-After; a body
    that stalls or trickles (BODY_READ_TIMEOUT, BODY_MIN_RATE): 408.

    The job's ``name`` and ``priority`` are query parameters; without a name it is
    "Upload · N files"."""
    found = await owned_list(list_id)
    config = services().config
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    boundary = options.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary:
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data")
    slots = upload_slots(config.uploads_per_address, services().redis)
    async with slots.hold(client_address()):
        items, batch = await receive_uploads(
            request.body,
            boundary.encode("latin-1"),
            media_root=config.media_root,
            user_id=current_user_id(),
            list_id=found.id,
            max_file_bytes=config.max_upload_bytes,
            max_files=config.max_videos_per_job,
        )
    try:
        job = await submit_for_user(
            services(), found, items, _job_spec(JobSource.UPLOAD, query_args)
        )
    except ApiError as exc:
        if exc.status != 503:  # 503: the job exists (failed); keep its files consistent
            shutil.rmtree(batch, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(batch, ignore_errors=True)
        raise
    return ImportAccepted(job_id=job.id, total_videos=len(items)), 202
