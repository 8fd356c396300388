"""``GET /metrics``: Prometheus text of every process of this installation.

The metric definitions and the multiprocess set-up are in :mod:`quart_app.core.metrics`
(Quart-free, shared with the worker); the figures read at scrape time (RQ queues and
workers, ``process_*``) in :mod:`quart_app.core.metrics_scrape`.  This is the route, and
it names the queues (:data:`tasks.queue.WORKER_QUEUES`).
"""

from __future__ import annotations

import asyncio

from quart import Quart, Response
from quart_schema import hide

from quart_app.core import metrics
from quart_app.core.config import Config
from quart_app.core.metrics_multiprocess import marked_processes, multiprocess_dir
from quart_app.core.metrics_scrape import ProcessesCollector, QueueCollector
from tasks.queue import WORKER_QUEUES


def register_metrics(app: Quart, config: Config) -> None:
    """Attach ``GET /metrics`` (not in the OpenAPI document: it is not part of the API)."""
    collectors: list[object] = []
    queues: list[QueueCollector] = []

    @app.before_serving
    async def _collectors() -> None:
        # the multiprocess mode is chosen by then (the CLI sets it up before the app)
        if config.redis_url:
            queues.append(QueueCollector(config.redis_url, WORKER_QUEUES))
            collectors.append(queues[-1])
        if multiprocess_dir() is not None:
            # single-process mode: prometheus_client's own process_* are in the registry
            collectors.append(ProcessesCollector(marked_processes))

    @app.after_serving
    async def _close() -> None:
        for queue in queues:
            queue.close()
        collectors.clear()
        queues.clear()

    @app.get("/metrics")
    @hide
    async def prometheus_metrics() -> Response:
        # reading and merging the mmap files (and Redis, /proc at most every few
        # seconds) is blocking I/O: off the event loop
        body, content_type = await asyncio.to_thread(metrics.generate, list(collectors))
        return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})
