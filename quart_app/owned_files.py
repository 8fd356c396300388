"""The files a video list owns under ``MEDIA_ROOT``, removed once its rows are gone.

A list owns its uploads (``MEDIA_ROOT/uploads/<owner>/<list>/``, every batch) and the
thumbnails of its videos (``MEDIA_ROOT/thumbnails/<video id>.jpg``).  A job owns no
file: its videos belong to the list and stay in it when the job is deleted, and so do
their files.  Files under ``IMPORT_ROOT`` belong to the operator and are never removed,
nor is anything outside ``MEDIA_ROOT``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from models.entities import Video, VideoList
from quart_app.core.config import Config
from quart_app.uploads import upload_dir
from tasks.media import thumbnail_path

log = logging.getLogger(__name__)

UPLOAD_PREFIX = "upload:"


@dataclass(frozen=True)
class ListFiles:
    """What to remove for one deleted list: its upload directory and single files."""

    directory: Path
    files: tuple[Path, ...]


async def files_of_list(config: Config, video_list: VideoList) -> ListFiles:
    """The files ``video_list`` owns, read from its rows (call before deleting them)."""
    rows = await Video.filter(list_id=video_list.id).values_list("id", "source", "thumbnail_path")
    files: list[Path] = []
    for video_id, source, recorded in rows:
        # the thumbnail's name follows from the id: also one a worker is writing now
        files.append(thumbnail_path(config, video_id))
        if recorded:
            files.append(config.media_root / recorded)
        if source.startswith(UPLOAD_PREFIX):
            files.append(config.media_root / source[len(UPLOAD_PREFIX) :])
    owner = uuid.UUID(str(video_list.owner_id))
    directory = upload_dir(config.media_root, owner, video_list.id)
    return ListFiles(directory, tuple(dict.fromkeys(files)))


def removable(config: Config, path: Path) -> bool:
    """Whether ``path`` (symlinks in its folders resolved) lies inside MEDIA_ROOT and not
    inside IMPORT_ROOT."""
    where = path.parent.resolve() / path.name
    media = config.media_root.resolve()
    imports = config.import_root.resolve()
    return where.is_relative_to(media) and where != media and not where.is_relative_to(imports)


def _remove(config: Config, owned: ListFiles) -> int:
    removed = 0
    for path in owned.files:
        if not removable(config, path):
            log.warning("not removing %s: outside MEDIA_ROOT or inside IMPORT_ROOT", path)
            continue
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s: %s", path, exc)
    directory = owned.directory
    if directory.exists() and removable(config, directory):

        def failed(_function: object, path: str, info: tuple[type, BaseException, object]) -> None:
            log.warning("could not remove %s: %s", path, info[1])

        shutil.rmtree(directory, onerror=failed)
        removed += 1
    return removed


async def remove_list_files(config: Config, owned: ListFiles) -> int:
    """Remove ``owned`` (off the event loop); returns how many files and directories
    went.  Never raises: a file that cannot be removed is logged and left."""
    try:
        return await asyncio.to_thread(_remove, config, owned)
    except Exception:
        log.exception("could not remove the files of a deleted list")
        return 0
