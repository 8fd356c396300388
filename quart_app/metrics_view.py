"""``GET /metrics``: Prometheus text of every process of this installation.

The metric definitions and the multiprocess set-up are in :mod:`quart_app.core.metrics`
(Quart-free, shared with the worker); this is only the route.
"""

from __future__ import annotations

import asyncio

from quart import Quart, Response
from quart_schema import hide

from quart_app.core import metrics


def register_metrics(app: Quart) -> None:
    """Attach ``GET /metrics`` (not in the OpenAPI document: it is not part of the API)."""

    @app.get("/metrics")
    @hide
    async def prometheus_metrics() -> Response:
        # reading and merging the mmap files is blocking file I/O: off the event loop
        body, content_type = await asyncio.to_thread(metrics.generate)
        return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})
