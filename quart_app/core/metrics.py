"""Prometheus metrics of every reeltrack process, aggregated on the web's ``GET /metrics``.

This module is the catalogue: the metric objects and the small functions the worker
(``tasks``), the socket layer and the web app call to move them.  The worker must do
so without importing Quart, so this module, like :mod:`quart_app.core.config`, never
imports Quart; only :mod:`quart_app.metrics_view` (the ``/metrics`` route) does.

Every process shares these metrics through the multiprocess plumbing in
:mod:`quart_app.core.metrics_multiprocess` (set up by the CLI before the first metric
is touched); :func:`generate` is what ``GET /metrics`` serves.  Every metric is named
with ``reeltrack_`` (the plumbing relies on it).

Metric names, with the process that moves them:

=============================================  ======  ===================================
``reeltrack_socketio_connections{transport}``   web     gauge: live sockets (polling/websocket)
``reeltrack_socketio_connects_total{transport}`` web    sockets accepted
``reeltrack_socketio_refusals_total{reason}``   web     connects refused (invalid_token, ...)
``reeltrack_socketio_disconnects_total{reason}`` web    sockets ended, by engine.io reason
``reeltrack_socketio_resyncs_total``            web     ``resync`` messages sent to sockets
``reeltrack_socketio_packets_refused_total``    web     {reason}: client input refused
``reeltrack_socketio_slow_consumers_closed_total`` web {transport}: closed, too much unread
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
``reeltrack_http_requests_total``               web     {route,method,status}: answered
``reeltrack_http_request_duration_seconds``     web     {route,method}: to the response head
``reeltrack_socketio_upgrades_total``           web     sockets opened on polling, now websocket
``reeltrack_job_runs_total{outcome}``           worker  RQ runs (slices) of jobs, by outcome
``reeltrack_job_run_seconds{outcome}``          worker  one run (slice), claim to end
``reeltrack_jobs_finished_total{status}``       worker  jobs ended completed/failed/cancelled
``reeltrack_job_duration_seconds{status}``      worker  a job's first start -> its end
``reeltrack_videos_processed_total{outcome}``   worker  videos processed: ready/failed
``reeltrack_video_processing_seconds{outcome}`` worker  one video's fetch + probe + thumbnail
=============================================  ======  ===================================

Read at scrape time (:mod:`quart_app.core.metrics_scrape`), not moved by anyone: the
RQ queues (``reeltrack_queue_jobs``, ``reeltrack_queue_scheduled_jobs``,
``reeltrack_queue_oldest_job_age_seconds``,
``reeltrack_queue_workers``, ``reeltrack_workers``, ``reeltrack_queue_stats_up``) and
the ``process_*`` figures of every live process of this host.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from quart_app.core.metrics_multiprocess import exposition

log = logging.getLogger(__name__)

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
REDIS_OPERATIONS = (
    ("worker", "publish"),
    ("web", "listen"),
    ("web", "rate_limit"),
    ("web", "login_throttle"),
)
#: outcomes of reeltrack_ws_slot_release_failures_total: a failed ZREM that is tried
#: again later, or one given up because the slot's presence TTL has run out anyway
SLOT_RELEASE_OUTCOMES = ("retried", "given_up")
#: kinds of reeltrack_http_rate_limited_total: the per-user REST limit, login throttling
RATE_LIMIT_KINDS = ("rest", "login")
#: status label of reeltrack_http_requests_total: the class, never the code (bounded)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: route label of a request no URL rule matched (404s of scanners, 405s): one series
UNMATCHED_ROUTE = "unmatched"
#: how a run (one RQ job: one slice) of a processing job ended (tasks.processing.run_job)
RUN_OUTCOMES = (
    "completed",
    "failed",
    "cancelled",
    "deleted",
    "skipped",
    "lost",
    "yielded",
    "deferred",
    "error",
)
#: how a job ended (its final status)
JOB_END_STATUSES = ("completed", "failed", "cancelled")
VIDEO_OUTCOMES = ("ready", "failed")

_PERSIST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_VIDEO_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
_RUN_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21600)
_JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


# --- the metrics -------------------------------------------------------------------------


class _Metrics:
    """Created on first use, i.e. after
    :func:`~quart_app.core.metrics_multiprocess.setup_process_metrics` chose the mode."""

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
            "Socket.IO connections accepted, by the transport their session opened on",
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
        self.slow_consumers = Counter(
            "reeltrack_socketio_slow_consumers_closed",
            "sockets closed because more than WS_SEND_BUFFER_BYTES waited for them to read, "
            "by transport",
            ["transport"],
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
        self.slot_release_failures = Counter(
            "reeltrack_ws_slot_release_failures",
            "Failed attempts to give a Socket.IO connection slot back in Redis",
            ["outcome"],
        )
        self.rate_limited = Counter(
            "reeltrack_http_rate_limited",
            "HTTP requests answered 429, by limit",
            ["kind"],
        )
        self.upgrades = Counter(
            "reeltrack_socketio_upgrades",
            "Socket.IO connections accepted on polling that upgraded to websocket",
        )
        self.http_requests = Counter(
            "reeltrack_http_requests",
            "HTTP requests answered by the REST/web app, by URL rule, method and status class",
            ["route", "method", "status"],
        )
        self.http_duration = Histogram(
            "reeltrack_http_request_duration_seconds",
            "From a request's first hook to its response head, by URL rule and method",
            ["route", "method"],
            buckets=_HTTP_BUCKETS,
        )
        self.job_runs = Counter(
            "reeltrack_job_runs",
            "Runs (RQ jobs: one slice each) of processing jobs, by how they ended",
            ["outcome"],
        )
        self.job_run_seconds = Histogram(
            "reeltrack_job_run_seconds",
            "Duration of one run (slice) of a processing job, by how it ended",
            ["outcome"],
            buckets=_RUN_BUCKETS,
        )
        self.jobs_finished = Counter(
            "reeltrack_jobs_finished",
            "Processing jobs that reached a final status",
            ["status"],
        )
        self.job_duration = Histogram(
            "reeltrack_job_duration_seconds",
            "From a job's first start to its final status (every slice and the waits between them)",
            ["status"],
            buckets=_JOB_BUCKETS,
        )
        self.videos = Counter(
            "reeltrack_videos_processed",
            "Videos processed, by outcome (ready or failed)",
            ["outcome"],
        )
        self.video_seconds = Histogram(
            "reeltrack_video_processing_seconds",
            "One video's processing (fetch, probe, thumbnail), by outcome",
            ["outcome"],
            buckets=_VIDEO_BUCKETS,
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
        for outcome in SLOT_RELEASE_OUTCOMES:
            self.slot_release_failures.labels(outcome)
        for outcome in RUN_OUTCOMES:
            self.job_runs.labels(outcome)
        for status in JOB_END_STATUSES:
            self.jobs_finished.labels(status)
            self.job_duration.labels(status)
        for outcome in VIDEO_OUTCOMES:
            self.videos.labels(outcome)
            self.video_seconds.labels(outcome)


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
#: sockets of this process that opened on polling and have not been seen on websocket
_may_upgrade: set[str] = set()


def _transport_label(transport: str | None) -> str:
    return transport if transport in TRANSPORTS else "polling"


def opening_transport(query_string: str) -> str:
    """The transport an engine.io session opened on, from its handshake's query string
    (``transport=polling|websocket``; what the connect handler's environ holds)."""
    from urllib.parse import parse_qs

    found = parse_qs(query_string).get("transport", ["polling"])[0]
    return _transport_label(found)


def _upgraded(sid: str) -> None:
    if sid in _may_upgrade:
        _may_upgrade.discard(sid)
        m().upgrades.inc()


def connection_opened(sid: str, transport: str | None, opened_on: str | None = None) -> None:
    """A socket passed connect: counted in the gauge under its ``transport`` now until
    it moves or closes; in ``connects_total`` under the transport it ``opened_on`` (the
    handshake's; default ``transport``).  One that opened on polling and is already on
    websocket (a fast client upgrades before the connect handler ends) is an upgrade."""

    def update() -> None:
        label = _transport_label(transport)
        if sid in _counted:
            return
        opened = _transport_label(opened_on) if opened_on is not None else label
        _counted[sid] = label
        m().connections.labels(label).inc()
        m().connects.labels(opened).inc()
        if opened == "polling":
            _may_upgrade.add(sid)
            if label == "websocket":
                _upgraded(sid)

    _safely(update)


def connection_refused(reason: str) -> None:
    _safely(lambda: m().refusals.labels(reason).inc())


def packet_refused(reason: str) -> None:
    """Client input the socket layer refused (``malformed``, ``reserved_event``,
    ``binary``, ``resume_arguments``, ``resume_in_progress``, ``resume_rate_limited``)."""
    _safely(lambda: m().packets_refused.labels(reason).inc())


def slow_consumer_closed(transport: str) -> None:
    """A socket (``websocket`` or ``polling``) was closed because more than its send
    buffer waited for it to read."""
    _safely(lambda: m().slow_consumers.labels(transport).inc())


def connection_closed(sid: str, reason: object = None, transport: str | None = None) -> None:
    """A socket that :func:`connection_opened` counted is gone (``reason``: engine.io's;
    ``transport``: the one it ended on, when known, so an upgrade the periodic refresh
    did not see yet is still counted)."""

    def update() -> None:
        label = _counted.pop(sid, None)
        if label is None:
            return
        m().connections.labels(label).dec()
        if transport == "websocket":
            _upgraded(sid)
        _may_upgrade.discard(sid)
        text = str(reason) if reason is not None else "server disconnect"
        m().disconnects.labels(DISCONNECT_REASONS.get(text, "other")).inc()

    _safely(update)


def refresh_transports(current: Callable[[str], str | None]) -> None:
    """Move upgraded sockets (polling -> websocket) to their current transport's count.

    ``current(sid)`` returns the socket's transport now, or None when it is gone.
    Called periodically by the web process; O(sockets counted as polling): a websocket
    never changes transport again.
    """

    def update() -> None:
        for sid, label in list(_counted.items()):
            if label == "websocket":
                continue
            now = current(sid)
            if now is None:
                continue
            now = _transport_label(now)
            if now != label:
                _counted[sid] = now
                m().connections.labels(label).dec()
                m().connections.labels(now).inc()
                if now == "websocket":
                    _upgraded(sid)

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


def slot_release_failed(outcome: str) -> None:
    """A connection slot's release failed (``retried`` later or ``given_up``)."""
    _safely(lambda: m().slot_release_failures.labels(outcome).inc())


def rate_limited(kind: str) -> None:
    _safely(lambda: m().rate_limited.labels(kind).inc())


# --- web: HTTP ---------------------------------------------------------------------------


def _status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "5xx"


def observe_http(route: str | None, method: str, status: int, seconds: float) -> None:
    """One answered HTTP request: ``route`` is the URL rule that matched (``None``: no
    rule, counted as :data:`UNMATCHED_ROUTE`), never the path, so the label set stays
    the size of the route table."""

    def update() -> None:
        label = route if route else UNMATCHED_ROUTE
        verb = method.upper() if method.upper() in HTTP_METHODS else "other"
        m().http_requests.labels(label, verb, _status_class(status)).inc()
        m().http_duration.labels(label, verb).observe(max(0.0, seconds))

    _safely(update)


# --- worker: jobs and videos --------------------------------------------------------------


def video_processed(ok: bool, seconds: float) -> None:
    """One video was processed (``ok``: it is ready) in ``seconds``."""

    def update() -> None:
        outcome = "ready" if ok else "failed"
        m().videos.labels(outcome).inc()
        m().video_seconds.labels(outcome).observe(max(0.0, seconds))

    _safely(update)


def job_run_ended(outcome: str, seconds: float) -> None:
    """One run (slice) of a job ended with ``outcome`` (:data:`RUN_OUTCOMES`; anything
    else counts as ``error``)."""

    def update() -> None:
        label = outcome if outcome in RUN_OUTCOMES else "error"
        m().job_runs.labels(label).inc()
        m().job_run_seconds.labels(label).observe(max(0.0, seconds))

    _safely(update)


def job_finished(status: str, seconds: float | None) -> None:
    """A job reached final ``status``; ``seconds`` since its first start (None when it
    never started: only counted)."""

    def update() -> None:
        if status not in JOB_END_STATUSES:
            return
        m().jobs_finished.labels(status).inc()
        if seconds is not None:
            m().job_duration.labels(status).observe(max(0.0, seconds))

    _safely(update)


# --- exposition --------------------------------------------------------------------------


def generate(collectors: Iterable[object] = ()) -> tuple[bytes, str]:
    """The exposition text of every process (multiprocess) or this one, then what the
    scrape-time ``collectors`` yield (:mod:`quart_app.core.metrics_scrape`); and its
    content type."""
    m()  # our metrics exist (at 0) even before anything happened in this process
    return exposition(collectors)


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
