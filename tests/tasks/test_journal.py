"""The journal of published-but-unpersisted events (tasks/journal.py) and the publisher's
rule around it: an event is published only once it is durable (DB or journal).

The publisher tests use fakes (a failing ``record_event``, a recording journal and
emitter) and need neither PostgreSQL nor Redis; the journal and recovery tests run
against the session Redis and PostgreSQL.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from models.entities import JobProgressEvent, JobStatus, ProcessingJob
from models.events import ProgressEvent
from models.history import events_after, record_event
from quart_app.core.config import REDIS_KEY_PREFIX, Config
from tasks import publisher as publisher_module
from tasks.journal import (
    JOURNAL_TTL_SECONDS,
    JournalError,
    RedisJournal,
    journal_key,
    recover,
)
from tasks.processing import run_job
from tasks.publisher import JobPublisher
from tasks.stale import fail_job
from tests.support.builders import (
    event_for,
    make_job,
    make_list,
    make_user,
    place_videos,
    seed_job,
    video_event,
)
from tests.support.services import free_port

# -- fakes ------------------------------------------------------------------------------------


class Recorder:
    """One ordered log of what the fakes below were asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []


class FakeEmitter:
    def __init__(self, log: Recorder) -> None:
        self.log = log

    async def publish_progress(self, user_id: object, event: dict[str, Any]) -> None:
        self.log.calls.append(("publish", int(event["seq"])))


class FakeJournal:
    def __init__(self, log: Recorder) -> None:
        self.log = log
        self.down = False
        self.stored: dict[int, dict[str, Any]] = {}

    async def put(self, event: ProgressEvent) -> None:
        if self.down:
            raise JournalError("redis down")
        self.log.calls.append(("journal", event.seq))
        self.stored[event.seq] = event.to_wire()

    async def remove(self, job_id: uuid.UUID, seqs: Any) -> None:
        if self.down:
            raise JournalError("redis down")
        for seq in seqs:
            self.log.calls.append(("unjournal", seq))
            self.stored.pop(seq, None)

    async def entries(self, job_id: uuid.UUID) -> dict[int, dict[str, Any]]:
        return dict(self.stored)

    async def clear(self, job_id: uuid.UUID) -> None:
        self.stored.clear()


class FakeDB:
    """Stands in for models.history.record_event: down -> raises like asyncpg does."""

    def __init__(self, log: Recorder) -> None:
        self.log = log
        self.down = False

    async def record_event(self, event: ProgressEvent, **_: Any) -> bool:
        if self.down:
            raise ConnectionRefusedError("db down")
        self.log.calls.append(("store", event.seq))
        return True


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> tuple[Recorder, FakeDB, FakeJournal]:
    log = Recorder()
    db = FakeDB(log)
    monkeypatch.setattr(publisher_module, "record_event", db.record_event)
    return log, db, FakeJournal(log)


def _publisher(log: Recorder, journal: FakeJournal | None) -> JobPublisher:
    return JobPublisher(
        job_id=uuid.uuid4(),
        owner_id=uuid.uuid4(),
        last_seq=1,
        total_videos=10,
        emitter=FakeEmitter(log),
        buffer_size=100,
        retry_interval=3600,  # the background loop never runs: flushes are explicit
        journal=journal,
    )


async def _flush(pub: JobPublisher) -> bool:
    async with pub._lock:
        return await pub._flush_locked()


# -- the publisher's rule -----------------------------------------------------------------------


async def test_failed_db_write_is_journaled_before_it_is_published(
    fakes: tuple[Recorder, FakeDB, FakeJournal],
) -> None:
    log, db, journal = fakes
    pub = _publisher(log, journal)
    await pub.send(video_event(pub, 1))  # seq 2: the DB takes it
    db.down = True
    await pub.send(video_event(pub, 2))  # seq 3
    await pub.send(video_event(pub, 3))  # seq 4
    assert log.calls == [
        ("store", 2),
        ("publish", 2),
        ("journal", 3),
        ("publish", 3),
        ("journal", 4),
        ("publish", 4),
    ]
    assert sorted(journal.stored) == [3, 4] and pub.backlog_size == 2
    assert pub.stats.events_journaled == 2 and pub.stats.publish_failures == 0
    await pub.drain(0)


async def test_when_the_journal_fails_too_the_event_is_not_published(
    fakes: tuple[Recorder, FakeDB, FakeJournal],
) -> None:
    log, db, journal = fakes
    pub = _publisher(log, journal)
    db.down = journal.down = True
    await pub.send(video_event(pub, 1))  # seq 2: neither stored nor journaled
    journal.down = False
    # seq 3 could be journaled now, but not without seq 2 before it (a recovery could
    # not store 3 without 2): it is not published either
    await pub.send(video_event(pub, 2))
    assert log.calls == []
    assert pub.stats.publish_failures == 2 and pub.stats.events_published == 0
    db.down = False
    assert await _flush(pub)
    assert log.calls == [("store", 2), ("store", 3)]
    await pub.send(video_event(pub, 3))  # back to normal: stored, then published
    assert log.calls[-2:] == [("store", 4), ("publish", 4)]
    assert await pub.drain(0)


async def test_flushed_backlog_events_leave_the_journal(
    fakes: tuple[Recorder, FakeDB, FakeJournal],
) -> None:
    log, db, journal = fakes
    pub = _publisher(log, journal)
    db.down = True
    for n in (1, 2, 3):
        await pub.send(video_event(pub, n))
    assert sorted(journal.stored) == [2, 3, 4]
    db.down = False
    assert await _flush(pub)
    assert journal.stored == {}
    assert log.calls[-6:] == [
        ("store", 2),
        ("store", 3),
        ("store", 4),
        ("unjournal", 2),
        ("unjournal", 3),
        ("unjournal", 4),
    ]
    assert pub.stats.events_replayed == 3
    assert await pub.drain(0)


async def test_without_a_journal_a_buffered_event_is_still_published(
    fakes: tuple[Recorder, FakeDB, FakeJournal],
) -> None:
    log, db, _journal = fakes
    pub = _publisher(log, None)
    db.down = True
    await pub.send(video_event(pub, 1))
    assert log.calls == [("publish", 2)] and pub.backlog_size == 1
    db.down = False
    assert await pub.drain(1)


# -- the Redis journal ------------------------------------------------------------------------


async def test_redis_journal_stores_lists_removes_with_a_ttl(redis_url: str) -> None:
    journal = RedisJournal.from_url(redis_url)
    raw = aioredis.Redis.from_url(redis_url)
    job_id = uuid.uuid4()
    try:
        events = [event_for(job_id, seq, progress=seq * 10) for seq in (2, 3, 4)]
        for event in events:
            await journal.put(event)
        key = journal_key(job_id)
        assert key == f"{REDIS_KEY_PREFIX}unpersisted:{job_id}"
        assert 0 < await raw.ttl(key) <= JOURNAL_TTL_SECONDS
        assert await journal.entries(job_id) == {e.seq: e.to_wire() for e in events}
        await raw.hset(key, "junk", "not json")  # logged and left out, never raised
        await journal.remove(job_id, [2, 3, 99])
        assert await journal.entries(job_id) == {4: events[2].to_wire()}
        await journal.clear(job_id)
        assert not await raw.exists(key)
    finally:
        await journal.close()
        await raw.aclose()


async def test_redis_journal_raises_journal_error_when_redis_is_unreachable() -> None:
    journal = RedisJournal.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=1.0)
    job_id = uuid.uuid4()
    try:
        with pytest.raises(JournalError):
            await journal.put(event_for(job_id, 2, progress=10))
        with pytest.raises(JournalError):
            await journal.entries(job_id)
    finally:
        await journal.close()


# -- recovery ----------------------------------------------------------------------------------


async def _claimed_job() -> ProcessingJob:
    """A job of 10 videos being processed, with no history yet."""
    return await make_job(await make_list(await make_user()), status=JobStatus.PROCESSING, events=0)


async def _store(job: ProcessingJob, event: ProgressEvent) -> None:
    assert await record_event(event, expect_status=JobStatus.PROCESSING)


async def test_recovery_stores_journaled_events_in_order_and_advances_last_seq(
    db: str, redis_url: str
) -> None:
    job = await _claimed_job()
    first = event_for(job.id, 1)
    await _store(job, first)
    journal = RedisJournal.from_url(redis_url)
    try:
        # seq 1 stored AND still journaled (its removal failed): equal, just dropped;
        # 4, 2, 3 written out of order: stored in seq order
        await journal.put(first)
        later = {seq: event_for(job.id, seq, progress=seq * 10) for seq in (4, 2, 3)}
        for event in later.values():
            await journal.put(event)
        result = await recover(journal, job.id, last_seq=1)
        assert [e.seq for e in result.recovered] == [2, 3, 4]
        assert result.last_seq == 4 and result.already_stored == 1
        assert result.conflicting == 0 and not result.refused
        history = await events_after(job.id)
        assert history == [first.to_wire()] + [later[s].to_wire() for s in (2, 3, 4)]
        stored = await ProcessingJob.get(id=job.id)
        assert stored.last_seq == 4 and stored.processed_videos == 3
        assert await journal.entries(job.id) == {}
    finally:
        await journal.close()


async def test_recovery_keeps_the_history_when_a_stored_row_differs_and_logs_it(
    db: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    job = await _claimed_job()
    await _store(job, event_for(job.id, 1))
    await _store(job, event_for(job.id, 2, progress=10))
    journal = RedisJournal.from_url(redis_url)
    try:
        await journal.put(event_for(job.id, 2, progress=20, message="another version"))
        await journal.put(event_for(job.id, 4, progress=40))  # after a hole (3 is missing)
        with caplog.at_level(logging.ERROR, logger="tasks.journal"):
            result = await recover(journal, job.id, last_seq=2)
        assert result.conflicting == 1 and result.unplaceable == 1
        assert result.recovered == [] and result.last_seq == 2
        assert "seq 2 differs" in caplog.text and "seq 4 follows a hole" in caplog.text
        history = await events_after(job.id)
        assert [(e["seq"], e["progress"]) for e in history] == [(1, 0), (2, 10)]
        assert await journal.entries(job.id) == {}
    finally:
        await journal.close()


async def test_recovery_for_a_deleted_job_stores_nothing_and_clears_the_journal(
    db: str, redis_url: str
) -> None:
    job = await _claimed_job()
    await _store(job, event_for(job.id, 1))
    journal = RedisJournal.from_url(redis_url)
    try:
        await journal.put(event_for(job.id, 2, progress=10))
        await ProcessingJob.filter(id=job.id).delete()
        result = await recover(journal, job.id, last_seq=1)
        assert result.refused and result.recovered == []
        assert not await JobProgressEvent.filter(job_id=job.id).exists()
        assert await journal.entries(job.id) == {}
    finally:
        await journal.close()


async def test_a_reclaimed_run_continues_after_the_recovered_events(
    db: str, redis_url: str, config: Callable[..., Config], samples: Path
) -> None:
    """A run died after publishing seq 2..3 (journaled, never stored) with 3 of 4 videos
    shown done; the next run stores them first, never goes below 75 %, and continues
    at seq 4."""
    cfg = config()
    items = place_videos(samples, cfg.import_root, 4)
    _user, job = await seed_job(items)
    await ProcessingJob.filter(id=job.id).update(status=JobStatus.PROCESSING)
    journal = RedisJournal.from_url(redis_url)
    shown = [
        event_for(job.id, 2, total=4, progress=50, current_video=2, processed_videos=2),
        event_for(job.id, 3, total=4, progress=75, current_video=3, processed_videos=3),
    ]
    publishers: list[JobPublisher] = []
    try:
        for event in shown:
            await journal.put(event)
        result = await run_job(job.id, cfg, journal=journal, on_publisher=publishers.append)
        assert await journal.entries(job.id) == {}
    finally:
        await journal.close()
    assert result == "completed"
    history = await events_after(job.id, limit=100)
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    assert history[1:3] == [e.to_wire() for e in shown]  # exactly what clients saw
    progress = [e["progress"] for e in history]
    assert progress == sorted(progress) and progress[3] >= 75 and progress[-1] == 100
    # the video rows said nothing was done: all 4 are processed (and reported) again
    assert len(history) == 1 + 2 + 4 + 1
    assert publishers[0].stats.events_recovered == 2


async def test_a_recovered_final_event_ends_the_job_without_a_new_run(
    db: str, redis_url: str, config: Callable[..., Config], samples: Path
) -> None:
    cfg = config()
    items = place_videos(samples, cfg.import_root, 2)
    _user, job = await seed_job(items)
    await ProcessingJob.filter(id=job.id).update(status=JobStatus.PROCESSING)
    journal = RedisJournal.from_url(redis_url)
    done = event_for(
        job.id, 2, total=2, status="completed", progress=100, current_video=2, processed_videos=2
    )
    try:
        await journal.put(done)
        assert await run_job(job.id, cfg, journal=journal) == "completed"
    finally:
        await journal.close()
    history = await events_after(job.id)
    assert history[-1] == done.to_wire() and len(history) == 2
    stored = await ProcessingJob.get(id=job.id)
    assert stored.status == JobStatus.COMPLETED and stored.last_seq == 2


async def test_the_stale_check_stores_the_journal_before_failing_the_job(
    db: str, redis_url: str
) -> None:
    """A run died, its retries are exhausted: the final ``failed`` event follows the
    events it had published (journaled, never stored), instead of reusing seq 2."""
    job = await _claimed_job()
    await _store(job, event_for(job.id, 1))
    log = Recorder()
    journal = RedisJournal.from_url(redis_url)
    shown = [event_for(job.id, seq, progress=seq * 10) for seq in (2, 3)]
    try:
        for event in shown:
            await journal.put(event)
        job = await ProcessingJob.get(id=job.id)
        assert await fail_job(job, FakeEmitter(log), "worker lost", journal=journal)
        assert await journal.entries(job.id) == {}
    finally:
        await journal.close()
    history = await events_after(job.id)
    assert history[1:3] == [e.to_wire() for e in shown]
    assert [(e["seq"], e["status"]) for e in history[3:]] == [(4, "failed")]
    assert history[3]["progress"] >= 30 and history[3]["processed_videos"] == 2
    assert log.calls == [("publish", 4)]  # published once stored
