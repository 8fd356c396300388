"""The resume limiter at its edges: one in flight per socket, RESUME_BURST per user at
once, refilled at RESUME_PER_SECOND (a pinned clock, no sleeps)."""

from __future__ import annotations

import pytest

from socket_layer.protocol import ERROR_RESUME_IN_PROGRESS, ERROR_RESUME_RATE_LIMITED
from socket_layer.resume_limit import ResumeLimiter, ResumeRefused


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_second_resume_of_one_socket_in_flight_is_refused_until_the_first_is_answered() -> None:
    limiter = ResumeLimiter(burst=10, per_second=1.0, clock=Clock())
    limiter.acquire("s1", "u")
    with pytest.raises(ResumeRefused) as refused:
        limiter.acquire("s1", "u")
    assert refused.value.error == ERROR_RESUME_IN_PROGRESS
    limiter.acquire("s2", "u")  # another socket of the same user may
    limiter.release("s1")
    limiter.acquire("s1", "u")


def test_the_users_bucket_admits_the_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = ResumeLimiter(burst=3, per_second=2.0, clock=clock)
    for i in range(3):
        limiter.acquire(f"s{i}", "u")
        limiter.release(f"s{i}")
    with pytest.raises(ResumeRefused) as refused:
        limiter.acquire("s9", "u")
    assert refused.value.error == ERROR_RESUME_RATE_LIMITED
    assert refused.value.retry_after == 0.5
    limiter.acquire("x", "other-user")  # users do not share a bucket
    clock.t += 0.49
    with pytest.raises(ResumeRefused):
        limiter.acquire("s9", "u")
    clock.t += 0.02
    limiter.acquire("s9", "u")
