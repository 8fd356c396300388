"""Time slices and per-user turns: the state in Redis that lets processing jobs take turns.

* :class:`UserSlots` — at most USER_MAX_ACTIVE_JOBS slices of one user's jobs run at
  once.  A slice holds a lease (hash ``reeltrack:user-active:<user_id>``, job id ->
  expiry in ms) for as long as its run beats (the heartbeat refreshes it; a killed run's
  lease expires after STALE_JOB_SECONDS).  A job refused a lease waits in the user's
  queue (sorted set ``reeltrack:user-waiting:<user_id>``, by priority, then by when it
  first waited) and asks again later, the later the more waiters are ahead of it (see
  :func:`defer_delay`); a free lease goes to the user's best waiter,
  so a job that just yielded does not win its turn back from the user's other jobs, and
  a ``high`` job waiting is served before a ``low`` one.  A lease is re-entrant per job:
  a run resumed after a crash of its own job gets it back.
* :func:`elapsed` / :func:`add_elapsed` — the processing time a job has used in its
  earlier slices (``reeltrack:job-elapsed:<job_id>``, 7 days), so JOB_TIME_BUDGET counts
  across slices.  A slice whose worker was killed does not add its time; a lost Redis
  starts the count again.

Redis trouble never stops processing: a slot that cannot be asked for is taken (logged).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import NamedTuple

import redis.asyncio as aioredis

from quart_app.core.config import REDIS_KEY_PREFIX
from quart_app.core.redis_pools import PoolLimits, async_client
from socket_layer.pooled_redis import DEFAULT_LIMITS

log = logging.getLogger(__name__)

ACTIVE_KEY = f"{REDIS_KEY_PREFIX}user-active:{{}}"
WAITING_KEY = f"{REDIS_KEY_PREFIX}user-waiting:{{}}"
WAITING_SEEN_KEY = f"{REDIS_KEY_PREFIX}user-waiting-seen:{{}}"
ELAPSED_KEY = f"{REDIS_KEY_PREFIX}job-elapsed:{{}}"
ELAPSED_TTL_S = 7 * 86400
#: the user keys outlive their last use by this much at most
USER_KEYS_TTL_MS = 86400 * 1000
#: priority -> order among a user's waiting jobs (smaller first)
PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}

# KEYS: active hash, waiting zset, waiting-seen hash.
# ARGV: job, now_ms, lease_ms, cap, score, forget_waiter_after_ms, keys_ttl_ms.
# Returns -1 when the job holds a lease now, else how many of the user's waiters are
# ahead of it.
_ACQUIRE = """
local now = tonumber(ARGV[2])
local active = redis.call('HGETALL', KEYS[1])
for i = 1, #active, 2 do
  if tonumber(active[i + 1]) < now then redis.call('HDEL', KEYS[1], active[i]) end
end
local seen = redis.call('HGETALL', KEYS[3])
for i = 1, #seen, 2 do
  if tonumber(seen[i + 1]) < now - tonumber(ARGV[6]) then
    redis.call('HDEL', KEYS[3], seen[i])
    redis.call('ZREM', KEYS[2], seen[i])
  end
end
local granted = 0
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  granted = 1
else
  local free = tonumber(ARGV[4]) - redis.call('HLEN', KEYS[1])
  redis.call('ZADD', KEYS[2], 'NX', ARGV[5], ARGV[1])
  if free > 0 and redis.call('ZRANK', KEYS[2], ARGV[1]) < free then granted = 1 end
end
if granted == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[3]))
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
else
  redis.call('HSET', KEYS[3], ARGV[1], now)
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
if granted == 1 then return -1 end
return redis.call('ZRANK', KEYS[2], ARGV[1])
"""

# KEYS: active hash.  ARGV: job, expiry_ms.  Refreshes a lease the job still holds.
_REFRESH = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""


class Turn(NamedTuple):
    """What :meth:`UserSlots.acquire` answered: ``granted`` (the job holds a lease now),
    else ``ahead``: how many of the user's waiting jobs come before it."""

    granted: bool
    ahead: int = 0


def _now_ms() -> int:
    return int(time.time() * 1000)


class UserSlots:
    """The per-user cap on slices running at once (``cap`` 0: no cap)."""

    def __init__(self, redis: aioredis.Redis, *, cap: int, lease_s: float, forget_s: float) -> None:
        """``lease_s``: how long a lease lives without a refresh; ``forget_s``: how long
        a waiter that stopped asking keeps its place."""
        self.redis = redis
        self.cap = cap
        self.lease_ms = int(lease_s * 1000)
        self.forget_ms = int(forget_s * 1000)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cap: int,
        lease_s: float,
        forget_s: float,
        limits: PoolLimits = DEFAULT_LIMITS,
    ) -> UserSlots:
        client = async_client(url, limits, socket_timeout=5, socket_connect_timeout=5)
        return cls(client, cap=cap, lease_s=lease_s, forget_s=forget_s)

    async def close(self) -> None:
        await self.redis.aclose()

    async def acquire(self, user_id: uuid.UUID | str, job_id: uuid.UUID, priority: str) -> Turn:
        """Granted when job ``job_id`` may run a slice now (it then holds a lease until
        :meth:`release` or expiry); else it waits its turn among the user's jobs, with
        ``ahead`` of them before it."""
        if self.cap <= 0:
            return Turn(True)
        now = _now_ms()
        score = PRIORITY_RANK.get(str(priority), 1) * 10**13 + now
        keys = [k.format(user_id) for k in (ACTIVE_KEY, WAITING_KEY, WAITING_SEEN_KEY)]
        args: list[str | int] = [
            str(job_id),
            now,
            self.lease_ms,
            self.cap,
            score,
            self.forget_ms,
            USER_KEYS_TTL_MS,
        ]
        try:
            answer = int(await self.redis.eval(_ACQUIRE, 3, *keys, *args))  # type: ignore[misc]
        except Exception as exc:  # processing never waits on Redis trouble
            log.warning("job %s: user slot not checked (%s); running", job_id, exc)
            return Turn(True)
        return Turn(True) if answer < 0 else Turn(False, answer)

    async def refresh(self, user_id: uuid.UUID | str, job_id: uuid.UUID) -> None:
        """Extend the job's lease (called by the run's heartbeat)."""
        if self.cap <= 0:
            return
        expiry = _now_ms() + self.lease_ms
        await self.redis.eval(_REFRESH, 1, ACTIVE_KEY.format(user_id), str(job_id), expiry)  # type: ignore[misc]

    async def release(self, user_id: uuid.UUID | str, job_id: uuid.UUID) -> None:
        """Give the lease back and leave the waiting list (best effort)."""
        if self.cap <= 0:
            return
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(ACTIVE_KEY.format(user_id), str(job_id))
                pipe.zrem(WAITING_KEY.format(user_id), str(job_id))
                pipe.hdel(WAITING_SEEN_KEY.format(user_id), str(job_id))
                await pipe.execute()
        except Exception as exc:
            log.warning("job %s: user slot not released (%s); it expires", job_id, exc)


#: seconds a job refused a user slot waits before it asks again, with no waiter ahead
DEFER_S = 1.0
#: a waiter further back asks at most this many DEFER_S apart
DEFER_MAX_FACTOR = 10


def defer_delay(ahead: int) -> float:
    """How long a job with ``ahead`` waiters before it waits before it asks again: the
    next in line every DEFER_S, the n-th every n x DEFER_S (at most DEFER_MAX_FACTOR x).
    A user with N waiting jobs so costs the workers about ln N polls a second, not N
    (each poll is an RQ job: a fork, a DB and a Redis round trip)."""
    return DEFER_S * min(1 + max(0, ahead), DEFER_MAX_FACTOR)


async def elapsed(redis: aioredis.Redis, job_id: uuid.UUID) -> float:
    """Seconds of processing job ``job_id`` used in its earlier slices (0 when unknown)."""
    try:
        value = await redis.get(ELAPSED_KEY.format(job_id))
    except Exception as exc:
        log.warning("job %s: earlier slices' time unknown (%s); counted as 0", job_id, exc)
        return 0.0
    return float(value) if value else 0.0


async def add_elapsed(redis: aioredis.Redis, job_id: uuid.UUID, seconds: float) -> None:
    """Add a finished slice's processing time to the job's count (best effort)."""
    key = ELAPSED_KEY.format(job_id)
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incrbyfloat(key, max(0.0, seconds))
            pipe.expire(key, ELAPSED_TTL_S)
            await pipe.execute()
    except Exception as exc:
        log.warning("job %s: slice time not recorded (%s)", job_id, exc)
