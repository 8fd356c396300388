"""``reeltrack worker``: an RQ worker on queues ``maintenance`` then ``videos`` (or the
ones given with ``--queues``) with RQ's scheduler and cron.

* the job module is imported here, in the parent, so forked work-horses start warm;
* ``with_scheduler=True`` runs RQ's scheduler (retries with an interval need it);
* a cron child process (``rq.cron.CronScheduler``) enqueues the stale-job check every
  STALE_JOB_SECONDS/2 and the daily retention purge on ``maintenance``.  It exits with
  its parent;
* stopping (RQ's semantics): the first SIGTERM/SIGINT is a warm shutdown (the running
  job goes on to its end, then the worker exits); a second one is a cold shutdown: the
  work-horse (in a process group of its own, out of reach of a signal to the worker's
  group) is SIGKILLed and waited for, and its job is put back at the front of its queue
  (:mod:`tasks.interrupted`), so the next worker resumes it at once;
* ``replaces``: names of workers that died (their supervisor saw them exit and made sure
  their horses are gone): their jobs are requeued at start instead of waiting for the
  stale-job check.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import time
from types import FrameType
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.cron import CronScheduler
from rq.exceptions import InvalidJobOperation

import tasks.processing  # noqa: F401  (imported in the parent: forked horses start warm)
from quart_app.core.config import Config
from quart_app.core.redis_pools import PoolLimits, sync_client
from tasks import retention
from tasks.interrupted import requeue_dead_worker_jobs, requeue_interrupted
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


def _client(config: Config) -> Redis:
    """The worker's RQ connection (a plain or Sentinel-managed master). No read
    timeout: RQ blocks in BZPOPMIN/BLMOVE for its dequeue timeout."""
    assert config.redis_url
    return sync_client(config.redis_url, PoolLimits.of(config), socket_connect_timeout=5)


def _cron_main(config: Config, parent_pid: int) -> None:
    """The cron child: RQ's CronScheduler loop, stopping when the parent is gone."""
    assert config.redis_url
    scheduler = CronScheduler(_client(config), logging_level=config.log_level)
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


class ReeltrackWorker(Worker):
    """RQ's forking worker whose cold shutdown requeues the job it interrupted."""

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        """RQ's cold shutdown (kill the horse, wait for it, exit), then the interrupted
        job back at the front of its queue.  RQ ignores a repeat within 1 s of the first
        signal: then nothing happens here either."""
        job_id = self.get_current_job_id() if self.horse_pid else None
        try:
            super().request_force_stop(signum, frame)
        except SystemExit:
            if job_id is not None:
                try:
                    requeue_interrupted(self.connection, job_id, use_retry=False)
                except (RedisError, InvalidJobOperation) as exc:
                    log.warning("job %s not requeued (%s); the stale check will", job_id, exc)
            raise


def _take_over(redis: Redis, names: tuple[str, ...]) -> None:
    """Requeue the jobs of the dead workers ``names`` and record their deaths."""
    for name in names:
        jobs = requeue_dead_worker_jobs(redis, name)
        dead = Worker.find_by_key(Worker.redis_worker_namespace_prefix + name, connection=redis)
        if dead is not None:
            dead.register_death()
        log.warning("replacing dead worker %s: requeued %s", name, jobs or "no job")


def run_worker(
    config: Config,
    burst: bool = False,
    queues: tuple[str, ...] = WORKER_QUEUES,
    *,
    name: str | None = None,
    replaces: tuple[str, ...] = (),
) -> int:
    """Run the worker on ``queues`` (in priority order) until SIGTERM/SIGINT (or until
    they are empty with ``burst``).  ``name``: its RQ name (random by default);
    ``replaces``: dead workers whose jobs it requeues first.

    Returns the process exit code; 2 when REDIS_URL is not set.
    """
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not config.redis_url:
        print("error: REDIS_URL is required for `reeltrack worker`")
        return 2
    retention.configure(config)
    redis = _client(config)
    if replaces:
        _take_over(redis, replaces)
    worker = ReeltrackWorker(
        [Queue(q, connection=redis) for q in queues], connection=redis, name=name
    )
    cron = None if burst else start_cron(config)
    try:
        worker.work(burst=burst, with_scheduler=True, logging_level=config.log_level)
    finally:
        if cron is not None:
            cron.terminate()
            cron.join(5)
    return 0
