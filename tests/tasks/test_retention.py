"""Retention: old progress events are purged in bounded batches, on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from redis import Redis
from rq.cron import CronScheduler

from models.entities import JobProgressEvent, JobStatus, ProcessingJob, User, VideoList
from models.events import ProgressEvent, utcnow
from quart_app.core.config import Config
from tasks import retention
from tests.conftest import tortoise_open
from tests.support.services import RedisServer, free_port
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess


@pytest.fixture
async def db(any_database_url: str) -> AsyncIterator[str]:
    """Tortoise open on each supported database in turn (overrides the PostgreSQL-only
    ``db`` of tests/conftest.py)."""
    async with tortoise_open(any_database_url) as url:
        yield url


async def make_job(n_events: int, age_days: float, first_seq: int = 1) -> ProcessingJob:
    """A user, list and completed job with ``n_events`` events created ``age_days`` ago."""
    user = await User.create(username=f"u-{uuid.uuid4().hex[:10]}", password_hash="x")
    vlist = await VideoList.create(owner=user, name="list")
    job = await ProcessingJob.create(
        list=vlist, owner=user, status=JobStatus.COMPLETED, total_videos=n_events
    )
    await add_events(job, range(first_seq, first_seq + n_events), age_days)
    return job


async def add_events(job: ProcessingJob, seqs: range, age_days: float) -> None:
    created = utcnow() - timedelta(days=age_days)
    rows = []
    for seq in seqs:
        event = ProgressEvent(
            job_id=job.id,
            seq=seq,
            status="processing",
            progress=0,
            current_video=0,
            total_videos=job.total_videos,
            processed_videos=0,
            failed_videos=0,
            message=f"event {seq}",
            created_at=created + timedelta(milliseconds=seq),
        )
        rows.append(
            JobProgressEvent(
                job_id=job.id,
                seq=seq,
                created_at=event.created_at,
                progress_data=event.to_wire(),
            )
        )
    await JobProgressEvent.bulk_create(rows)
    await ProcessingJob.filter(id=job.id).update(last_seq=seqs[-1])


class StatementLog(logging.Handler):
    """Collects the SQL Tortoise sends (its db_client logger logs every query at DEBUG)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.statements.append(str(record.args[0]) if record.args else record.getMessage())

    def deletes(self) -> list[str]:
        return [s for s in self.statements if s.lstrip().upper().startswith("DELETE")]


@pytest.fixture
def sql_log() -> Any:
    logger = logging.getLogger("tortoise.db_client")
    handler = StatementLog()
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


async def test_backdated_events_are_purged_in_batches_recent_kept_jobs_kept(
    db: str, sql_log: StatementLog
) -> None:
    old_job = await make_job(23, age_days=40)
    mixed_job = await make_job(5, age_days=31)  # seq 1..5 old ...
    await add_events(mixed_job, range(6, 9), age_days=1)  # ... seq 6..8 recent
    recent_job = await make_job(4, age_days=29)
    ours = [old_job.id, mixed_job.id, recent_job.id]

    batches: list[int] = []
    deleted = await retention.purge_history(30, batch_size=7, on_batch=batches.append)

    # other tests may share this database: only count what is ours where it matters
    assert deleted >= 28
    assert batches[:4] == [7, 7, 7, 7] and all(0 < b <= 7 for b in batches)
    assert sum(batches) == deleted
    # exactly one DELETE statement per batch (plus none for the final empty probe: the
    # loop stops after a short batch), each of the bounded subquery form
    deletes = sql_log.deletes()
    assert len(deletes) in (len(batches), len(batches) + 1)
    assert all("LIMIT" in s.upper() and " IN (" in s.upper() for s in deletes)

    left = await JobProgressEvent.filter(job_id__in=ours).order_by("job_id", "seq")
    by_job: dict[Any, list[int]] = {}
    for row in left:
        by_job.setdefault(row.job_id, []).append(row.seq)
    assert old_job.id not in by_job
    assert by_job[mixed_job.id] == [6, 7, 8]
    assert by_job[recent_job.id] == [1, 2, 3, 4]
    # job rows (status, counters, last_seq) survive their events
    jobs = {j.id: j for j in await ProcessingJob.filter(id__in=ours)}
    assert set(jobs) == set(ours)
    assert jobs[old_job.id].last_seq == 23 and jobs[old_job.id].status == JobStatus.COMPLETED

    # nothing old is left: a second run deletes nothing
    assert await retention.purge_history(30, batch_size=7) == 0


async def test_exact_multiple_of_batch_size_stops_after_an_empty_batch(
    db: str, sql_log: StatementLog
) -> None:
    await retention.purge_history(30)  # start from nothing old (shared database)
    sql_log.statements.clear()
    await make_job(10, age_days=45)
    batches: list[int] = []
    assert await retention.purge_history(30, batch_size=5, on_batch=batches.append) == 10
    assert batches == [5, 5]
    assert len(sql_log.deletes()) == 3  # two full batches, one empty probe


async def test_dry_run_counts_and_deletes_nothing(db: str, sql_log: StatementLog) -> None:
    await retention.purge_history(30)
    job = await make_job(6, age_days=90)
    sql_log.statements.clear()
    assert await retention.purge_history(30, dry_run=True) == 6
    assert sql_log.deletes() == []
    assert await JobProgressEvent.filter(job_id=job.id).count() == 6
    assert await retention.count_purgeable(30) == 6
    assert await retention.count_purgeable(100) == 0


@pytest.mark.parametrize("days", [0, -1, 1.5, True])
async def test_bad_retention_is_refused(days: Any) -> None:
    with pytest.raises(ValueError):
        await retention.purge_history(days)


async def test_bad_batch_size_is_refused(db: str) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        await retention.purge_history(30, batch_size=0)


# --- the CLI ---------------------------------------------------------------------------


@pytest.fixture
def cli_config(any_database_url: str, make_config: Callable[..., Config]) -> Config:
    return make_config(any_database_url, retention_days=30)


async def _seed(database_url: str, n_old: int, n_recent: int, old_days: int) -> uuid.UUID:
    async with tortoise_open(database_url):
        await retention.purge_history(1)  # a clean slate of old events
        job = await make_job(n_old, age_days=old_days)
        await add_events(job, range(n_old + 1, n_old + n_recent + 1), age_days=0.01)
        return job.id


async def _count(database_url: str, job_id: uuid.UUID) -> int:
    async with tortoise_open(database_url):
        return await JobProgressEvent.filter(job_id=job_id).count()


def _run_cli(config: Config, *args: Any, **kwargs: Any) -> int:
    # purge_history_command calls asyncio.run: it needs a thread without a running loop
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(retention.purge_history_command, config, *args, **kwargs).result()


async def test_command_defaults_to_configured_retention_and_prints_counts(
    cli_config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = await _seed(cli_config.database_url, n_old=8, n_recent=3, old_days=35)

    assert _run_cli(cli_config, None, dry_run=True) == 0
    assert "dry run: 8 progress events older than 30 days" in capsys.readouterr().out
    assert await _count(cli_config.database_url, job_id) == 11

    assert _run_cli(cli_config.with_overrides(retention_days=40)) == 0
    assert "purged 0 progress events older than 40 days" in capsys.readouterr().out

    assert _run_cli(cli_config) == 0
    assert "purged 8 progress events older than 30 days" in capsys.readouterr().out
    assert await _count(cli_config.database_url, job_id) == 3


async def test_command_older_than_overrides_config(
    cli_config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = await _seed(cli_config.database_url, n_old=4, n_recent=2, old_days=3)
    assert _run_cli(cli_config, 2) == 0
    assert "purged 4 progress events older than 2 days" in capsys.readouterr().out
    assert await _count(cli_config.database_url, job_id) == 2


@pytest.mark.parametrize("days", [0, -5])
def test_command_refuses_bad_days_clearly(
    make_config: Callable[..., Config],
    sqlite_database_url: str,
    days: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = make_config(sqlite_database_url)
    assert retention.purge_history_command(config, days) == 2
    err = capsys.readouterr().err
    assert "error: older-than must be at least 1 day" in err


def test_command_reports_unreachable_database(
    make_config: Callable[..., Config], capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(f"postgres://postgres@127.0.0.1:{free_port()}/nothing")
    assert _run_cli(config) == 1
    assert "error: purge failed" in capsys.readouterr().err


def test_cli_dispatches_purge_history(
    make_config: Callable[..., Config], sqlite_database_url: str, monkeypatch: Any
) -> None:
    """``reeltrack purge-history --older-than 0`` reaches our command and fails clearly."""
    from quart_app import cli

    seen: dict[str, Any] = {}

    def fake(config: Config, older_than_days: int | None = None, dry_run: bool = False) -> int:
        seen.update(days=older_than_days, dry_run=dry_run)
        return 0

    monkeypatch.setattr(retention, "purge_history_command", fake)
    monkeypatch.setenv("DATABASE_URL", sqlite_database_url)
    monkeypatch.setenv("SECRET_KEY", "x" * 32)
    assert cli.main(["purge-history", "--older-than", "12", "--dry-run"]) == 0
    assert seen == {"days": 12, "dry_run": True}


# --- the cron job ----------------------------------------------------------------------


@pytest.fixture
def worker_config(cli_config: Config, monkeypatch: Any) -> Iterator[Config]:
    """``cli_config`` as the worker's, with today's purge not yet claimed."""
    monkeypatch.setattr(retention, "_worker_config", cli_config)
    assert cli_config.redis_url
    redis = Redis.from_url(cli_config.redis_url)
    claim = retention.DAY_CLAIM_KEY.format(utcnow().date().isoformat())
    redis.delete(claim)
    yield cli_config
    redis.delete(claim)
    redis.close()


def _run_cron_job() -> int:
    # RQ runs an async job with asyncio.run in the work-horse: do the same
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, retention.purge_history_job()).result()


async def test_cron_job_purges_with_the_worker_config(worker_config: Config) -> None:
    job_id = await _seed(worker_config.database_url, n_old=5, n_recent=1, old_days=31)
    assert _run_cron_job() == 5
    assert await _count(worker_config.database_url, job_id) == 1


async def test_the_cron_job_runs_once_a_day_however_many_schedulers_enqueue_it(
    worker_config: Config,
) -> None:
    """Each worker's cron scheduler enqueues the purge: the day's second run (another
    worker's copy) leaves events that became purgeable meanwhile for tomorrow."""
    first = await _seed(worker_config.database_url, n_old=5, n_recent=1, old_days=31)
    assert _run_cron_job() == 5
    assert await _count(worker_config.database_url, first) == 1
    async with tortoise_open(worker_config.database_url):
        second = (await make_job(3, age_days=31)).id
    assert _run_cron_job() == 0
    assert await _count(worker_config.database_url, second) == 3
    assert worker_config.redis_url
    claim = retention.DAY_CLAIM_KEY.format(utcnow().date().isoformat())
    assert 0 < Redis.from_url(worker_config.redis_url).ttl(claim) <= retention.DAY_CLAIM_TTL_S


async def test_a_failed_cron_run_gives_the_day_back(
    worker_config: Config, monkeypatch: Any
) -> None:
    async def failing(*args: Any, **kwargs: Any) -> int:
        raise ConnectionError("database down")

    job_id = await _seed(worker_config.database_url, n_old=2, n_recent=1, old_days=31)
    with monkeypatch.context() as patched:
        patched.setattr(retention, "_purge_with_db", failing)
        with pytest.raises(ConnectionError):
            _run_cron_job()
    assert _run_cron_job() == 2  # the duplicate, later, does the work
    assert await _count(worker_config.database_url, job_id) == 1


def test_register_cron_schedules_a_daily_job_on_the_worker_queue(redis_url: str) -> None:
    scheduler = CronScheduler(connection=Redis.from_url(redis_url))
    cron_job = retention.register_cron(scheduler)
    assert scheduler.get_jobs() == [cron_job]
    assert cron_job.func is retention.purge_history_job
    assert cron_job.queue_name == retention.CRON_QUEUE == "maintenance"
    assert cron_job.cron == retention.CRON_SCHEDULE
    first = cron_job.get_next_enqueue_time()
    assert timedelta(0) < first - utcnow() <= timedelta(days=1)


async def test_reeltrack_worker_registers_the_daily_purge(
    make_config: Callable[..., Config], sqlite_database_url: str, own_redis: RedisServer
) -> None:
    """A real ``reeltrack worker`` process (on its own Redis: it must not take others'
    jobs): its cron scheduler, as RQ records it in Redis, carries the daily purge on
    queue ``maintenance``."""
    config = make_config(sqlite_database_url, redis_url=own_redis.url)
    worker = WorkerProcess(config, name="retention-worker")
    redis = Redis.from_url(own_redis.url)

    def purge_jobs() -> list[dict[str, Any]]:
        assert worker.alive(), "reeltrack worker exited:\n" + worker.output()
        return [
            job.to_dict()
            for scheduler in CronScheduler.all(redis)
            for job in scheduler.get_jobs()
            if job.func_name == "tasks.retention.purge_history_job"
        ]

    try:
        await wait_for(lambda: bool(purge_jobs()), 30, "a cron scheduler with the purge job")
        jobs = purge_jobs()
        assert len(jobs) == 1, jobs
        assert jobs[0]["cron"] == retention.CRON_SCHEDULE
        assert jobs[0]["queue_name"] == "maintenance"
    finally:
        worker.close()
