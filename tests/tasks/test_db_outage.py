"""The DB unreachable mid-job: live events go on, and every event reaches the history."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from models.db import close_db, open_db
from models.entities import JobStatus, ProcessingJob, User, Video, VideoList, VideoStatus
from models.history import events_after
from quart_app.core.config import Config
from socket_layer.emitter import ProgressEmitter
from tasks.media import ProcessedMedia
from tasks.processing import default_processor, run_job
from tasks.publisher import JobPublisher
from tasks.submission import submit_job
from tests.support.builders import ChannelRecorder, place_videos, seqs
from tests.support.tcpproxy import TcpProxy, proxy_in_front_of


@pytest.fixture
async def proxied_db(pg_database_url: str) -> AsyncIterator[tuple[str, TcpProxy]]:
    """Tortoise opened THROUGH a cuttable proxy in front of the session database."""
    proxy, url = proxy_in_front_of(pg_database_url)
    await open_db(url)
    try:
        yield url, proxy
    finally:
        proxy.restore()
        await close_db()
        proxy.stop()


async def test_db_cut_mid_job_live_events_continue_history_complete_after_restore(
    proxied_db: tuple[str, TcpProxy], config: Callable[..., Config], samples: Path
) -> None:
    url, proxy = proxied_db
    cfg = config(database_url=url)
    items = place_videos(samples, cfg.import_root, 10)
    user = await User.create(username=f"outage{proxy.port}", password_hash="x")
    vlist = await VideoList.create(owner=user, name="list")
    assert cfg.redis_url
    recorder = await ChannelRecorder.start(cfg.redis_url, user.id)
    emitter = ProgressEmitter(cfg.redis_url)
    job = await submit_job(user.id, vlist.id, items, emitter=emitter, redis=None, enqueue=False)
    seen_live_during_cut: list[int] = []
    publishers: list[JobPublisher] = []

    async def processor(video: Video, c: Config) -> ProcessedMedia:
        n = video.position + 1
        if n == 3:
            proxy.cut()
        if n == 8:
            # events 3..7 were published while the DB was away
            seen_live_during_cut.extend(seqs(recorder.events))
            proxy.restore()
        return await default_processor(video, c)

    try:
        result = await run_job(
            job.id, cfg, processor=processor, emitter=emitter, on_publisher=publishers.append
        )
        published = await recorder.wait_for(lambda ev: len(ev) >= 12)
    finally:
        await recorder.stop()
        await emitter.close()
    assert result == "completed"
    assert seen_live_during_cut[-1] >= 7  # live view kept going during the outage
    assert proxy.connections_refused > 0  # the DB really was unreachable
    stats = publishers[0].stats
    assert stats.persist_failures >= 4 and stats.events_replayed >= 4
    assert stats.events_lost == 0 and stats.backlog == 0
    assert seqs(published) == list(range(1, 13))
    history = await events_after(job.id, limit=100)
    assert history == published  # every event, contiguous, identical to what went live
    stored = await ProcessingJob.get(id=job.id)
    assert stored.status == JobStatus.COMPLETED and stored.last_seq == 12
    ready = await Video.filter(job_id=job.id, status=VideoStatus.READY).count()
    assert ready == 10  # the video results buffered with the events landed too
