"""Retention of the progress history (DESIGN section 7).

Events older than ``PROGRESS_HISTORY_RETENTION_DAYS`` are deleted in bounded batches:
each batch is ONE statement, ``DELETE ... WHERE id IN (SELECT id ... WHERE created_at <
cutoff LIMIT n)``, in its own short transaction, so no batch holds row locks for long and
the publisher's INSERTs are never blocked behind a table-wide delete.  Job rows are kept
(they carry status and counters); only their old events go.

Three entry points:

* :func:`purge_history` — the async core (Tortoise must be open in this event loop);
* :func:`purge_history_command` — ``reeltrack purge-history [--older-than DAYS] [--dry-run]``;
* :func:`purge_history_job` — the daily RQ cron job, registered by ``reeltrack worker``
  through :func:`register_cron`.  Every worker has its own cron scheduler (two under
  ``reeltrack run``'s defaults, more across hosts), so each enqueues it: the first run
  of a UTC day claims that day in Redis and the others skip.

No Quart here (the worker imports this module).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import Subquery
from tortoise.transactions import in_transaction

from models.db import close_db, open_db
from models.entities import JobProgressEvent
from models.events import utcnow
from quart_app.core.config import REDIS_KEY_PREFIX, Config, ConfigError
from quart_app.core.redis_pools import PoolLimits, sync_client
from tasks.queue import MAINTENANCE_QUEUE

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 5000
#: daily at 03:17 UTC (off the hour, so many installations do not all purge at :00)
CRON_SCHEDULE = "17 3 * * *"
#: RQ job id prefix / cron job name, for operators looking at RQ
CRON_JOB_NAME = "reeltrack-purge-history"
#: RQ queue the cron job is enqueued on (every worker listens there by default)
CRON_QUEUE = MAINTENANCE_QUEUE
#: a purge job may take a while on a big backlog; it is batched, so a timeout only
#: stops it between batches' worth of work — the next day continues
CRON_JOB_TIMEOUT_S = 3600
#: claimed (SET NX) by the day's first cron run; {} is the UTC date
DAY_CLAIM_KEY = f"{REDIS_KEY_PREFIX}purge-history:ran:{{}}"
#: kept past the day it names, so a run late in the day still finds it
DAY_CLAIM_TTL_S = 2 * 86400


def days_text(days: int) -> str:
    """``1 day``, ``2 days``: the retention as the command and the log say it."""
    return "1 day" if days == 1 else f"{days} days"


def cutoff_for(older_than_days: int, now: datetime | None = None) -> datetime:
    """The instant before which events are purged; raises ValueError when days < 1."""
    if isinstance(older_than_days, bool) or not isinstance(older_than_days, int):
        raise ValueError(f"older-than must be a whole number of days, got {older_than_days!r}")
    if older_than_days < 1:
        raise ValueError(f"older-than must be at least 1 day, got {older_than_days}")
    return (now or utcnow()) - timedelta(days=older_than_days)


async def count_purgeable(older_than_days: int) -> int:
    """How many events :func:`purge_history` would delete now (nothing is changed)."""
    return await JobProgressEvent.filter(created_at__lt=cutoff_for(older_than_days)).count()


async def purge_history(
    older_than_days: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Delete progress events created more than ``older_than_days`` days ago.

    Returns the number of events deleted (with ``dry_run``: the number that would be,
    and nothing is deleted).  Works in batches of at most ``batch_size`` rows, each a
    single DELETE statement in its own transaction; ``on_batch(deleted)`` is called after
    each committed batch (tests count batches, the CLI could show progress).  Job rows
    are never deleted.  Tortoise must be open in the running event loop.

    Raises ValueError for ``older_than_days < 1`` or ``batch_size < 1``; database errors
    propagate (batches committed before the error stay deleted: the purge is resumable).
    """
    cutoff = cutoff_for(older_than_days)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if dry_run:
        return await JobProgressEvent.filter(created_at__lt=cutoff).count()
    total = 0
    while True:
        async with in_transaction():
            # One statement: the subquery picks at most batch_size old ids (via the
            # created_at index), the DELETE removes exactly those rows.
            oldest = JobProgressEvent.filter(created_at__lt=cutoff).limit(batch_size)
            deleted = await JobProgressEvent.filter(id__in=Subquery(oldest.values("id"))).delete()
        if deleted == 0:
            break
        total += deleted
        if on_batch is not None:
            on_batch(deleted)
        if deleted < batch_size:
            break
        # let other coroutines (heartbeats, the publisher) run between batches
        await asyncio.sleep(0)
    if total:
        log.info(
            "purged %d progress events older than %s",
            total,
            days_text(older_than_days),
            extra={"purged_events": total, "older_than_days": older_than_days},
        )
    return total


async def _purge_with_db(
    config: Config, older_than_days: int, dry_run: bool, batch_size: int
) -> int:
    await open_db(config.database_url)
    try:
        return await purge_history(older_than_days, batch_size=batch_size, dry_run=dry_run)
    finally:
        await close_db()


def purge_history_command(
    config: Config,
    older_than_days: int | None = None,
    dry_run: bool = False,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> int:
    """``reeltrack purge-history``: purge, print what was done, return the exit status.

    0 on success; 2 for bad input (``--older-than`` below 1), with the reason on stderr;
    1 when the database could not be reached or the purge failed midway.
    """
    days = config.retention_days if older_than_days is None else older_than_days
    try:
        cutoff = cutoff_for(days)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        count = asyncio.run(_purge_with_db(config, days, dry_run, batch_size))
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # DB unreachable or failing: report, do not trace back
        print(f"error: purge failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    when = cutoff.strftime("%Y-%m-%d %H:%M:%S UTC")
    if dry_run:
        print(f"dry run: {count} progress events older than {days_text(days)} (before {when})")
    else:
        print(f"purged {count} progress events older than {days_text(days)} (before {when})")
    return 0


#: the Config the worker runs with; set by the worker before it forks work-horses
_worker_config: Config | None = None


def configure(config: Config) -> None:
    """Give the cron job the worker's Config (else it reads the environment)."""
    global _worker_config
    _worker_config = config


async def purge_history_job(older_than_days: int | None = None) -> int:
    """The daily RQ cron job: purge with the worker's Config; returns the count deleted
    (0 when another worker's run claimed today already, see :data:`DAY_CLAIM_KEY`).

    Opens and closes Tortoise in this coroutine (RQ runs each async job in a fresh event
    loop).  Exceptions propagate so RQ marks the run failed; a failed run gives the day's
    claim back, so a duplicate enqueued by another scheduler may still do the work.
    """
    config = _worker_config or Config.from_env()
    days = config.retention_days if older_than_days is None else older_than_days
    purge = functools.partial(
        _purge_with_db, config, days, dry_run=False, batch_size=DEFAULT_BATCH_SIZE
    )
    if not config.redis_url:  # run by hand without a queue: nobody to share the day with
        return await purge()
    redis = sync_client(
        config.redis_url, PoolLimits.of(config), socket_timeout=5, socket_connect_timeout=5
    )
    claim = DAY_CLAIM_KEY.format(utcnow().date().isoformat())
    try:
        if not redis.set(claim, "1", nx=True, ex=DAY_CLAIM_TTL_S):
            log.info("history purge: today's run was claimed by another worker; skipped")
            return 0
        try:
            return await purge()
        except BaseException:
            redis.delete(claim)
            raise
    finally:
        redis.close()


def register_cron(scheduler: Any) -> Any:
    """Register :func:`purge_history_job` daily on an ``rq.cron.CronScheduler``.

    Returns the ``rq.cron.CronJob``.  ``reeltrack worker`` calls this once at start-up.
    """
    return scheduler.register(
        purge_history_job,
        queue_name=CRON_QUEUE,
        cron=CRON_SCHEDULE,
        job_timeout=CRON_JOB_TIMEOUT_S,
        name=CRON_JOB_NAME,
    )
