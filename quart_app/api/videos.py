"""Single videos and their thumbnails."""

from __future__ import annotations

import uuid
from pathlib import Path

from quart import Blueprint, Response, send_file
from quart_schema import document_response, tag, validate_response

from models.entities import Video
from quart_app.api.schemas import ErrorOut, VideoOut
from quart_app.auth import current_user_id, require_user
from quart_app.errors import ApiError
from quart_app.services import services

bp = Blueprint("videos", __name__, url_prefix="/api/videos")


def video_out(video: Video) -> VideoOut:
    return VideoOut(
        id=video.id,
        list_id=uuid.UUID(str(video.list_id)),
        job_id=uuid.UUID(str(video.job_id)) if video.job_id else None,
        position=video.position,
        source=video.source,
        title=video.title,
        status=str(video.status.value if hasattr(video.status, "value") else video.status),
        duration_s=video.duration_s,
        width=video.width,
        height=video.height,
        fps=video.fps,
        video_codec=video.video_codec,
        audio_codec=video.audio_codec,
        bitrate=video.bitrate,
        size_bytes=video.size_bytes,
        thumbnail_url=f"/api/videos/{video.id}/thumbnail" if video.thumbnail_path else None,
        error=video.error,
        created_at=video.created_at,
        processed_at=video.processed_at,
    )


async def owned_video(video_id: uuid.UUID) -> Video:
    """The current user's video, or ApiError 404 (also for another user's video)."""
    found = await Video.get_or_none(id=video_id, list__owner_id=current_user_id())
    if found is None:
        raise ApiError(404, "not_found", "no such video")
    return found


def thumbnail_file(media_root: Path, stored: str) -> Path | None:
    """The thumbnail file for a stored Video.thumbnail_path (relative to MEDIA_ROOT, or
    absolute inside it); None when it is missing or would lie outside MEDIA_ROOT."""
    root = media_root.resolve()
    candidate = Path(stored)
    path = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


@bp.get("/<uuid:video_id>")
@require_user
@tag(["videos"])
@validate_response(VideoOut)
@document_response(ErrorOut, 404)
async def get_video(video_id: uuid.UUID) -> VideoOut:
    return video_out(await owned_video(video_id))


@bp.get("/<uuid:video_id>/thumbnail")
@require_user
@tag(["videos"])
@document_response(ErrorOut, 404)
async def thumbnail(video_id: uuid.UUID) -> Response:
    """The video's JPEG thumbnail (owner only; 404 until the worker wrote it)."""
    video = await owned_video(video_id)
    path = (
        thumbnail_file(services().config.media_root, video.thumbnail_path)
        if video.thumbnail_path
        else None
    )
    if path is None:
        raise ApiError(404, "not_found", "no thumbnail for this video")
    response = await send_file(path, mimetype="image/jpeg", conditional=True)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response
