"""The seed's throttling policy for progress events, as a small pure class.

Jobs with fewer than ``min_videos`` videos publish an event per video. Larger jobs publish
every ``every_n``-th video or when ``interval`` seconds passed since the last event,
whichever comes first.  The first event of a run, every failure and the final event are
always published (DESIGN section 7).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ThrottlePolicy:
    """Decides, video by video, whether a progress event is sent.

    ``clock`` is a monotonic clock in seconds (injectable for tests).  The policy keeps
    only the time of the last event it allowed and whether any event was allowed yet.
    """

    def __init__(
        self,
        total_videos: int,
        *,
        min_videos: int,
        every_n: int,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every_n < 1:
            raise ValueError("every_n must be >= 1")
        self.total_videos = total_videos
        self.throttled = total_videos >= min_videos
        self.every_n = every_n
        self.interval = interval
        self._clock = clock
        self._last_sent: float | None = None

    def should_send(self, video_number: int, *, failed: bool = False) -> bool:
        """Whether the event for the ``video_number``-th video (1-based) is sent.

        Records the send when it answers True, so call it once per finished video.
        """
        now = self._clock()
        send = (
            not self.throttled
            or self._last_sent is None  # the first event of this run
            or failed
            or video_number % self.every_n == 0
            or now - self._last_sent >= self.interval
        )
        if send:
            self._last_sent = now
        return send

    def final(self) -> bool:
        """The final event is always sent; records it like any other."""
        self._last_sent = self._clock()
        return True


def expected_event_count(
    total_videos: int,
    *,
    min_videos: int,
    every_n: int,
    failed: frozenset[int] = frozenset(),
) -> int:
    """Events a worker run sends for a job when time never triggers the interval rule
    (video events + the final event); handy for sizing and for tests."""
    if total_videos < min_videos:
        return total_videos + 1
    sent = {n for n in range(1, total_videos + 1) if n == 1 or n % every_n == 0 or n in failed}
    return len(sent) + 1
