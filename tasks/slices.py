"""Time slices and per-user turns: the state in Redis that lets processing jobs take turns.

* :class:`UserSlots` — at most USER_MAX_ACTIVE_JOBS (the cap) slices of one user's jobs
  run at once, and at most twice the cap of them are *in line* (running, or holding a
  place in an RQ queue), so that one user's many jobs never fill a queue ahead of
  everybody else's.  A running slice holds a lease (hash ``reeltrack:user-active:<id>``,
  job id -> expiry in ms) for as long as its run beats (the heartbeat refreshes it; a
  killed run's lease expires after STALE_JOB_SECONDS); a job in a queue holds a place
  (``reeltrack:user-queued:<id>``, living QUEUED_LEASE_FACTOR leases).  A job that
  finds no place (:meth:`UserSlots.enter`) or no lease (:meth:`UserSlots.start`) waits
  in the user's line (sorted set ``reeltrack:user-waiting:<id>``, by priority, then by
  its first ask), its RQ job scheduled to ask again (:func:`defer_delay`, the later the
  further back); a place freed goes to the user's best waiter at once, and wakes it:
  its scheduled RQ job is made due now.  So a job that just yielded does not win its
  turn back from the user's other jobs, a ``high`` job waiting is served before a
  ``low`` one, and a lease is re-entrant per job (a run resumed after a crash of its
  own job gets it back).
* :func:`elapsed` / :func:`add_elapsed` — the processing time a job has used in its
  earlier slices (``reeltrack:job-elapsed:<job_id>``, 7 days), so JOB_TIME_BUDGET counts
  across slices.  A slice whose worker was killed does not add its time; a lost Redis
  starts the count again.

Redis trouble never stops processing: a turn that cannot be asked for is taken (logged).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, NamedTuple, TypedDict

import redis.asyncio as aioredis
from redis import Redis
from redis.exceptions import RedisError
from rq.registry import ScheduledJobRegistry
from rq.utils import current_timestamp

from quart_app.core.config import REDIS_KEY_PREFIX, Config
from quart_app.core.redis_pools import PoolLimits, async_client
from socket_layer.pooled_redis import DEFAULT_LIMITS

log = logging.getLogger(__name__)

ACTIVE_KEY = f"{REDIS_KEY_PREFIX}user-active:{{}}"
QUEUED_KEY = f"{REDIS_KEY_PREFIX}user-queued:{{}}"
WAITING_KEY = f"{REDIS_KEY_PREFIX}user-waiting:{{}}"
#: waiter -> when it last asked (a sorted set; the hash of the same data had another name)
WAITING_SEEN_KEY = f"{REDIS_KEY_PREFIX}user-waiting-asked:{{}}"
WAITING_RQ_KEY = f"{REDIS_KEY_PREFIX}user-waiting-rq:{{}}"
_USER_KEYS = (ACTIVE_KEY, WAITING_KEY, WAITING_SEEN_KEY, WAITING_RQ_KEY, QUEUED_KEY)
ELAPSED_KEY = f"{REDIS_KEY_PREFIX}job-elapsed:{{}}"
ELAPSED_TTL_S = 7 * 86400
#: the user keys outlive their last use by this much at most
USER_KEYS_TTL_MS = 86400 * 1000
#: priority -> order among a user's waiting jobs (smaller first)
PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}
#: a place in line (a job in its RQ queue, or woken to go there) lives this many times a
#: running slice's lease: it must outlast the wait in the queue
QUEUED_LEASE_FACTOR = 5

# Every script: KEYS = active hash, waiting zset, last-ask zset, waiting-rq hash,
# queued hash (of user_id).  ARGV = job, now_ms, cap, run_lease_ms, queued_lease_ms,
# forget_waiter_after_ms, keys_ttl_ms, score, rq ("<rq_job_id> <queue>" or "").
# A user's jobs in line (running, or holding a place in a queue) are at most 2 x cap;
# the others wait in the zset (which holds the queued ones too, by their first ask).
_PRELUDE = """
local now = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local function expire(key)
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if tonumber(all[i + 1]) < now then redis.call('HDEL', key, all[i]) end
  end
end
expire(KEYS[1])
expire(KEYS[5])
-- waiters that stopped asking (by the time of their last ask: no scan of all of them)
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[6]))
for _, w in ipairs(gone) do
  if redis.call('HEXISTS', KEYS[5], w) == 0 then
    redis.call('ZREM', KEYS[3], w)
    redis.call('HDEL', KEYS[4], w)
    redis.call('ZREM', KEYS[2], w)
  end
end
local function wait(job)
  redis.call('ZADD', KEYS[2], 'NX', ARGV[8], job)
  redis.call('ZADD', KEYS[3], now, job)
  if ARGV[9] ~= '' then redis.call('HSET', KEYS[4], job, ARGV[9]) end
end
local function leave(job)
  redis.call('ZREM', KEYS[2], job)
  redis.call('ZREM', KEYS[3], job)
  redis.call('HDEL', KEYS[4], job)
end
-- places in line to the best waiters out of line; their RQ jobs, to be run now
local function fill()
  local woken = {}
  local room = 2 * cap - redis.call('HLEN', KEYS[1]) - redis.call('HLEN', KEYS[5])
  if room <= 0 then return woken end
  local best = redis.call('ZRANGE', KEYS[2], 0, room + 2 * cap)
  for _, w in ipairs(best) do
    if room <= 0 then break end
    if redis.call('HEXISTS', KEYS[5], w) == 0 and redis.call('HEXISTS', KEYS[1], w) == 0 then
      redis.call('HSET', KEYS[5], w, now + tonumber(ARGV[5]))
      local rq = redis.call('HGET', KEYS[4], w)
      if rq and w ~= ARGV[1] then table.insert(woken, rq) end
      room = room - 1
    end
  end
  return woken
end
local function done(result, woken)
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
  local rank = redis.call('ZRANK', KEYS[2], ARGV[1]) or -1
  local in_line = redis.call('HEXISTS', KEYS[5], ARGV[1])
  return {result, rank, in_line, unpack(woken)}
end
"""

# A job about to go into its queue (a new job, a next slice): a place in line now, or
# it waits.  Answers {1 when in line, rank, in_line, woken...}.
_ENTER = (
    _PRELUDE
    + """
wait(ARGV[1])
local woken = fill()
return done(redis.call('HEXISTS', KEYS[5], ARGV[1]), woken)
"""
)

# A job a worker is about to run: it leaves the queue's line; it runs when it holds its
# lease already or one is free, else it waits.  Answers {1 when granted, rank, in_line
# (it got a place in line back at once), woken...}.
_START = (
    _PRELUDE
    + """
redis.call('HDEL', KEYS[5], ARGV[1])
local granted = 0
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 or redis.call('HLEN', KEYS[1]) < cap then
  granted = 1
  redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[4]))
  leave(ARGV[1])
else
  wait(ARGV[1])
end
local woken = fill()
return done(granted, woken)
"""
)

# A run that ends (its slice, its job): its lease back, out of every list; the room goes
# to the best waiters.  Answers {0, -1, 0, woken...}.
_RELEASE = (
    _PRELUDE
    + """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
leave(ARGV[1])
local woken = fill()
return done(0, woken)
"""
)

# KEYS: active hash.  ARGV: job, expiry_ms.  Refreshes a lease the job still holds.
_REFRESH = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""


class Turn(NamedTuple):
    """What an ask for a turn answered: ``granted`` (the job runs now, or goes into its
    queue now), else ``ahead``: how many of the user's waiting jobs come before it, and
    ``in_line``: it holds a place in line again already (it asks again soon)."""

    granted: bool
    ahead: int = 0
    in_line: bool = False


def _now_ms() -> int:
    return int(time.time() * 1000)


def waiting_rq(rq_job_id: str, queue: str) -> str:
    """What a waiter stores to be woken by: its RQ job and that job's queue."""
    return f"{rq_job_id} {queue}"


def _scheduled_now(woken: Any) -> list[tuple[str, str]]:
    """The (scheduled registry key, RQ job id) of each woken waiter's RQ job."""
    entries = []
    for item in woken:
        text = item.decode() if isinstance(item, bytes) else str(item)
        rq_job_id, _, queue = text.partition(" ")
        if rq_job_id and queue:
            entries.append((ScheduledJobRegistry.key_template.format(queue), rq_job_id))
    return entries


def _turn(answer: Any) -> tuple[Turn, list[tuple[str, str]]]:
    result, rank, in_line, *woken = answer
    turn = Turn(True) if int(result) == 1 else Turn(False, max(0, int(rank)), bool(in_line))
    return turn, _scheduled_now(woken)


class SlotSettings(TypedDict):
    cap: int
    lease_s: float
    forget_s: float


def slot_rules(config: Config) -> SlotSettings:
    """The keyword arguments of a slots client for ``config``: cap USER_MAX_ACTIVE_JOBS,
    leases living STALE_JOB_SECONDS unrefreshed, a waiter forgotten when it has not
    asked for twice the longest wait between its asks (or two stale periods)."""
    return {
        "cap": config.user_max_active_jobs,
        "lease_s": config.stale_job_seconds,
        "forget_s": max(2.0 * DEFER_S * DEFER_MAX_FACTOR, 2.0 * config.stale_job_seconds),
    }


class _SlotRules:
    """The scripts' arguments, for both clients of the slots."""

    def __init__(self, *, cap: int, lease_s: float, forget_s: float) -> None:
        """``lease_s``: how long a running slice's lease lives without a refresh;
        ``forget_s``: how long a waiter that stopped asking keeps its place."""
        self.cap = cap
        self.lease_ms = int(lease_s * 1000)
        self.forget_ms = int(forget_s * 1000)

    def _call(
        self,
        user_id: uuid.UUID | str,
        job_id: uuid.UUID | str,
        priority: str = "normal",
        rq: str = "",
    ) -> list[str | int]:
        """KEYS and ARGV of the scripts (after their key count, 5)."""
        now = _now_ms()
        keys: list[str | int] = [k.format(user_id) for k in _USER_KEYS]
        return keys + [
            str(job_id),
            now,
            self.cap,
            self.lease_ms,
            self.lease_ms * QUEUED_LEASE_FACTOR,
            self.forget_ms,
            USER_KEYS_TTL_MS,
            PRIORITY_RANK.get(str(priority), 1) * 10**13 + now,
            rq,
        ]


class BlockingUserSlots(_SlotRules):
    """:class:`UserSlots` on a blocking client, for the worker parent (which asks for a
    job's turn before it forks a work-horse) and for submission (in a thread)."""

    def __init__(self, redis: Redis, *, cap: int, lease_s: float, forget_s: float) -> None:
        super().__init__(cap=cap, lease_s=lease_s, forget_s=forget_s)
        self.redis = redis

    def enter(
        self, user_id: uuid.UUID | str, job_id: uuid.UUID | str, priority: str, rq: str
    ) -> Turn:
        """As :meth:`UserSlots.enter`."""
        return self._ask(_ENTER, user_id, job_id, priority, rq)

    def start(
        self, user_id: uuid.UUID | str, job_id: uuid.UUID | str, priority: str, rq: str
    ) -> Turn:
        """As :meth:`UserSlots.start`."""
        return self._ask(_START, user_id, job_id, priority, rq)

    def release(self, user_id: uuid.UUID | str, job_id: uuid.UUID | str) -> int:
        """As :meth:`UserSlots.release`: for the API, when it ends a job no worker
        runs (a cancel of a pending job, a delete), so that the job's place in line or
        among the waiters goes to the owner's next job at once."""
        if self.cap <= 0:
            return 0
        try:
            return self._run(_RELEASE, self._call(user_id, job_id))[1]
        except RedisError as exc:
            log.warning("job %s: user slot not released (%s); it expires", job_id, exc)
            return 0

    def _ask(
        self, script: str, user_id: uuid.UUID | str, job_id: uuid.UUID | str, priority: str, rq: str
    ) -> Turn:
        if self.cap <= 0:
            return Turn(True)
        try:
            return self._run(script, self._call(user_id, job_id, priority, rq))[0]
        except RedisError as exc:
            log.warning("job %s: user slot not checked (%s); running", job_id, exc)
            return Turn(True)

    def _run(self, script: str, call: list[str | int]) -> tuple[Turn, int]:
        """Run ``script`` and wake the waiters it names: (its turn, how many woken)."""
        turn, woken = _turn(self.redis.eval(script, 5, *call))
        if woken:
            with self.redis.pipeline(transaction=False) as pipe:
                for registry, rq_job_id in woken:
                    pipe.zadd(registry, {rq_job_id: current_timestamp()}, xx=True)
                pipe.execute()
        return turn, len(woken)


class UserSlots(_SlotRules):
    """The per-user turns (``cap`` 0: no cap) for a work-horse's run."""

    def __init__(self, redis: aioredis.Redis, *, cap: int, lease_s: float, forget_s: float) -> None:
        super().__init__(cap=cap, lease_s=lease_s, forget_s=forget_s)
        self.redis = redis

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

    async def enter(
        self, user_id: uuid.UUID | str, job_id: uuid.UUID, priority: str, rq: str
    ) -> Turn:
        """Job ``job_id``, whose RQ job ``rq`` (:func:`waiting_rq`) is about to be
        queued: granted, it goes into the queue now (it holds a place in line);
        else it waits, scheduled to ask again; a place freed in line wakes it (its
        scheduled RQ job made due)."""
        return await self._ask(_ENTER, user_id, job_id, priority, rq)

    async def start(
        self, user_id: uuid.UUID | str, job_id: uuid.UUID, priority: str, rq: str = ""
    ) -> Turn:
        """Granted when job ``job_id`` may run a slice now (it then holds a lease until
        :meth:`release` or expiry; a lease is re-entrant per job); else it waits its
        turn, and ``rq`` is the RQ job that asks again."""
        return await self._ask(_START, user_id, job_id, priority, rq)

    async def _ask(
        self, script: str, user_id: uuid.UUID | str, job_id: uuid.UUID, priority: str, rq: str
    ) -> Turn:
        if self.cap <= 0:
            return Turn(True)
        try:
            return (await self._run(script, self._call(user_id, job_id, priority, rq)))[0]
        except Exception as exc:  # processing never waits on Redis trouble
            log.warning("job %s: user slot not checked (%s); running", job_id, exc)
            return Turn(True)

    async def _run(self, script: str, call: list[str | int]) -> tuple[Turn, int]:
        """Run ``script`` and wake the waiters it names: (its turn, how many woken).
        Waking makes their scheduled RQ jobs due now: RQ's scheduler enqueues them
        within its interval (a second), and it alone moves them, so none is enqueued
        twice.  XX: one no longer scheduled (running, or gone) is not added back."""
        turn, woken = _turn(await self.redis.eval(script, 5, *call))  # type: ignore[misc]
        if woken:
            async with self.redis.pipeline(transaction=False) as pipe:
                for registry, rq_job_id in woken:
                    pipe.zadd(registry, {rq_job_id: current_timestamp()}, xx=True)
                await pipe.execute()
        return turn, len(woken)

    async def refresh(self, user_id: uuid.UUID | str, job_id: uuid.UUID) -> None:
        """Extend the job's lease (called by the run's heartbeat)."""
        if self.cap <= 0:
            return
        expiry = _now_ms() + self.lease_ms
        await self.redis.eval(_REFRESH, 1, ACTIVE_KEY.format(user_id), str(job_id), expiry)  # type: ignore[misc]

    async def release(self, user_id: uuid.UUID | str, job_id: uuid.UUID) -> int:
        """Give the lease back and leave every list; the room in line goes to the
        user's best waiters, which are woken.  Returns how many; best effort (a
        waiter not woken asks again by itself)."""
        if self.cap <= 0:
            return 0
        try:
            return (await self._run(_RELEASE, self._call(user_id, job_id)))[1]
        except Exception as exc:
            log.warning("job %s: user slot not released (%s); it expires", job_id, exc)
            return 0


#: seconds a job refused a user slot waits before it asks again, with no waiter ahead
DEFER_S = 1.0
#: a waiter further back asks at most this many DEFER_S apart
DEFER_MAX_FACTOR = 10


def ask_again_in(turn: Turn) -> float:
    """Seconds until a job refused ``turn`` asks again: DEFER_S when it got a place in
    line back at once, else :func:`defer_delay` of the waiters ahead of it (a freed
    place wakes it before)."""
    return DEFER_S if turn.in_line else defer_delay(turn.ahead)


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
