"""Eager coroutines: run a send now, and only make a task of it if it has to wait.

Python 3.12's eager tasks do this; 3.11 has none.  The fan-out uses it for every
delivery: sending to an idle socket never suspends (hypercorn only waits when the
transport buffer is full), so the common case creates no task and costs no event-loop
iteration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

#: tasks finishing coroutines that suspended; held here so they are not collected
_PENDING: set[asyncio.Future[Any]] = set()
#: what :func:`_advance` gives once the coroutine has ended
_DONE = object()


def _advance(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` up to its next suspension and give what it yielded, or
    :data:`_DONE` once it returned or raised (logged at DEBUG, never raised)."""
    try:
        return coro.send(None)
    except StopIteration:
        return _DONE
    except Exception:
        log.debug("send failed", exc_info=True)
        return _DONE


def run_eager(coro: Coroutine[Any, Any, Any]) -> None:
    """Run ``coro`` now, synchronously, up to its first real suspension; only then hand
    the rest to a task.

    Exceptions are logged (at DEBUG), never raised: one broken socket must not stop the
    fan-out.
    """
    yielded = _advance(coro)
    if yielded is _DONE:
        return
    task = asyncio.ensure_future(_finish(coro, yielded))
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)


async def _finish(coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
    """Drive a coroutine that :func:`run_eager` started, like a Task would."""
    while True:
        # a coroutine yields either None (a bare yield: reschedule) or a future
        try:
            if yielded is None:
                await asyncio.sleep(0)
            else:
                yielded._asyncio_future_blocking = False
                await asyncio.wait([yielded])
        except asyncio.CancelledError:
            coro.close()
            raise
        yielded = _advance(coro)
        if yielded is _DONE:
            return
