"""``reeltrack worker``: an RQ worker on queues ``maintenance`` then ``videos`` (or the
ones given with ``--queues``) with RQ's scheduler and cron.

* the job module is imported here, in the parent, so forked work-horses start warm;
* ``with_scheduler=True`` runs RQ's scheduler (retries with an interval need it);
* a cron child process (``rq.cron.CronScheduler``) enqueues the stale-job check every
  STALE_JOB_SECONDS/2 and the daily retention purge on ``maintenance``.  It exits with
  its parent.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import time
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.cron import CronScheduler

import tasks.processing  # noqa: F401  (imported in the parent: forked horses start warm)
from quart_app.core.config import Config
from tasks import retention
from tasks.queue import MAINTENANCE_QUEUE, WORKER_QUEUES
from tasks.stale import check_interval, check_stale_jobs_job

log = logging.getLogger(__name__)


def register_cron_jobs(scheduler: CronScheduler, config: Config) -> None:
    """The periodic jobs of reeltrack on ``scheduler``."""
    scheduler.register(
        check_stale_jobs_job,
        queue_name=MAINTENANCE_QUEUE,
        interval=check_interval(config),
        job_timeout=300,
        result_ttl=600,
        name="reeltrack-stale-jobs",
    )
    retention.register_cron(scheduler)


def _cron_main(config: Config, parent_pid: int) -> None:
    """The cron child: RQ's CronScheduler loop, stopping when the parent is gone."""
    assert config.redis_url
    scheduler = CronScheduler(Redis.from_url(config.redis_url), logging_level=config.log_level)
    register_cron_jobs(scheduler, config)
    scheduler.register_birth()
    try:
        while os.getppid() == parent_pid:
            try:
                if scheduler.enqueue_jobs():
                    scheduler.save()
                scheduler.heartbeat()  # re-registers after a Redis restart
            except RedisError as exc:
                # Redis is restarting: keep the schedule (a due job stays due) and try
                # again, or this worker would never run the stale-job check again
                log.warning("cron: Redis unavailable (%s); retrying", exc)
                time.sleep(1.0)
                continue
            time.sleep(min(1.0, max(0.05, scheduler.calculate_sleep_interval())))
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(RedisError):
            scheduler.register_death()


def start_cron(config: Config) -> Any:
    """Start the cron child process; returns it (call ``terminate()`` to stop it)."""
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_cron_main, args=(config, os.getpid()), name="reeltrack-cron")
    proc.daemon = True
    proc.start()
    return proc


def run_worker(config: Config, burst: bool = False, queues: tuple[str, ...] = WORKER_QUEUES) -> int:
    """Run the worker on ``queues`` (in priority order) until SIGTERM/SIGINT (or until
    they are empty with ``burst``).

    Returns the process exit code; 2 when REDIS_URL is not set.
    """
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not config.redis_url:
        print("error: REDIS_URL is required for `reeltrack worker`")
        return 2
    retention.configure(config)
    redis = Redis.from_url(config.redis_url)
    worker = Worker([Queue(name, connection=redis) for name in queues], connection=redis)
    cron = None if burst else start_cron(config)
    try:
        worker.work(burst=burst, with_scheduler=True, logging_level=config.log_level)
    finally:
        if cron is not None:
            cron.terminate()
            cron.join(5)
    return 0
