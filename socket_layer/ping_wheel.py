"""Engine.IO pings sent by one timer per process instead of one task per socket.

python-engineio schedules each socket's next PING as its own asyncio task sleeping
``ping_interval`` (a task, a timer and a coroutine per socket per interval: at 10,000
sockets that is most of the idle CPU after the send itself).  :class:`PingWheel` keeps
the due sockets in buckets of :data:`TICK_S` (or a tenth of the interval, when that is
shorter) and one task sends each bucket's pings when
it falls due.  The wire behaviour is the same: the next PING goes out ``ping_interval``
(at most one tick later) after the previous PONG, ``last_ping`` is set when it is sent,
and a socket that has not answered ``ping_timeout`` later (at most two ticks more) is
closed by python-engineio's own check (``check_ping_timeout``), which the wheel runs for
each PING it sent; the socket's queue then gets engine.io's closed marker (``None``),
which ends its websocket (the lean handler has no read timeout that would) or its
pending long-poll.

That check replaces python-engineio's service task, which walked every socket once per
``ping_timeout`` with a ``wait_for`` (a task and a timer) per socket: installed, the
wheel runs a sweep instead that only forgets closed sockets, once per ``ping_timeout``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from typing import Any

from engineio import async_socket, packet

from socket_layer.stopping import cancel_and_wait

log = logging.getLogger(__name__)

#: bucket width, seconds: pings go out at most this much after they fall due
TICK_S = 0.5

_original_schedule_ping = async_socket.AsyncSocket.schedule_ping


def _schedule_ping(self: Any) -> None:
    wheel = getattr(self.server, "ping_wheel", None)
    if wheel is None:
        _original_schedule_ping(self)
        return
    # python-engineio's rule: only after the previous ping's wait cycle completed
    if self.last_ping:
        self.last_ping = None
        wheel.schedule(self)


class PingWheel:
    """The ping timer of one engine.io server (``install(eio)`` to use it)."""

    def __init__(
        self, interval: float, tick: float | None = None, timeout: float | None = None
    ) -> None:
        self.interval = interval
        #: at most TICK_S, and a tenth of the interval: a ping is never more than a
        #: tenth of an interval late (0.5 s buckets on a 0.5 s interval made it up to
        #: twice as long)
        self.tick = tick if tick is not None else min(TICK_S, interval / 10)
        #: seconds a PING may wait for its PONG (None: no check, python-engineio's own)
        self.timeout = timeout
        #: bucket number (due time / tick, rounded up) -> sockets due then
        self._buckets: dict[int, list[Any]] = {}
        #: bucket number -> sockets whose PONG is due by then
        self._deadlines: dict[int, list[Any]] = {}
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def install(cls, eio: Any) -> PingWheel:
        """Make ``eio``'s sockets use one wheel (idempotent per server), which also
        checks their ping timeouts in place of python-engineio's service task."""
        wheel: PingWheel | None = getattr(eio, "ping_wheel", None)
        if wheel is None:
            wheel = cls(float(eio.ping_interval), timeout=float(eio.ping_timeout))
            eio.ping_wheel = wheel
            eio._service_task = functools.partial(_sweep_closed, eio)
        async_socket.AsyncSocket.schedule_ping = _schedule_ping  # type: ignore[method-assign]
        return wheel

    def schedule(self, sock: Any) -> None:
        """Send ``sock`` a PING ``interval`` seconds from now."""
        loop = asyncio.get_running_loop()
        due = math.ceil((loop.time() + self.interval) / self.tick)
        self._buckets.setdefault(due, []).append(sock)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="engineio-ping-wheel")

    def pending(self) -> int:
        """Sockets waiting for their next PING."""
        return sum(len(b) for b in self._buckets.values())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._buckets or self._deadlines:
            first = min(
                min(self._buckets, default=math.inf), min(self._deadlines, default=math.inf)
            )
            # at most one interval: a socket scheduled meanwhile is due no earlier than
            # that, while a ping-timeout deadline may lie further out
            delay = min(first * self.tick - loop.time(), self.interval)
            if delay > 0:
                await asyncio.sleep(delay)
            now_bucket = math.floor(loop.time() / self.tick)
            for due in sorted(b for b in self._deadlines if b <= now_bucket):
                for sock in self._deadlines.pop(due):
                    if sock.closing or sock.closed:
                        continue
                    try:
                        if not await sock.check_ping_timeout():
                            # closed for its timeout: wake its transport, which no read
                            # timeout ends any more (a websocket stayed open for good)
                            sock.queue.put_nowait(None)
                    except Exception:  # closed under us: nothing to check
                        log.debug("ping timeout not checked", exc_info=True)
            for due in sorted(b for b in self._buckets if b <= now_bucket):
                for sock in self._buckets.pop(due):
                    if sock.closing or sock.closed:
                        continue
                    sock.last_ping = time.time()
                    try:
                        await sock.send(packet.Packet(packet.PING))
                    except Exception:  # a socket closing under us: the others still get theirs
                        log.debug("ping not sent", exc_info=True)
                        continue
                    if self.timeout is not None:
                        # two ticks on: python-engineio's check wants strictly more
                        # than the timeout to have passed since ``last_ping``
                        check = math.ceil((loop.time() + self.timeout) / self.tick) + 1
                        self._deadlines.setdefault(check, []).append(sock)

    async def stop(self) -> None:
        """Cancel the timer and forget every socket."""
        self._buckets.clear()
        self._deadlines.clear()
        await cancel_and_wait(self._task)
        self._task = None


async def _sweep_closed(eio: Any) -> None:
    """python-engineio's service task, minus the ping timeouts the wheel checks: every
    ``ping_timeout`` seconds, forget the sockets that closed without their request
    handler removing them.  Ends when ``eio.shutdown()`` sets its event."""
    stop = eio.service_task_event = eio.create_event()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), eio.ping_timeout)
        except TimeoutError:
            pass
        for sid, sock in list(eio.sockets.items()):
            if sock.closed:
                eio.sockets.pop(sid, None)
