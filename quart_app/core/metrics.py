"""Prometheus metrics of every reeltrack process, aggregated on the web's ``GET /metrics``.

Where they live and why: DESIGN section 1 gives ``quart_app`` the metrics, and the
worker must increment some of them without importing Quart.  So this module, like
:mod:`quart_app.core.config`, never imports Quart: the worker (``tasks``) and the socket
layer call the small functions below, and only :mod:`quart_app.metrics_view` (the
``/metrics`` route) touches Quart.

Multiprocess mode (prometheus-client's): every process that calls
:func:`setup_process_metrics` writes its samples into mmap files under
``VAR_DIR/metrics`` (the web processes, the worker, each RQ work-horse it forks, the
cron child), and ``GET /metrics`` on any web process of the same ``VAR_DIR`` merges
them all.  Web and worker already share ``VAR_DIR`` (media, thumbnails), so they share
this directory too.  Files of dead processes are folded into one archive file per
metric type (counters and histograms keep their totals; gauges of dead processes are
dropped) whenever a web process serves ``/metrics`` and when a process starts, so the
directory does not grow with every work-horse RQ forks.

Without :func:`setup_process_metrics` (tests in one interpreter) the metrics live in
this process only and ``/metrics`` shows them from the default registry.

Metric names, with the process that moves them:

=============================================  ======  ===================================
``reeltrack_socketio_connections{transport}``   web     gauge: live sockets (polling/websocket)
``reeltrack_socketio_connects_total{transport}`` web    sockets accepted
``reeltrack_socketio_refusals_total{reason}``   web     connects refused (invalid_token, ...)
``reeltrack_socketio_disconnects_total{reason}`` web    sockets ended, by engine.io reason
``reeltrack_socketio_resyncs_total``            web     ``resync`` messages sent to sockets
``reeltrack_socketio_packets_refused_total``    web     {reason}: client input refused
``reeltrack_progress_forward_lag_seconds``      web     event ``created_at`` -> forwarded
``reeltrack_progress_events_published_total``   worker  events accepted by Redis
``reeltrack_progress_publish_failures_total``   worker  events Redis did not accept
``reeltrack_progress_events_persisted_total``   worker  events committed to the DB
``reeltrack_progress_persist_seconds``          worker  one event's INSERT + COMMIT
``reeltrack_progress_persist_failures_total``   worker  failed writes + events queued behind one
``reeltrack_progress_events_lost_total``        worker  buffered events given up on
``reeltrack_progress_events_journaled_total``   worker  events journaled in Redis (DB write failed)
``reeltrack_progress_events_recovered_total``   worker  journaled events a claim stored
``reeltrack_progress_retry_backlog``            worker  gauge: events waiting for the DB
``reeltrack_redis_connection_failures_total``   both    {process,operation}: Redis errors
``reeltrack_http_rate_limited_total{kind}``     web     requests answered 429
=============================================  ======  ===================================
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # prometheus_client is imported only after the set-up below
    from quart_app.core.config import Config

log = logging.getLogger(__name__)

METRICS_SUBDIR = "metrics"
ENV_NAME = "PROMETHEUS_MULTIPROC_DIR"
ARCHIVE_ID = "archive"
LOCK_NAME = ".lock"

#: engine.io's disconnect reasons -> label values; "drops" for the drop-rate alert
DISCONNECT_REASONS = {
    "client disconnect": "client_disconnect",
    "server disconnect": "server_disconnect",
    "ping timeout": "ping_timeout",
    "transport close": "transport_close",
    "transport error": "transport_error",
}
#: the reasons the WebSocket drop-rate alert counts as drops (a closed browser tab is
#: a "transport close" too, so that one is not a drop: see docs/operations.md)
DROP_REASONS = ("ping_timeout", "transport_error")
TRANSPORTS = ("polling", "websocket")
#: (process, operation) of reeltrack_redis_connection_failures_total
REDIS_OPERATIONS = (("worker", "publish"), ("web", "listen"))
#: kinds of reeltrack_http_rate_limited_total: the per-user REST limit, login throttling
RATE_LIMIT_KINDS = ("rest", "login")

_PERSIST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

_multiproc_dir: Path | None = None
_host_tag = ""


# --- process set-up -------------------------------------------------------------------


def metrics_dir(config: Config) -> Path:
    """The directory every process of one installation (one ``VAR_DIR``) writes into."""
    return Path(config.var_dir) / METRICS_SUBDIR


def _tag(text: str) -> str:
    # the collector splits file names on "_": keep the identifier free of it
    return re.sub(r"[^A-Za-z0-9.-]", "-", text)[:40] or "host"


def _process_identifier() -> str:
    """``<host>-<pid>``: unique per live process even when containers share the dir."""
    return f"{_host_tag}-{os.getpid()}"


def setup_process_metrics(config: Config) -> Path:
    """Switch this process to multiprocess metrics in ``VAR_DIR/metrics``; returns it.

    Call once per process before any metric is touched (``reeltrack serve`` and
    ``reeltrack worker`` do, right after reading the config); children forked later
    (RQ work-horses) inherit it and write files of their own.  Also folds the files
    of dead processes into the archive.  Raises RuntimeError if metrics of this module
    were already created in single-process mode (set-up came too late).
    """
    global _multiproc_dir, _host_tag
    directory = metrics_dir(config)
    directory.mkdir(parents=True, exist_ok=True)
    _host_tag = _tag(socket.gethostname())
    # prometheus_client reads the variable when its values module is imported and
    # again when a metric value is created: set it for both (and for children)
    os.environ[ENV_NAME] = str(directory)
    from prometheus_client import values

    if _metrics is not None and not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError("metrics were created before setup_process_metrics()")
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identifier)
    _multiproc_dir = directory
    try:
        # files under OUR identifier are a previous incarnation's (in a container the
        # pid repeats after a restart): fold them in before we open our own, or a
        # gauge would continue from the dead process's value
        compact(directory, also_dead=_process_identifier())
    except OSError:  # a read-only or racing directory must not stop the process
        log.exception("compacting metrics files failed")
    return directory


def compact_now() -> None:
    """Fold dead processes' files into the archive (multiprocess mode only; never
    raises).  Web processes do it on every scrape; workers at each job start, since
    each RQ work-horse leaves files behind."""
    if _multiproc_dir is not None:
        _safely(lambda: compact(_multiproc_dir))  # type: ignore[arg-type]


def multiprocess_dir() -> Path | None:
    """The directory of multiprocess mode, None in single-process mode."""
    return _multiproc_dir


# --- the metrics -------------------------------------------------------------------------


class _Metrics:
    """Created on first use, i.e. after :func:`setup_process_metrics` chose the mode."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

        # *_created samples double the output and no alert or panel here uses them
        disable_created_metrics()

        self.connections = Gauge(
            "reeltrack_socketio_connections",
            "Live Socket.IO connections of this installation, by transport",
            ["transport"],
            multiprocess_mode="livesum",
        )
        self.connects = Counter(
            "reeltrack_socketio_connects",
            "Socket.IO connections accepted, by transport at connect",
            ["transport"],
        )
        self.refusals = Counter(
            "reeltrack_socketio_refusals",
            "Socket.IO connections refused, by refusal reason",
            ["reason"],
        )
        self.disconnects = Counter(
            "reeltrack_socketio_disconnects",
            "Socket.IO connections ended, by engine.io reason",
            ["reason"],
        )
        self.packets_refused = Counter(
            "reeltrack_socketio_packets_refused",
            "Socket.IO input refused from clients (the socket is closed, or the ack is an "
            "error), by reason",
            ["reason"],
        )
        self.resyncs = Counter(
            "reeltrack_socketio_resyncs",
            "resync messages sent to sockets (the Redis listener lost messages)",
        )
        self.forward_lag = Histogram(
            "reeltrack_progress_forward_lag_seconds",
            "From a progress event's created_at to its forwarding by a web process",
            buckets=_LAG_BUCKETS,
        )
        self.published = Counter(
            "reeltrack_progress_events_published",
            "Progress events published to Redis",
        )
        self.publish_failures = Counter(
            "reeltrack_progress_publish_failures",
            "Progress events Redis did not accept (clients recover from the history)",
        )
        self.persisted = Counter(
            "reeltrack_progress_events_persisted",
            "Progress events committed to the database (including replays)",
        )
        self.persist_seconds = Histogram(
            "reeltrack_progress_persist_seconds",
            "Duration of one successful progress event write (INSERT + job update + COMMIT)",
            buckets=_PERSIST_BUCKETS,
        )
        self.persist_failures = Counter(
            "reeltrack_progress_persist_failures",
            "Failed progress event writes, each attempt (the event is buffered and retried)",
        )
        self.lost = Counter(
            "reeltrack_progress_events_lost",
            "Buffered progress events given up on (the database never came back in time)",
        )
        self.journaled = Counter(
            "reeltrack_progress_events_journaled",
            "Progress events written to the Redis journal because their DB write failed",
        )
        self.recovered = Counter(
            "reeltrack_progress_events_recovered",
            "Journaled progress events a (re)claim of their job wrote into the history",
        )
        self.backlog = Gauge(
            "reeltrack_progress_retry_backlog",
            "Progress events waiting in retry buffers for the database",
            multiprocess_mode="livesum",
        )
        self.redis_failures = Counter(
            "reeltrack_redis_connection_failures",
            "Redis operations that failed for connection reasons",
            ["process", "operation"],
        )
        self.rate_limited = Counter(
            "reeltrack_http_rate_limited",
            "HTTP requests answered 429, by limit",
            ["kind"],
        )
        # every labelled series exists from the start (at 0): rate() and the alerts
        # see a series before its first increment
        for transport in TRANSPORTS:
            self.connections.labels(transport)
            self.connects.labels(transport)
        for reason in DISCONNECT_REASONS.values():
            self.disconnects.labels(reason)
        for process, operation in REDIS_OPERATIONS:
            self.redis_failures.labels(process, operation)
        for kind in RATE_LIMIT_KINDS:
            self.rate_limited.labels(kind)


_metrics: _Metrics | None = None


def m() -> _Metrics:
    """The metrics of this process (created on first use)."""
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()
    return _metrics


def _safely(fn: Callable[[], object]) -> None:
    # metrics must never break the code path they observe
    try:
        fn()
    except Exception:
        log.debug("metrics update failed", exc_info=True)


# --- web: Socket.IO ---------------------------------------------------------------------

#: sid -> transport it is counted under in the connections gauge (this process)
_counted: dict[str, str] = {}


def _transport_label(transport: str | None) -> str:
    return transport if transport in TRANSPORTS else "polling"


def connection_opened(sid: str, transport: str | None) -> None:
    """A socket passed connect (counted under ``transport`` until it closes)."""

    def update() -> None:
        label = _transport_label(transport)
        if sid in _counted:
            return
        _counted[sid] = label
        m().connections.labels(label).inc()
        m().connects.labels(label).inc()

    _safely(update)


def connection_refused(reason: str) -> None:
    _safely(lambda: m().refusals.labels(reason).inc())


def packet_refused(reason: str) -> None:
    """Client input the socket layer refused (``malformed``, ``reserved_event``,
    ``binary``, ``resume_arguments``)."""
    _safely(lambda: m().packets_refused.labels(reason).inc())


def connection_closed(sid: str, reason: object = None) -> None:
    """A socket that :func:`connection_opened` counted is gone (``reason``: engine.io's)."""

    def update() -> None:
        label = _counted.pop(sid, None)
        if label is None:
            return
        m().connections.labels(label).dec()
        text = str(reason) if reason is not None else "server disconnect"
        m().disconnects.labels(DISCONNECT_REASONS.get(text, "other")).inc()

    _safely(update)


def refresh_transports(current: Callable[[str], str | None]) -> None:
    """Move upgraded sockets (polling -> websocket) to their current transport's count.

    ``current(sid)`` returns the socket's transport now, or None when it is gone.
    Called periodically by the web process; O(live sockets).
    """

    def update() -> None:
        for sid, label in list(_counted.items()):
            now = current(sid)
            if now is None:
                continue
            now = _transport_label(now)
            if now != label:
                _counted[sid] = now
                m().connections.labels(label).dec()
                m().connections.labels(now).inc()

    _safely(update)


def resyncs_sent(count: int = 1) -> None:
    if count > 0:
        _safely(lambda: m().resyncs.inc(count))


def _parse_created_at(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def observe_forward(event: object) -> None:
    """A web process forwards a progress event (a dict with ``created_at``) to sockets."""

    def update() -> None:
        if not isinstance(event, dict):
            return
        created = _parse_created_at(event.get("created_at"))
        if created is not None:
            m().forward_lag.observe(max(0.0, time.time() - created))

    _safely(update)


_CREATED_AT_RE = re.compile(r'"created_at":\s*"([^"]+)"')


def observe_forward_packet(text: str) -> None:
    """Like :func:`observe_forward` for an already encoded packet
    (``42["progress",{...,"created_at":"..."}]``): only the timestamp is parsed."""

    def update() -> None:
        if '"progress"' not in text[:16]:
            return
        found = _CREATED_AT_RE.search(text)
        created = _parse_created_at(found.group(1)) if found else None
        if created is not None:
            m().forward_lag.observe(max(0.0, time.time() - created))

    _safely(update)


def observe_forward_lag(seconds: float) -> None:
    _safely(lambda: m().forward_lag.observe(max(0.0, seconds)))


# --- worker: the publisher ----------------------------------------------------------------


def observe_persist(seconds: float) -> None:
    """One event write succeeded after ``seconds``."""

    def update() -> None:
        m().persist_seconds.observe(seconds)
        m().persisted.inc()

    _safely(update)


def persist_failed() -> None:
    """One event write attempt failed (DB unreachable or erroring)."""
    _safely(lambda: m().persist_failures.inc())


@contextlib.contextmanager
def timed_persist() -> Iterator[None]:
    """``with timed_persist(): await write()`` — observes a success, counts a failure."""
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        persist_failed()
        raise
    observe_persist(time.perf_counter() - start)


def event_published(count: int = 1) -> None:
    _safely(lambda: m().published.inc(count))


def publish_failed(count: int = 1) -> None:
    """Publishes Redis did not accept (each is also a Redis connection failure)."""

    def update() -> None:
        m().publish_failures.inc(count)
        m().redis_failures.labels("worker", "publish").inc(count)

    _safely(update)


def events_lost(count: int) -> None:
    if count > 0:
        _safely(lambda: m().lost.inc(count))


def backlog_changed(delta: int) -> None:
    if delta:
        _safely(lambda: m().backlog.inc(delta))


def publisher_count(name: str, amount: int = 1) -> None:
    """Mirror of the publisher's own counters (:class:`tasks.publisher.PublisherStats`)."""
    if name == "events_published":
        event_published(amount)
    elif name == "publish_failures":
        publish_failed(amount)
    elif name == "events_lost":
        events_lost(amount)
    elif name == "events_journaled" and amount > 0:
        _safely(lambda: m().journaled.inc(amount))
    elif name == "events_recovered" and amount > 0:
        _safely(lambda: m().recovered.inc(amount))


def redis_failure(process: str, operation: str) -> None:
    """A Redis operation failed for a connection reason (``process``: web or worker)."""
    _safely(lambda: m().redis_failures.labels(process, operation).inc())


def rate_limited(kind: str) -> None:
    _safely(lambda: m().rate_limited.labels(kind).inc())


# --- exposition --------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _dead_identifier(identifier: str) -> bool:
    """True for ``<host>-<pid>`` of THIS host whose pid is gone (other hosts' files are
    left to their own processes)."""
    host, _, pid = identifier.rpartition("-")
    if host != (_host_tag or _tag(socket.gethostname())) or not pid.isdigit():
        return False
    return not _pid_alive(int(pid))


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    with open(directory / LOCK_NAME, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def compact(directory: Path, also_dead: str | None = None) -> int:
    """Fold the files of dead processes of this host into the archive; returns how many
    files were removed.

    Counters and histograms are added into ``<type>_archive.db`` (totals survive the
    process); gauges of dead processes are dropped.  Runs under an exclusive lock on
    the directory, which :func:`generate` also takes, so a scrape never sees a value
    both in a dead process's file and in the archive.  ``also_dead``: an identifier to
    treat as dead although its pid is alive (our own, before we wrote anything).
    """
    from prometheus_client.mmap_dict import MmapedDict

    removed = 0
    with _dir_lock(directory):
        for path in sorted(glob.glob(str(directory / "*.db"))):
            name = os.path.basename(path)[: -len(".db")]
            typ, _, rest = name.partition("_")
            identifier = rest.rpartition("_")[2] if typ == "gauge" else rest
            if identifier == ARCHIVE_ID:
                continue
            if identifier != also_dead and not _dead_identifier(identifier):
                continue
            if typ in ("counter", "histogram", "summary"):
                values = MmapedDict.read_all_values_from_file(path)
                archive = MmapedDict(str(directory / f"{typ}_{ARCHIVE_ID}.db"))
                try:
                    for key, value, _timestamp, _pos in values:
                        current, _ts = archive.read_value(key)
                        archive.write_value(key, current + value, 0.0)
                finally:
                    archive.close()
            os.remove(path)
            removed += 1
    return removed


def generate() -> tuple[bytes, str]:
    """The exposition text of every process (multiprocess) or this one; and its
    content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry
    from prometheus_client import generate_latest as _generate
    from prometheus_client.multiprocess import MultiProcessCollector

    m()  # our metrics exist (at 0) even before anything happened in this process
    directory = _multiproc_dir
    if directory is None:
        return _generate(REGISTRY), CONTENT_TYPE_LATEST
    try:
        compact(directory)
    except OSError:
        log.exception("compacting metrics files failed")
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    with _dir_lock(directory):
        return _generate(registry), CONTENT_TYPE_LATEST


def sample_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of one sample in exposition ``text`` (tests, the docs' examples)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(
                sample.labels.get(k) == v for k, v in (labels or {}).items()
            ):
                return float(sample.value)
    return None
