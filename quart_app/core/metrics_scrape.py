"""Figures read when ``/metrics`` is scraped, not moved by any process: the RQ queues and
workers (from Redis) and the ``process_*`` figures of every live reeltrack process of
this host (from ``/proc``).

Both collectors cache what they read for :data:`CACHE_S` seconds, so a scrape costs at
most two Redis round trips and one pass over ``/proc`` however often Prometheus (or a
person with curl) asks.  Neither ever raises into the scrape: an unreachable Redis gives
``reeltrack_queue_stats_up 0`` and no queue figures.

Why not prometheus_client's ``ProcessCollector``: in multiprocess mode its figures are
those of the scraping web process alone.  Here each process that called
:func:`~quart_app.core.metrics_multiprocess.setup_process_metrics` left a marker naming
its kind (``web``, ``worker``) in the metrics directory; the collector reads
``/proc/<pid>`` of each live one and labels the standard ``process_*`` names with
``kind`` and ``pid``.  A worker's children (RQ work-horses, one per slice, its
scheduler and cron child) are summed into one ``kind="worker_children"`` series under
the worker's pid, so a new work-horse per slice does not make a new series.  Processes
of other hosts (containers sharing the directory) are not visible from here.

Like the rest of the foundation this module never imports Quart; it reads Redis with
redis-py's blocking client (``/metrics`` runs the exposition in a thread).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: seconds a reading is reused by the next scrapes
CACHE_S = 5.0
#: Redis socket timeouts of the queue reading (a scrape must answer even when Redis hangs)
REDIS_TIMEOUT_S = 1.0
#: kind of the summed children of a worker process
WORKER_CHILDREN = "worker_children"


class _Cached:
    """A value recomputed at most every :data:`CACHE_S` seconds (thread-safe)."""

    def __init__(self, compute: Callable[[], Any], ttl: float = CACHE_S) -> None:
        self._compute = compute
        self._ttl = ttl
        self._lock = threading.Lock()
        self._value: Any = None
        self._at = float("-inf")

    def get(self) -> Any:
        with self._lock:
            now = time.monotonic()
            if now - self._at >= self._ttl:
                self._value = self._compute()
                self._at = now
            return self._value


# --- RQ queues and workers --------------------------------------------------------------


@dataclass
class QueueReading:
    """One reading of the queues: ``up`` False when Redis did not answer."""

    up: bool
    jobs: dict[str, int] = field(default_factory=dict)
    scheduled: dict[str, int] = field(default_factory=dict)
    oldest_age_s: dict[str, float] = field(default_factory=dict)
    workers_by_queue: dict[str, int] = field(default_factory=dict)
    workers: int = 0


def read_queues(redis: Any, queues: Sequence[str], now: float | None = None) -> QueueReading:
    """Depth, scheduled jobs (waiting their owner's turn, or a retry's interval), age of
    the job at the head and live workers of each RQ queue of ``queues``, and the live
    workers of the installation, in two pipelined round trips.

    A worker counts while its RQ key exists (RQ refreshes it on every heartbeat and
    removes it on a clean stop; a killed worker's key expires after RQ's worker TTL).
    Raises redis.exceptions.RedisError when Redis does not answer.
    """
    from rq.job import Job
    from rq.queue import Queue
    from rq.registry import ScheduledJobRegistry
    from rq.utils import utcparse
    from rq.worker_registration import REDIS_WORKER_KEYS, WORKERS_BY_QUEUE_KEY

    now = time.time() if now is None else now
    pipe = redis.pipeline(transaction=False)
    for name in queues:
        key = Queue.redis_queue_namespace_prefix + name
        pipe.llen(key)
        pipe.lindex(key, 0)
        pipe.smembers(WORKERS_BY_QUEUE_KEY % name)
        pipe.zcard(ScheduledJobRegistry.key_template.format(name))
    pipe.smembers(REDIS_WORKER_KEYS)
    first = pipe.execute()
    all_workers = {_text(k) for k in first[-1]}
    per_queue = {
        name: (int(first[4 * i]), first[4 * i + 1], {_text(k) for k in first[4 * i + 2]})
        for i, name in enumerate(queues)
    }
    scheduled = {name: int(first[4 * i + 3]) for i, name in enumerate(queues)}
    heads = [(name, _text(head)) for name, (_n, head, _w) in per_queue.items() if head]
    registered = sorted(all_workers.union(*(w for _n, _h, w in per_queue.values())))
    pipe = redis.pipeline(transaction=False)
    for _name, job_id in heads:
        pipe.hget(Job.key_for(job_id), "enqueued_at")
    for key in registered:
        pipe.exists(key)
    second = pipe.execute()
    enqueued = dict(zip([n for n, _ in heads], second[: len(heads)], strict=True))
    alive = {key for key, found in zip(registered, second[len(heads) :], strict=True) if found}
    reading = QueueReading(up=True, workers=len(all_workers & alive), scheduled=scheduled)
    for name, (depth, _head, workers) in per_queue.items():
        reading.jobs[name] = depth
        reading.workers_by_queue[name] = len(workers & alive)
        age = 0.0
        stamp = enqueued.get(name)
        if depth and stamp:
            try:
                age = max(0.0, now - utcparse(_text(stamp)).timestamp())
            except ValueError:
                age = 0.0
        reading.oldest_age_s[name] = age
    return reading


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class QueueCollector:
    """``reeltrack_queue_*`` and ``reeltrack_workers`` for the RQ queues ``queues`` on
    ``redis_url`` (read at most every :data:`CACHE_S` seconds)."""

    def __init__(self, redis_url: str, queues: Sequence[str]) -> None:
        from quart_app.core.redis_pools import PoolLimits, sync_client

        self.queues = tuple(queues)
        # one scrape at a time reads; a Sentinel URL is followed to its master
        self._redis = sync_client(
            redis_url,
            PoolLimits(size=2, timeout=REDIS_TIMEOUT_S, failover_wait=REDIS_TIMEOUT_S),
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
        )
        self._reading = _Cached(self._read)

    def _read(self) -> QueueReading:
        try:
            return read_queues(self._redis, self.queues)
        except Exception as exc:  # Redis down or hanging: the scrape answers anyway
            log.warning("metrics: reading the RQ queues failed: %s", exc)
            return QueueReading(up=False)

    def close(self) -> None:
        self._redis.close()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        reading: QueueReading = self._reading.get()
        up = GaugeMetricFamily(
            "reeltrack_queue_stats_up",
            "1 when the last reading of the RQ queues from Redis succeeded",
        )
        up.add_metric([], 1.0 if reading.up else 0.0)
        yield up
        if not reading.up:
            return
        jobs = GaugeMetricFamily(
            "reeltrack_queue_jobs", "Jobs waiting in an RQ queue", labels=["queue"]
        )
        scheduled = GaugeMetricFamily(
            "reeltrack_queue_scheduled_jobs",
            "Jobs of an RQ queue scheduled for later: waiting their owner's turn, or a retry",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "reeltrack_queue_oldest_job_age_seconds",
            "Age (since enqueued) of the job at the head of an RQ queue; 0 when empty",
            labels=["queue"],
        )
        serving = GaugeMetricFamily(
            "reeltrack_queue_workers", "Live RQ workers serving a queue", labels=["queue"]
        )
        for name in self.queues:
            jobs.add_metric([name], float(reading.jobs.get(name, 0)))
            scheduled.add_metric([name], float(reading.scheduled.get(name, 0)))
            age.add_metric([name], reading.oldest_age_s.get(name, 0.0))
            serving.add_metric([name], float(reading.workers_by_queue.get(name, 0)))
        workers = GaugeMetricFamily("reeltrack_workers", "Live RQ workers of the installation")
        workers.add_metric([], float(reading.workers))
        yield from (jobs, scheduled, age, serving, workers)


# --- process_* of every live process of this host -----------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class ProcessFigures:
    """What ``/proc/<pid>`` says of one process (or the sum of a worker's children)."""

    rss_bytes: float
    vms_bytes: float
    cpu_seconds: float
    open_fds: float
    start_time: float
    max_fds: float


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def _stat_fields(pid: int) -> list[str]:
    # the command name is in parentheses and may hold spaces: split after it
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def read_process(pid: int, boot_time: float) -> ProcessFigures | None:
    """The figures of ``pid``, None when it is gone or not readable."""
    try:
        fields = _stat_fields(pid)
        try:
            fds = float(len(os.listdir(f"/proc/{pid}/fd")))
        except OSError:  # another user's process: no fd count
            fds = float("nan")
        max_fds = float("nan")
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                max_fds = float(line.split()[3])
    except (OSError, IndexError, ValueError):
        return None
    # fields after the name: [0]=state ... utime=[11] stime=[12] starttime=[19]
    # vsize=[20] rss(pages)=[21]
    return ProcessFigures(
        rss_bytes=float(fields[21]) * _PAGE_SIZE,
        vms_bytes=float(fields[20]),
        cpu_seconds=(float(fields[11]) + float(fields[12])) / _CLOCK_TICKS,
        open_fds=fds,
        start_time=boot_time + float(fields[19]) / _CLOCK_TICKS,
        max_fds=max_fds,
    )


def _children_of(parents: Iterable[int]) -> dict[int, list[int]]:
    """Every descendant of each of ``parents``, by parent (one pass over ``/proc``)."""
    wanted = set(parents)
    by_parent: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, IndexError, ValueError):
            continue
        by_parent.setdefault(ppid, []).append(int(entry))
    found: dict[int, list[int]] = {}
    for parent in wanted:
        todo, below = [parent], []
        while todo:
            for child in by_parent.get(todo.pop(), []):
                if child not in wanted:
                    below.append(child)
                    todo.append(child)
        found[parent] = below
    return found


def read_processes(marked: dict[int, str]) -> dict[tuple[str, int], ProcessFigures]:
    """``(kind, pid) -> figures`` for the live processes of ``marked`` (pid -> kind),
    plus one ``(worker_children, <worker pid>)`` sum of each worker's descendants."""
    boot = _boot_time()
    out: dict[tuple[str, int], ProcessFigures] = {}
    for pid, kind in marked.items():
        figures = read_process(pid, boot)
        if figures is not None:
            out[(kind, pid)] = figures
    workers = [pid for pid, kind in marked.items() if kind == "worker" and (kind, pid) in out]
    for parent, children in _children_of(workers).items():
        parts = [f for f in (read_process(c, boot) for c in children) if f is not None]
        if parts:
            out[(WORKER_CHILDREN, parent)] = ProcessFigures(
                rss_bytes=sum(p.rss_bytes for p in parts),
                vms_bytes=sum(p.vms_bytes for p in parts),
                cpu_seconds=sum(p.cpu_seconds for p in parts),
                open_fds=sum(p.open_fds for p in parts),
                start_time=min(p.start_time for p in parts),
                max_fds=max(p.max_fds for p in parts),
            )
    return out


#: ``ProcessFigures`` field -> the ``process_*`` family it is exported as
_PROCESS_FAMILIES = (
    ("rss_bytes", "gauge", "process_resident_memory_bytes", "Resident memory size in bytes"),
    ("vms_bytes", "gauge", "process_virtual_memory_bytes", "Virtual memory size in bytes"),
    (
        "cpu_seconds",
        "counter",
        "process_cpu_seconds",
        "User and system CPU time in seconds (worker_children: of the live ones)",
    ),
    ("open_fds", "gauge", "process_open_fds", "Number of open file descriptors"),
    ("max_fds", "gauge", "process_max_fds", "Maximum number of open file descriptors"),
    (
        "start_time",
        "gauge",
        "process_start_time_seconds",
        "Start time of the process since the epoch in seconds",
    ),
)


class ProcessesCollector:
    """``process_*{kind,pid}`` of the processes ``marked()`` names (pid -> kind), read
    from ``/proc`` at most every :data:`CACHE_S` seconds."""

    def __init__(self, marked: Callable[[], dict[int, str]]) -> None:
        self._marked = marked
        self._reading = _Cached(self._read)

    def _read(self) -> dict[tuple[str, int], ProcessFigures]:
        try:
            return read_processes(self._marked())
        except Exception:  # /proc unreadable (not Linux?): no process figures
            log.debug("metrics: reading /proc failed", exc_info=True)
            return {}

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        reading: dict[tuple[str, int], ProcessFigures] = self._reading.get()
        kinds = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}
        families = {
            attr: kinds[kind](name, documentation, labels=["kind", "pid"])
            for attr, kind, name, documentation in _PROCESS_FAMILIES
        }
        for (kind, pid), figures in sorted(reading.items()):
            for attr, family in families.items():
                family.add_metric([kind, str(pid)], getattr(figures, attr))
        yield from families.values()
