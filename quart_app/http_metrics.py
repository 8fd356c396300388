"""HTTP request metrics of the Quart app: ``reeltrack_http_requests_total{route,method,
status}`` and ``reeltrack_http_request_duration_seconds{route,method}``.

``route`` is the URL rule that matched (``/api/lists/<uuid:list_id>``), never the path,
so the label set is bounded by the route table; a request no rule matched counts as
``unmatched``.  ``status`` is the class (``2xx`` .. ``5xx``).  Every answer is counted:
those of a view, of an error handler (4xx, 500), and of a hook that answered first (a
429 of the rate limit).  The duration runs from the first ``before_request`` hook to the
response head (a streamed body is not waited for).  Socket.IO's ``/api/ws/progress`` is
answered before Quart and has its own metrics.
"""

from __future__ import annotations

import time

from quart import Quart, Response, g, request

from quart_app.core import metrics

_STARTED = "_reeltrack_request_started"


def install_http_metrics(app: Quart) -> None:
    """Time and count every request ``app`` answers (the timer is its first hook)."""

    async def start_timer() -> None:
        setattr(g, _STARTED, time.perf_counter())

    async def observe(response: Response) -> Response:
        started = getattr(g, _STARTED, None)
        seconds = time.perf_counter() - started if started is not None else 0.0
        rule = request.url_rule
        metrics.observe_http(
            rule.rule if rule is not None else None, request.method, response.status_code, seconds
        )
        return response

    # first of the before_request hooks (body limits, rate limit, auth come after), so
    # their time counts and their early answers are timed too
    app.before_request_funcs.setdefault(None, []).insert(0, start_timer)
    app.after_request(observe)
