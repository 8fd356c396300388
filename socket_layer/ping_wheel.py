"""Engine.IO pings sent by one timer per process instead of one task per socket.

python-engineio schedules each socket's next PING as its own asyncio task sleeping
``ping_interval`` (a task, a timer and a coroutine per socket per interval: at 10,000
sockets that is most of the idle CPU after the send itself).  :class:`PingWheel` keeps
the due sockets in buckets of :data:`TICK_S` and one task sends each bucket's pings when
it falls due.  The wire behaviour is the same: the next PING goes out ``ping_interval``
(at most one tick later) after the previous PONG, ``last_ping`` is set when it is sent,
and a socket that stops answering is closed by python-engineio's own timeout check.
"""

from __future__ import annotations

import asyncio
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

    def __init__(self, interval: float, tick: float = TICK_S) -> None:
        self.interval = interval
        self.tick = tick
        #: bucket number (due time / tick, rounded up) -> sockets due then
        self._buckets: dict[int, list[Any]] = {}
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def install(cls, eio: Any) -> PingWheel:
        """Make ``eio``'s sockets use one wheel (idempotent per server)."""
        wheel: PingWheel | None = getattr(eio, "ping_wheel", None)
        if wheel is None:
            wheel = cls(float(eio.ping_interval))
            eio.ping_wheel = wheel
        async_socket.AsyncSocket.schedule_ping = _schedule_ping  # type: ignore[method-assign]
        return wheel

    def schedule(self, sock: Any) -> None:
        """Send ``sock`` a PING ``interval`` seconds from now."""
        loop = asyncio.get_running_loop()
        due = math.ceil((loop.time() + self.interval) / self.tick)
        bucket = self._buckets.get(due)
        if bucket is None:
            self._buckets[due] = [sock]
        else:
            bucket.append(sock)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="engineio-ping-wheel")

    def pending(self) -> int:
        """Sockets waiting for their next PING."""
        return sum(len(b) for b in self._buckets.values())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._buckets:
            first = min(self._buckets)
            delay = first * self.tick - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now_bucket = math.floor(loop.time() / self.tick)
            for due in sorted(b for b in self._buckets if b <= now_bucket):
                for sock in self._buckets.pop(due):
                    if sock.closing or sock.closed:
                        continue
                    sock.last_ping = time.time()
                    try:
                        await sock.send(packet.Packet(packet.PING))
                    except Exception:  # a socket closing under us: the others still get theirs
                        log.debug("ping not sent", exc_info=True)

    async def stop(self) -> None:
        """Cancel the timer and forget every socket."""
        self._buckets.clear()
        await cancel_and_wait(self._task)
        self._task = None
