"""Stopping background work at shutdown without letting its failures escape.

Closing a manager, a registry or a timer must finish even when the Redis connection
under it is already broken or the task it stops had failed: these helpers swallow
what the stopped thing raises, so the caller's own clean-up still runs.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class _Closable(Protocol):
    async def aclose(self) -> Any: ...


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel every task given (``None`` is skipped), then wait until each has ended.

    Whatever a task raises on the way out, its cancellation included, is swallowed."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass


async def aclose_quietly(client: _Closable | None, timeout_s: float = 2.0) -> None:
    """``await client.aclose()`` for at most ``timeout_s`` seconds; a failure or a
    timeout is swallowed (the connection is already broken: nothing to save)."""
    if client is None:
        return
    try:
        await asyncio.wait_for(client.aclose(), timeout=timeout_s)
    except Exception:
        pass
