"""Single videos and their thumbnails."""

from __future__ import annotations

import uuid
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from quart import Blueprint, Response, request, send_file
from quart_schema import document_response, security_scheme, tag, validate_response

from models.entities import Video, VideoStatus
from quart_app.api.schemas import ErrorOut, VideoOut
from quart_app.core.config import Config
from quart_app.errors import ApiError
from quart_app.request_auth import BEARER_SCHEME, authenticate, current_user_id, require_user
from quart_app.services import services

bp = Blueprint("videos", __name__, url_prefix="/api/videos")
_THUMB_SALT = "reeltrack.thumbnail.v1"


def _thumb_signer(config: Config) -> TimestampSigner:
    return TimestampSigner(config.secret_key, salt=_THUMB_SALT)


def thumbnail_url(config: Config, video_id: object, owner_id: object) -> str:
    """A URL an ``<img>`` can load without an Authorization header: signed for this
    video and its owner, valid for ACCESS_TOKEN_TTL (a capability, like the token)."""
    signed = _thumb_signer(config).sign(f"{video_id}:{owner_id}").decode()
    stamp_mac = signed.rsplit(".", 2)
    return f"/api/videos/{video_id}/thumbnail?u={owner_id}&sig={stamp_mac[1]}.{stamp_mac[2]}"


def signed_owner(config: Config, video_id: uuid.UUID, owner: str, sig: str) -> uuid.UUID | None:
    """The owner id a valid, unexpired ``sig`` was issued to for ``video_id``, else None."""
    try:
        owner_id = uuid.UUID(owner)
        signed = f"{video_id}:{owner_id}.{sig}".encode()
        _thumb_signer(config).unsign(signed, max_age=config.access_token_ttl)
    except (ValueError, BadSignature, SignatureExpired):
        return None
    return owner_id


def video_out(video: Video) -> VideoOut:
    """The JSON of a video of the current user (inside a :func:`require_user` view)."""
    thumb = (
        thumbnail_url(services().config, video.id, current_user_id())
        if video.thumbnail_path
        else None
    )
    return VideoOut(
        id=video.id,
        list_id=uuid.UUID(str(video.list_id)),
        job_id=uuid.UUID(str(video.job_id)) if video.job_id else None,
        position=video.position,
        source=video.source,
        title=video.title,
        status=VideoStatus(video.status).value,
        duration_s=video.duration_s,
        width=video.width,
        height=video.height,
        fps=video.fps,
        video_codec=video.video_codec,
        audio_codec=video.audio_codec,
        bitrate=video.bitrate,
        size_bytes=video.size_bytes,
        thumbnail_url=thumb,
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
@tag(["videos"])
@security_scheme([{BEARER_SCHEME: []}])
@document_response(ErrorOut, 404)
async def thumbnail(video_id: uuid.UUID) -> Response:
    """The video's JPEG thumbnail, for its owner only: a bearer token, or the signed
    ``thumbnail_url`` from the video JSON (for ``<img>``).  404 for anyone else and
    until the worker wrote it."""
    config = services().config
    sig, owner = request.args.get("sig"), request.args.get("u")
    if sig and owner:
        owner_id = signed_owner(config, video_id, owner, sig)
        if owner_id is None:
            raise ApiError(404, "not_found", "no such video")
    else:
        owner_id = uuid.UUID(str((await authenticate(config)).id))
    video = await Video.get_or_none(id=video_id, list__owner_id=owner_id)
    path = (
        thumbnail_file(config.media_root, video.thumbnail_path)
        if video is not None and video.thumbnail_path
        else None
    )
    if path is None:
        raise ApiError(404, "not_found", "no thumbnail for this video")
    response = await send_file(path, mimetype="image/jpeg", conditional=True)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response
