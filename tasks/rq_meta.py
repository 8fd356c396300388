"""Progress in the RQ job's ``meta``, for rq-dashboard and ``rq info`` users.

RQ's way to report progress from inside a job is ``job.meta[...] = ...`` then
``job.save_meta()`` (one HSET on the job's hash).  :class:`RqMetaProgress` does that
for each progress event the run sends (so it is throttled like the events), off the
event loop and never blocking the run: while one write is in flight the next update
is skipped (the one after carries the newer state); the final update waits briefly
for the write before it.  A failing Redis only loses these updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from models.events import ProgressEvent

log = logging.getLogger(__name__)

#: seconds the final update waits for Redis
FINAL_WAIT_S = 2.0


class MetaJob(Protocol):
    """What is used of ``rq.job.Job``."""

    meta: dict[str, Any]

    def save_meta(self) -> None: ...


def meta_of(event: ProgressEvent) -> dict[str, Any]:
    """The meta keys written for ``event``."""
    return {
        "status": event.status,
        "progress": event.progress,
        "processed": event.processed_videos,
        "failed": event.failed_videos,
        "total": event.total_videos,
        "current_video": event.current_video,
        "current_video_title": event.video_title,
        "message": event.message,
        "seq": event.seq,
        "updated_at": event.to_wire()["created_at"],
    }


class RqMetaProgress:
    """Mirrors a run's progress events into its RQ job's meta."""

    def __init__(self, job: MetaJob) -> None:
        self.job = job
        self._inflight: asyncio.Future[None] | None = None

    def _save(self, values: dict[str, Any]) -> None:
        self.job.meta.update(values)
        self.job.save_meta()

    async def update(self, event: ProgressEvent) -> None:
        """Write ``event``'s progress (skipped while the previous write is in flight,
        except for a final event, which waits up to :data:`FINAL_WAIT_S` for it)."""
        if self._inflight is not None and not self._inflight.done():
            if not event.is_final:
                return
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._inflight), FINAL_WAIT_S)
            if not self._inflight.done():
                return
        future = asyncio.ensure_future(asyncio.to_thread(self._save, meta_of(event)))
        future.add_done_callback(_log_failure)
        self._inflight = future
        if event.is_final:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(future), FINAL_WAIT_S)


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.debug("RQ job meta not saved: %s", future.exception())
