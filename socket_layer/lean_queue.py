"""An asyncio queue that costs nothing while it is idle.

``asyncio.Queue`` allocates three deques and an ``asyncio.Event`` (a fourth deque) when
it is created: about 3 KB, held for as long as the queue lives.  A web process holds two
per websocket (hypercorn's inbox for the application, engine.io's send queue), for
connections that are idle almost all of the time.  :class:`LeanQueue` has the same API
(``put``/``put_nowait``/``get``/``get_nowait``/``task_done``/``join``/``qsize``/
``empty``/``full``) and semantics (FIFO, waiters served in the order they came; ``put`` waits while
``maxsize`` items are queued; a getter or putter woken and then cancelled passes its
wake-up on, one cancelled while still waiting wakes no one), but creates its item deque
on the first put, drops it again when it runs empty, and creates waiter futures (and
their lists) only while someone waits.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any


def _wake_first(waiters: list[asyncio.Future[None]] | None) -> list[asyncio.Future[None]] | None:
    """Resolve the first waiter of ``waiters`` still waiting (removing those before it);
    returns the list, None once it is empty (an idle queue holds no list)."""
    while waiters:
        waiter = waiters.pop(0)
        if not waiter.done():
            waiter.set_result(None)
            break
    return waiters or None


def _discard(
    waiters: list[asyncio.Future[None]] | None, waiter: asyncio.Future[None]
) -> list[asyncio.Future[None]] | None:
    """``waiters`` without ``waiter`` (a waker may have removed it already); None once
    it is empty."""
    if waiters:
        try:
            waiters.remove(waiter)
        except ValueError:
            pass
    return waiters or None


def _enlist(
    waiters: list[asyncio.Future[None]] | None,
) -> tuple[list[asyncio.Future[None]], asyncio.Future[None]]:
    """``waiters`` (created when None) with a new future appended last, and the future."""
    waiter = asyncio.get_running_loop().create_future()
    if waiters is None:
        return [waiter], waiter
    waiters.append(waiter)
    return waiters, waiter


class LeanQueue:
    """``asyncio.Queue``'s API, allocated lazily (see the module docstring)."""

    __slots__ = ("_maxsize", "_items", "_getters", "_putters", "_joiners", "_unfinished")

    def __init__(self, maxsize: int = 0) -> None:
        self._maxsize = maxsize
        self._items: collections.deque[Any] | None = None
        self._getters: list[asyncio.Future[None]] | None = None
        self._putters: list[asyncio.Future[None]] | None = None
        self._joiners: list[asyncio.Future[None]] | None = None
        #: items put and not yet marked done (what ``join`` waits for)
        self._unfinished = 0

    @property
    def maxsize(self) -> int:
        return self._maxsize

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self._maxsize <= self.qsize()

    async def put(self, item: Any) -> None:
        await self._wait_in_line("_putters", self.full)
        self.put_nowait(item)

    def put_nowait(self, item: Any) -> None:
        if self.full():
            raise asyncio.QueueFull
        self._append(item)
        if self._getters is not None:
            self._getters = _wake_first(self._getters)

    def get_nowait(self) -> Any:
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        item = items.popleft()
        if not items:
            self._items = None  # an idle queue holds no deque
        self._taken(item)
        if self._putters is not None:
            self._putters = _wake_first(self._putters)
        return item

    async def get(self) -> Any:
        await self._wait_in_line("_getters", self.empty)
        return self.get_nowait()

    async def _wait_in_line(self, line: str, blocked: Callable[[], bool]) -> None:
        """Wait in ``line`` (``_getters`` or ``_putters``) while ``blocked()``: first come,
        first woken.  A waiter woken and then cancelled before it ran passes its wake-up
        on to the next in line, as asyncio.Queue's do."""
        while blocked():
            waiters, waiter = _enlist(getattr(self, line))
            setattr(self, line, waiters)
            try:
                await waiter
            except BaseException:
                waiter.cancel()  # not resolved yet (an exception other than a cancel)
                setattr(self, line, _discard(getattr(self, line), waiter))
                if not blocked() and not waiter.cancelled():
                    setattr(self, line, _wake_first(getattr(self, line)))
                raise

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if not self._unfinished and self._joiners:
            joiners, self._joiners = self._joiners, None
            for waiter in joiners:
                if not waiter.done():
                    waiter.set_result(None)

    async def join(self) -> None:
        if self._unfinished:
            self._joiners, waiter = _enlist(self._joiners)
            try:
                await waiter
            except BaseException:
                self._joiners = _discard(self._joiners, waiter)
                raise

    # ---------------------------------------------------------- for subclasses

    def _append(self, item: Any) -> None:
        if self._items is None:
            self._items = collections.deque()
        self._items.append(item)
        self._unfinished += 1

    def _taken(self, item: Any) -> None:
        """Called with each item as it leaves the queue."""
