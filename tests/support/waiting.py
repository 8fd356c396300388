"""Waiting on a condition that no event announces (a library's internal flag)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(predicate: Callable[[], bool], within: float, interval: float = 0.05) -> bool:
    """True as soon as ``predicate()`` holds, False when ``within`` seconds pass first."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)  # noqa: ASYNC110 (nothing to await: polled flag)
    return True
