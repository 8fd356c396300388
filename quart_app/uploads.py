"""Streaming multipart uploads of video files to ``MEDIA_ROOT/uploads/<user>/<batch>/``.

The body is parsed chunk by chunk (werkzeug's sans-IO multipart decoder) and each file
is written straight to disk, so memory stays bounded whatever the file size.  A file
larger than ``MAX_UPLOAD_BYTES`` or more than ``MAX_VIDEOS_PER_JOB`` files aborts the
upload and removes everything written for it.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData
from werkzeug.utils import secure_filename

from models.jobs import NewVideo
from quart_app.errors import ApiError
from quart_app.import_parsing import MAX_TITLE_LENGTH

#: form fields other than files (e.g. a title) are small; cap them
MAX_FIELD_BYTES = 64 * 1024
UPLOAD_FIELDS = ("file", "files")


def upload_dir(media_root: Path, user_id: uuid.UUID, list_id: uuid.UUID) -> Path:
    """Where the uploads of one list live (removed with the list)."""
    return media_root / "uploads" / str(user_id) / str(list_id)


@dataclass
class _Saved:
    path: Path
    title: str


async def receive_uploads(
    body: AsyncIterable[bytes],
    boundary: bytes,
    *,
    media_root: Path,
    user_id: uuid.UUID,
    list_id: uuid.UUID,
    max_file_bytes: int,
    max_files: int,
) -> tuple[list[NewVideo], Path]:
    """Save every file part of the body under ``upload_dir(...)/<batch>/``; return one
    item per file (source ``upload:<path relative to MEDIA_ROOT>``) and the batch dir.

    Raises ApiError: 413 for a file over ``max_file_bytes``, 400 for too many files, no
    file, or a malformed body.  On any error the batch directory is removed.
    """
    batch = upload_dir(media_root, user_id, list_id) / uuid.uuid4().hex
    batch.mkdir(parents=True, exist_ok=False)
    try:
        saved = await _stream(body, boundary, batch, max_file_bytes, max_files)
    except BaseException:
        shutil.rmtree(batch, ignore_errors=True)
        raise
    if not saved:
        shutil.rmtree(batch, ignore_errors=True)
        raise ApiError(400, "no_files", "send video files in multipart field 'file'")
    items = [
        NewVideo("upload:" + s.path.relative_to(media_root).as_posix(), s.title) for s in saved
    ]
    return items, batch


async def _stream(
    body: AsyncIterable[bytes], boundary: bytes, batch: Path, max_file_bytes: int, max_files: int
) -> list[_Saved]:
    decoder = MultipartDecoder(boundary, max_form_memory_size=MAX_FIELD_BYTES)
    saved: list[_Saved] = []
    out: IO[bytes] | None = None
    written = 0
    field_bytes = 0
    in_file = False
    try:
        async for chunk in body:
            decoder.receive_data(chunk)
            while True:
                try:
                    event = decoder.next_event()
                except ValueError as exc:
                    message = f"malformed multipart body: {exc}"
                    raise ApiError(400, "invalid_multipart", message) from None
                if isinstance(event, NeedData | Epilogue):
                    break
                if isinstance(event, File):
                    in_file = event.name in UPLOAD_FIELDS
                    if not in_file:
                        continue
                    if len(saved) >= max_files:
                        raise ApiError(
                            400,
                            "too_many_files",
                            f"more than {max_files} files (MAX_VIDEOS_PER_JOB)",
                        )
                    original = event.filename or "video"
                    safe = secure_filename(original) or "video"
                    path = batch / f"{len(saved):04d}-{safe[-150:]}"
                    out = path.open("wb")
                    written = 0
                    title = PurePosixPath(original.replace("\\", "/")).stem or safe
                    saved.append(_Saved(path, title[:MAX_TITLE_LENGTH]))
                elif isinstance(event, Field):
                    in_file = False
                    field_bytes = 0
                elif isinstance(event, Data):
                    if in_file and out is not None:
                        written += len(event.data)
                        if written > max_file_bytes:
                            raise ApiError(
                                413,
                                "file_too_large",
                                f"a file is larger than {max_file_bytes} bytes (MAX_UPLOAD_BYTES)",
                                filename=saved[-1].path.name[5:],
                            )
                        out.write(event.data)
                        if not event.more_data:
                            out.close()
                            out = None
                    elif not in_file:
                        field_bytes += len(event.data)
                        if field_bytes > MAX_FIELD_BYTES:
                            raise ApiError(413, "field_too_large", "a form field is too large")
        if out is not None:
            raise ApiError(400, "invalid_multipart", "the multipart body ended inside a file")
    finally:
        if out is not None:
            out.close()
    return saved
