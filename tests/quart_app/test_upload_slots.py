"""UPLOADS_PER_ADDRESS on Redis: leases shared by processes, expiring with a dead one."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from quart_app.errors import ApiError
from quart_app.upload_slots import UploadSlots
from quart_app.upload_slots import _key as upload_slots_key
from tests.support.waiting import wait_for


async def _refused(slots: UploadSlots, address: str) -> bool:
    try:
        async with slots.hold(address):
            return False
    except ApiError as exc:
        assert exc.status == 429 and exc.code == "too_many_uploads"
        return True


async def test_a_dead_processs_upload_slot_expires_and_a_live_one_is_renewed(
    redis_url: str,
) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    address = f"198.51.100.{uuid.uuid4().int % 250}"
    one, other = (UploadSlots(1, redis, lease_s=0.6) for _ in range(2))
    try:
        # a process that took a slot and died: no renewal, no give-back
        assert await one._take(address, "dead-process-upload") is True
        assert await _refused(other, address)
        await wait_for(lambda: _let_in(other, address), 5, "the dead lease expired")
        # (each probe that got in gives its slot back in the background: wait for it)
        await wait_for(lambda: _free(redis, address), 2, "the probe's slot given back")
        # a live upload renews its lease past several lease times
        async with one.hold(address):
            await _pass_time(1.5)  # 2.5 lease times
            assert await _refused(other, address)
        await wait_for(lambda: _let_in(other, address), 2, "the slot given back at the end")
    finally:
        await redis.aclose()


async def _free(redis: aioredis.Redis, address: str) -> bool:
    return int(await redis.zcard(upload_slots_key(address))) == 0


async def _let_in(slots: UploadSlots, address: str) -> bool:
    return not await _refused(slots, address)


async def _pass_time(seconds: float) -> None:
    """Lease expiry is the behaviour under test: time has to pass."""
    await asyncio.sleep(seconds)


async def test_without_redis_the_cap_is_this_processs() -> None:
    slots = UploadSlots(2, None)
    async with slots.hold("a"), slots.hold("a"):
        assert await _refused(slots, "a")
        assert not await _refused(slots, "b")
    assert slots.in_flight("a") == 0


@pytest.mark.parametrize("per_address", [1, 3])
async def test_redis_failing_falls_back_to_this_processs_count(per_address: int) -> None:
    broken = aioredis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry_on_error=[], retry=None
    )
    slots = UploadSlots(per_address, broken)
    try:
        held = [slots.hold("c") for _ in range(per_address)]
        for h in held:
            await h.__aenter__()
        assert await _refused(slots, "c")
        for h in held:
            await h.__aexit__(None, None, None)
        assert slots.in_flight("c") == 0
    finally:
        await broken.aclose()
