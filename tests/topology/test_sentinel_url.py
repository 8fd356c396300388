"""The ``redis+sentinel://`` form of REDIS_URL."""

from __future__ import annotations

import pytest

from quart_app.core.redis_pools import SentinelTarget, is_sentinel_url, parse_sentinel_url


def test_every_part_of_the_url_is_read() -> None:
    target = parse_sentinel_url("redis+sentinel://me:p%40ss@s1:26379,[::1]:26380/queue/3")
    assert target == SentinelTarget((("s1", 26379), ("::1", 26380)), "queue", 3, "me", "p@ss")
    assert parse_sentinel_url("redis+sentinel://pw@h:1/m") == SentinelTarget(
        (("h", 1),), "m", 0, None, "pw"
    )
    assert is_sentinel_url("REDIS+SENTINEL://h:1/m") and not is_sentinel_url("redis://h:1/0")


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis+sentinel://h:1", "names no master"),
        ("redis+sentinel://h/m", "not host:port"),
        ("redis+sentinel://h:x/m", "not host:port"),
        ("redis+sentinel://h:1/m/zero", "db number"),
        ("redis+sentinel://h:1/m/0/extra", "db number"),
    ],
)
def test_a_malformed_url_is_refused_with_the_reason(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_sentinel_url(url)
