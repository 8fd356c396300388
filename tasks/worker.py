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
from datetime import timedelta
from types import FrameType
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.cron import CronScheduler
from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.utils import now as rq_now

import tasks.processing  # noqa: F401  (imported in the parent: forked horses start warm)
from quart_app.core.config import Config
from quart_app.core.redis_pools import PoolLimits, sync_client
from tasks import retention
from tasks.interrupted import requeue_dead_worker_jobs, requeue_interrupted
from tasks.queue import JOB_FUNCTION, MAINTENANCE_QUEUE, TURN_META, WORKER_QUEUES
from tasks.slices import BlockingUserSlots, ask_again_in, slot_rules, waiting_rq
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
    """RQ's forking worker whose cold shutdown requeues the job it interrupted, and which
    asks for a processing job's turn before it forks a work-horse for it."""

    def __init__(self, *args: Any, config: Config | None = None, **kwargs: Any) -> None:
        """``config``: with USER_MAX_ACTIVE_JOBS > 0, a processing job whose owner's
        slots are all taken goes back to wait without a fork (see :meth:`execute_job`)."""
        super().__init__(*args, **kwargs)
        self.slots: BlockingUserSlots | None = None
        if config is not None and config.user_max_active_jobs > 0:
            self.slots = BlockingUserSlots(self.connection, **slot_rules(config))

    def execute_job(self, job: Job, queue: Queue) -> None:
        """RQ's fork-and-wait, unless the job must wait its owner's turn: then it is
        scheduled again, :func:`tasks.slices.defer_delay` later, as the same RQ job (it
        never started, so nothing else names it; the row still does).  Without this a
        user's many waiting jobs each cost a fork, a DB connection and a Redis round
        trip per ask, and every other user's job queued behind those asks.  A job whose
        RQ meta names no owner (enqueued by an older version) asks in its work-horse."""
        if not self._waits_its_turn(job, queue):
            super().execute_job(job, queue)

    def _waits_its_turn(self, job: Job, queue: Queue) -> bool:
        owner_key, priority_key = TURN_META
        owner = job.meta.get(owner_key) if job.func_name == JOB_FUNCTION else None
        if self.slots is None or not owner or not job.args:
            return False
        job_id = str(job.args[0])
        priority = str(job.meta.get(priority_key) or "normal")
        turn = self.slots.start(owner, job_id, priority, waiting_rq(job.id, queue.name))
        if turn.granted:
            return False  # the work-horse's own ask gets this lease back
        delay = ask_again_in(turn)
        try:
            with self.connection.pipeline() as pipe:
                # a single-queue worker's dequeue parks the job in RQ's intermediate list
                pipe.lrem(queue.intermediate_queue_key, 1, job.id)
                queue.schedule_job(job, rq_now() + timedelta(seconds=delay), pipeline=pipe)
                pipe.execute()
        except RedisError as exc:  # the work-horse asks again and defers by itself
            log.warning("job %s: not sent back to wait (%s); running it", job_id, exc)
            return False
        log.info(
            "job %s waits its turn; asking again in %gs (%d of its owner's jobs ahead)",
            job_id,
            delay,
            turn.ahead,
        )
        return True

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
        [Queue(q, connection=redis) for q in queues], connection=redis, name=name, config=config
    )
    cron = None if burst else start_cron(config)
    try:
        worker.work(burst=burst, with_scheduler=True, logging_level=config.log_level)
    finally:
        if cron is not None:
            cron.terminate()
            cron.join(5)
    return 0
