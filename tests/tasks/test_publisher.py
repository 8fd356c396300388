"""The publisher's failure accounting: a failed publish is counted, the event is stored."""

from __future__ import annotations

import uuid
from typing import Any

from models.entities import JobStatus, ProcessingJob, User, VideoList
from models.history import events_after
from quart_app.core import metrics
from socket_layer.emitter import PublishError
from tasks.publisher import JobPublisher
from tests.support.builders import video_event


def _process_publish_failures() -> float:
    """This process's publish failure counter, as ``/metrics`` shows it."""
    text = metrics.generate()[0].decode()
    return metrics.sample_value(text, "reeltrack_progress_publish_failures_total") or 0.0


class DownEmitter:
    async def publish_progress(self, user_id: object, event: dict[str, Any]) -> None:
        raise PublishError("redis down")


async def test_failed_publish_is_counted_and_the_event_is_still_in_history(db: str) -> None:
    user = await User.create(username=f"pub{uuid.uuid4().hex[:10]}", password_hash="x")
    vlist = await VideoList.create(owner=user, name="l")
    job = await ProcessingJob.create(
        list=vlist, owner=user, status=JobStatus.PROCESSING, total_videos=2
    )
    before = _process_publish_failures()
    pub = JobPublisher(
        job_id=job.id,
        owner_id=user.id,
        last_seq=0,
        total_videos=2,
        emitter=DownEmitter(),
        buffer_size=10,
    )
    for n in (1, 2):
        await pub.send(video_event(pub, n))
    assert pub.stats.publish_failures == 2 and pub.stats.events_published == 0
    assert pub.stats.events_persisted == 2 and pub.stats.persist_failures == 0
    assert _process_publish_failures() == before + 2  # the process's metric too
    assert [e["seq"] for e in await events_after(job.id)] == [1, 2]
    assert await pub.drain(1.0)
