"""Polling a condition with a deadline, for states no event announces (a library's
internal flag, a row another process writes, a browser's DOM).

``wait_for`` is the assertion (raises when time runs out); ``wait_until`` the question
(answers False), for callers that carry on either way.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

Condition = Callable[[], bool | Awaitable[bool]]


async def _poll(condition: Condition, within: float, interval: float) -> float | None:
    """Seconds until ``condition()`` (sync or async) held, None when ``within`` passed."""
    started = time.monotonic()
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return time.monotonic() - started
        if time.monotonic() - started >= within:
            return None
        await asyncio.sleep(interval)  # noqa: ASYNC110 (nothing to await: polled state)


async def wait_until(predicate: Condition, within: float, interval: float = 0.05) -> bool:
    """True as soon as ``predicate()`` holds, False when ``within`` seconds pass first."""
    return await _poll(predicate, within, interval) is not None


async def wait_for(
    condition: Condition, within: float = 20.0, what: str = "condition", interval: float = 0.05
) -> float:
    """Poll ``condition`` (sync or async) until it holds; returns the seconds it took.
    Raises AssertionError naming ``what`` when ``within`` seconds pass first."""
    took = await _poll(condition, within, interval)
    if took is None:
        raise AssertionError(f"timed out after {within:g}s waiting for {what}")
    return took
