"""The ``redis+sentinel://`` form of REDIS_URL, and its clients through a failover."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from quart_app.core.redis_pools import (
    PoolLimits,
    SentinelTarget,
    async_client,
    is_sentinel_url,
    parse_sentinel_url,
    sync_client,
)
from tests.support.services import SentinelRig, ask_redis
from tests.support.waiting import wait_for


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


def _blocked_clients(port: int) -> int:
    info = ask_redis(port, "INFO", "clients") or {}
    return int(info.get("blocked_clients", 0))


@pytest.fixture(scope="module")
def sentinel_rig() -> Iterator[SentinelRig]:
    rig = SentinelRig().start()
    try:
        yield rig
    finally:
        rig.stop()


@pytest.mark.slow
async def test_a_command_in_flight_when_the_master_dies_lands_on_the_promoted_one(
    sentinel_rig: SentinelRig,
) -> None:
    """A command whose connection breaks mid-flight is retried on the master the
    Sentinels promote (redis-py 8 alone reconnects such a connection to the dead
    address until the failover wait runs out, and RQ's worker then quits)."""
    limits = PoolLimits(size=1, timeout=5.0, failover_wait=20.0)
    blocking = sync_client(sentinel_rig.url, limits)
    asynchronous = async_client(sentinel_rig.url, limits)
    try:
        old_port = sentinel_rig.master_port()
        assert old_port is not None
        # each client's one connection is inside a BLPOP on the master when it dies
        in_flight = [
            asyncio.ensure_future(asyncio.to_thread(blocking.blpop, ["rt:failover:a"], 3)),
            asyncio.ensure_future(asynchronous.blpop(["rt:failover:b"], 3)),
        ]
        await wait_for(lambda: _blocked_clients(old_port) == 2, 10, "both BLPOPs waiting")
        await asyncio.to_thread(sentinel_rig.kill_master)
        new_port = await asyncio.to_thread(sentinel_rig.wait_promoted, old_port)
        # retried on the new master, where nothing is pushed: each times out empty
        assert await asyncio.gather(*in_flight) == [None, None]
        assert blocking.info("server")["tcp_port"] == new_port
        assert (await asynchronous.info("server"))["tcp_port"] == new_port
    finally:
        blocking.close()
        await asynchronous.aclose()
