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
from quart_app.core.byte_sizes import byte_size
from quart_app.core.text import MAX_TITLE_LENGTH, clean_title
from quart_app.errors import ApiError

#: form fields other than files (e.g. a title) are small; cap them
MAX_FIELD_BYTES = 64 * 1024
#: the decoder is fed at most this much at a time and its events drained in between,
#: so it never holds more than this plus one boundary
FEED_BYTES = 64 * 1024
#: what the decoder may hold undecided (part headers without their end, a boundary
#: split across chunks); more is a malformed body, not an upload
MAX_DECODER_BUFFER = 256 * 1024
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


def upload_title(filename: str) -> str:
    """The title of an uploaded file: its name without folders and extension, put
    through the one title rule (:func:`quart_app.core.text.clean_title`).

    Raises ApiError 400 ``invalid_filename`` when the name holds a NUL or another
    control character (PostgreSQL cannot store NUL; CSV titles refuse them all).
    """
    try:
        return clean_title(PurePosixPath(filename.replace("\\", "/")).stem)
    except ValueError as exc:
        raise ApiError(400, "invalid_filename", f"file name {exc}") from None


class _Receiver:
    """Writes the file parts of one multipart body to ``batch`` as they are decoded."""

    def __init__(self, boundary: bytes, batch: Path, max_file_bytes: int, max_files: int):
        # no max_form_memory_size: werkzeug applies it to file parts too (every upload
        # of 64 KiB or more was refused); fields are capped here, the decoder's buffer
        # by feeding it FEED_BYTES at a time
        self.decoder = MultipartDecoder(boundary)
        self.batch = batch
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.saved: list[_Saved] = []
        self.out: IO[bytes] | None = None
        self.written = 0
        self.field_bytes = 0
        self.in_file = False

    def feed(self, data: bytes) -> None:
        self.decoder.receive_data(data)
        if len(self.decoder.buffer) > MAX_DECODER_BUFFER:
            raise ApiError(400, "invalid_multipart", "malformed multipart body")
        while True:
            try:
                event = self.decoder.next_event()
            except ValueError as exc:
                message = f"malformed multipart body: {exc}"
                raise ApiError(400, "invalid_multipart", message) from None
            if isinstance(event, NeedData | Epilogue):
                return
            if isinstance(event, File):
                self._open(event)
            elif isinstance(event, Field):
                self.in_file = False
                self.field_bytes = 0
            elif isinstance(event, Data):
                self._data(event)

    def _open(self, event: File) -> None:
        self.in_file = event.name in UPLOAD_FIELDS
        if not self.in_file:
            return
        if len(self.saved) >= self.max_files:
            raise ApiError(400, "too_many_files", f"more than {self.max_files} files in one upload")
        original = event.filename or "video"
        title = upload_title(original)
        safe = secure_filename(original) or "video"
        path = self.batch / f"{len(self.saved):04d}-{safe[-150:]}"
        self.out = path.open("wb")
        self.written = 0
        self.saved.append(_Saved(path, title or safe[:MAX_TITLE_LENGTH]))

    def _data(self, event: Data) -> None:
        if self.in_file and self.out is not None:
            self.written += len(event.data)
            if self.written > self.max_file_bytes:
                raise ApiError(
                    413,
                    "file_too_large",
                    f"a file is larger than the upload limit of {byte_size(self.max_file_bytes)}",
                    filename=self.saved[-1].path.name[5:],
                )
            self.out.write(event.data)
            if not event.more_data:
                self.out.close()
                self.out = None
        elif not self.in_file:
            self.field_bytes += len(event.data)
            if self.field_bytes > MAX_FIELD_BYTES:
                raise ApiError(413, "field_too_large", "a form field is too large")

    def close(self) -> None:
        if self.out is not None:
            self.out.close()


async def _stream(
    body: AsyncIterable[bytes], boundary: bytes, batch: Path, max_file_bytes: int, max_files: int
) -> list[_Saved]:
    receiver = _Receiver(boundary, batch, max_file_bytes, max_files)
    try:
        async for received in body:
            for start in range(0, len(received), FEED_BYTES):
                receiver.feed(received[start : start + FEED_BYTES])
        if receiver.out is not None:
            raise ApiError(400, "invalid_multipart", "the multipart body ended inside a file")
    finally:
        receiver.close()
    return receiver.saved
