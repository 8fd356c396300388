"""Limits on ``resume`` (DESIGN section 5): one in flight per socket, and a token bucket
per user (``RESUME_BURST`` requests at once, refilled at ``RESUME_PER_SECOND``).

Each resume is a history query on the process's database pool, so a user with a few
sockets and many resumes in flight each slowed every other user's requests (12 ms ->
1.4 s for a ``GET /api/jobs``).  The bucket is **per web process**, not shared through
Redis: what a flood exhausts is that process's event loop and database pool, it needs
no Redis round trip per resume, and a user's sockets on N processes get at most N
buckets.  A refused resume is answered at once (the ack carries the error name) and
counted in ``reeltrack_socketio_packets_refused_total{reason}``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from socket_layer.protocol import ERROR_RESUME_IN_PROGRESS, ERROR_RESUME_RATE_LIMITED

#: buckets refilled to full are dropped every this many acquisitions (memory stays
#: proportional to the users who resumed recently)
PRUNE_EVERY = 1000


class ResumeRefused(Exception):
    """A resume not admitted: ``error`` is the name for the ack, ``retry_after`` the
    seconds until the user's bucket has a token again (0 for one in flight)."""

    def __init__(self, error: str, retry_after: float = 0.0) -> None:
        super().__init__(error)
        self.error = error
        self.retry_after = retry_after


class ResumeLimiter:
    def __init__(
        self, burst: int, per_second: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = float(burst)
        self.per_second = float(per_second)
        self._clock = clock
        self._in_flight: set[str] = set()
        #: user id -> (tokens, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._acquired = 0

    def acquire(self, sid: str, user_id: str) -> None:
        """Admit one resume of ``sid``; raises :class:`ResumeRefused`.  Call
        :meth:`release` when it has been answered."""
        if sid in self._in_flight:
            raise ResumeRefused(ERROR_RESUME_IN_PROGRESS)
        now = self._clock()
        tokens, then = self._buckets.get(user_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.per_second)
        if tokens < 1.0:
            self._buckets[user_id] = (tokens, now)
            wait = (1.0 - tokens) / self.per_second
            raise ResumeRefused(ERROR_RESUME_RATE_LIMITED, math.ceil(wait * 10) / 10)
        self._buckets[user_id] = (tokens - 1.0, now)
        self._in_flight.add(sid)
        self._acquired += 1
        if self._acquired % PRUNE_EVERY == 0:
            self._prune(now)

    def release(self, sid: str) -> None:
        self._in_flight.discard(sid)

    def _prune(self, now: float) -> None:
        full = [
            user
            for user, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * self.per_second >= self.burst
        ]
        for user in full:
            del self._buckets[user]
