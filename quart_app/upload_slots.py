"""How many uploads one client address may stream at once (``UPLOADS_PER_ADDRESS``).

An upload holds a connection, a file being written and a slot of the server's
attention for as long as its body takes; many slow ones from one address would hold
them all.  The count is shared by every web process on one Redis (behind nginx, a
client without the balancer's cookie lands on any of them): each upload holds a lease
in the sorted set ``reeltrack:uploads:<address digest>`` (upload id -> expiry), renewed
while its body streams, so a slot never outlives its request by more than
:data:`LEASE_S` even when its process dies.  Without Redis, or while Redis fails, the
count falls back to this process's own.  The address is the one the login throttle
uses (:func:`quart_app.login_throttle.client_address`, behind ``TRUSTED_PROXY_HOPS``
proxies the forwarded client).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from quart import current_app

from quart_app.core.config import REDIS_KEY_PREFIX
from quart_app.errors import ApiError, try_later

log = logging.getLogger(__name__)

#: what a refused upload is told to wait: slots free as uploads end, not on a clock
RETRY_AFTER_S = 5
#: a lease's life without a renewal; renewed every third of it while the upload streams
LEASE_S = 30.0
_EXTENSION = "reeltrack.upload_slots"

# KEYS: the address's leases.  ARGV: upload id, now_ms, expiry_ms, cap.
# 1: taken; 0: the address holds ``cap`` live leases already.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
"""


def _key(address: str) -> str:
    # hashed: keys stay short and printable whatever the address looks like
    return f"{REDIS_KEY_PREFIX}uploads:{hashlib.sha256(address.encode()).hexdigest()[:32]}"


def _now_ms() -> int:
    return int(time.time() * 1000)


class UploadSlots:
    """Uploads in flight per client address: on Redis for every web process, else in
    this process."""

    def __init__(
        self, per_address: int, redis: aioredis.Redis | None, *, lease_s: float = LEASE_S
    ) -> None:
        self.per_address = per_address
        self.redis = redis
        self.lease_ms = int(lease_s * 1000)
        self._in_flight: dict[str, int] = {}
        self._background: set[asyncio.Task[None]] = set()

    def in_flight(self, address: str) -> int:
        """This process's uploads of ``address`` now."""
        return self._in_flight.get(address, 0)

    @contextlib.asynccontextmanager
    async def hold(self, address: str) -> AsyncIterator[None]:
        """Hold one of ``address``'s slots for the block.

        Raises ApiError 429 ``too_many_uploads`` (``retry_after``, ``Retry-After``) when
        the address already has ``per_address`` uploads in flight.
        """
        upload_id = uuid.uuid4().hex
        shared = await self._take(address, upload_id)
        if shared is None and self.in_flight(address) >= self.per_address:
            shared = False
        if shared is False:
            raise self._refusal()
        self._in_flight[address] = self.in_flight(address) + 1
        renewal = asyncio.create_task(self._renew(address, upload_id)) if shared else None
        try:
            yield
        finally:
            left = self._in_flight[address] - 1
            if left:
                self._in_flight[address] = left
            else:
                del self._in_flight[address]
            if renewal is not None:
                # nothing awaited here: an await between a refusal of the body (a 413
                # raised mid-upload) and its answer left hypercorn's connection open,
                # the client blocked sending the rest, never reading the 413
                renewal.cancel()
                giving_back = asyncio.create_task(self._give_back(address, upload_id))
                self._background.add(giving_back)
                giving_back.add_done_callback(self._background.discard)

    def _refusal(self) -> ApiError:
        return try_later(
            429,
            "too_many_uploads",
            f"at most {self.per_address} uploads at once from one address;"
            " try again when one has finished",
            RETRY_AFTER_S,
        )

    async def _take(self, address: str, upload_id: str) -> bool | None:
        """True: a lease taken; False: the address is at its cap; None: no Redis to ask."""
        if self.redis is None:
            return None
        now = _now_ms()
        try:
            taken = await self.redis.eval(  # type: ignore[misc]
                _TAKE, 1, _key(address), upload_id, now, now + self.lease_ms, self.per_address
            )
        except Exception as exc:  # the cap of this process still holds
            log.warning("upload slots: Redis unavailable (%s); counting in this process", exc)
            return None
        return bool(int(taken))

    async def _renew(self, address: str, upload_id: str) -> None:
        key = _key(address)
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            expiry = _now_ms() + self.lease_ms
            try:
                async with self.redis.pipeline(transaction=True) as pipe:  # type: ignore[union-attr]
                    pipe.zadd(key, {upload_id: expiry}, xx=True)
                    pipe.pexpireat(key, expiry)
                    await pipe.execute()
            except Exception as exc:  # it expires, at worst: one slot back early
                log.debug("upload slot not renewed: %s", exc)

    async def _give_back(self, address: str, upload_id: str) -> None:
        try:
            await self.redis.zrem(_key(address), upload_id)  # type: ignore[union-attr]
        except Exception as exc:  # it expires within LEASE_S
            log.warning("upload slot not given back (%s); it expires", exc)


def upload_slots(per_address: int, redis: aioredis.Redis | None) -> UploadSlots:
    """The current app's upload slots (made on first use)."""
    slots = current_app.extensions.get(_EXTENSION)
    if slots is None:
        slots = current_app.extensions[_EXTENSION] = UploadSlots(per_address, redis)
    assert isinstance(slots, UploadSlots)
    return slots
