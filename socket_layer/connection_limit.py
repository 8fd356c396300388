"""The per-user connection limit, counted across every web process (DESIGN section 5).

Each user has one Redis ZSET (:func:`socket_layer.protocol.presence_key`) whose members
are ``<process id>:<sid>`` and whose scores are expiry times (Redis server clock).  A
process re-scores its own members every ``ttl / 3`` seconds; when a process dies
without cleaning up, its members simply expire, so its slots come back within ``ttl``
seconds at most.  Reservation is one Lua script (prune expired, count, add), so two
processes cannot both take the last slot.

After a Redis restart the sets are empty; the next heartbeat re-adds every live local
socket, so the counts heal within ``ttl / 3`` seconds.

The registry's client waits (bounded, ``REDIS_POOL_TIMEOUT``) for one of its
``REDIS_POOL_SIZE`` connections, so a mass disconnect queues its releases instead of
failing them.  A release that still fails (Redis away) is retried in the background
with backoff until it lands or the slot's expiry has passed anyway (then it is moot);
``reeltrack_ws_slot_release_failures_total{outcome}`` counts both.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import NoScriptError

from quart_app.core import metrics
from quart_app.core.redis_pools import PoolLimits, async_client
from socket_layer.pooled_redis import DEFAULT_LIMITS
from socket_layer.protocol import presence_key
from socket_layer.stopping import aclose_quietly, cancel_and_wait

log = logging.getLogger(__name__)

#: users re-scored per script call in a heartbeat: one call (one round trip) holds the
#: whole process up to this many users, and bounds how long one call keeps Redis busy
REFRESH_CHUNK = 5000
#: backoff between attempts to release one slot (seconds), doubling
RELEASE_RETRY_FIRST_S = 0.2
#: slot releases per pipeline when many arrive at once
RELEASE_CHUNK = 1000
#: slot reserves per pipeline when many connects arrive at once
RESERVE_CHUNK = 500
RELEASE_RETRY_MAX_S = 5.0

# redis.replicate_commands() lets Redis < 7 run a write after TIME; Redis 7 always does.
_NOW = """
pcall(redis.replicate_commands)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

#: KEYS[1] user zset; ARGV: member, limit, ttl -> 1 reserved, 0 over the limit
_RESERVE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 1)
return 1
"""
)

#: KEYS: user zsets; ARGV: ttl, then per key its member count and its members ->
#: re-scores (or re-adds) every member, prunes expired ones, returns the members seen
_REFRESH = (
    _NOW
    + """
local ttl = tonumber(ARGV[1])
local expiry = now + ttl
local keep = math.ceil(ttl) + 1
local i = 2
local seen = 0
for k = 1, #KEYS do
  local n = tonumber(ARGV[i])
  for j = i + 1, i + n do redis.call('ZADD', KEYS[k], expiry, ARGV[j]) end
  i = i + n + 1
  seen = seen + n
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now)
  redis.call('EXPIRE', KEYS[k], keep)
end
return seen
"""
)


class ConnectionRegistry:
    """This process's live sockets per user, mirrored into Redis for the global limit.

    Call :meth:`start` once the event loop runs and :meth:`stop` at shutdown (which
    releases every slot this process holds).
    """

    def __init__(
        self,
        redis_url: str,
        *,
        limit: int,
        ttl: float,
        pool_limits: PoolLimits = DEFAULT_LIMITS,
    ) -> None:
        self.limit = limit
        self.ttl = max(float(ttl), 1.0)
        self.process_id = uuid.uuid4().hex[:12]
        self._redis: aioredis.Redis = async_client(
            redis_url, pool_limits, socket_timeout=5, socket_connect_timeout=5
        )
        #: releases that failed once and are being retried in the background
        self._retrying: set[asyncio.Task[None]] = set()
        #: releases waiting for the next pipelined flush, and the future it resolves
        self._removals: list[tuple[str, str]] = []
        self._removal_batch: asyncio.Future[None] | None = None
        #: reserves waiting for the next pipelined flush, each with its answer's future
        self._reservations: list[tuple[str, str, asyncio.Future[Any]]] = []
        self._reserve_scheduled = False
        self._reserve_sha = self._redis.register_script(_RESERVE).sha
        #: the reserve script is known to be in Redis's script cache
        self._reserve_loaded = False
        self._refresh = self._redis.register_script(_REFRESH)
        #: sid -> user id of every socket this process counts
        self._local: dict[str, str] = {}
        #: sids released while a heartbeat was in flight: removed again after it
        self._released_during_refresh: set[str] = set()
        self._refreshing = False
        self._task: asyncio.Task[None] | None = None

    def member(self, sid: str) -> str:
        return f"{self.process_id}:{sid}"

    async def reserve(self, user_id: str, sid: str) -> bool:
        """Take one of ``user_id``'s slots for ``sid``; False when all are taken.

        When Redis cannot be reached the connection is allowed (fail open: the
        dashboard stays usable from the database) and the next heartbeat registers it.
        """
        self._local[sid] = user_id
        # the reserves of one event-loop iteration (connects arriving together) share
        # one pipelined round trip and pool checkout, as releases do
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._reservations.append((user_id, sid, waiter))
        if not self._reserve_scheduled:
            self._reserve_scheduled = True
            task = asyncio.get_running_loop().create_task(
                self._flush_reservations(), name="ws-slot-reserve"
            )
            self._retrying.add(task)
            task.add_done_callback(self._retrying.discard)
        try:
            ok = await waiter
        except Exception as exc:  # redis raises several unrelated types
            log.warning("connection limit not checked, Redis unavailable: %s", exc)
            return True
        if not ok:
            self._local.pop(sid, None)
        return bool(ok)

    async def _flush_reservations(self) -> None:
        await asyncio.sleep(0)  # let the other reserves of this moment join
        items, self._reservations = self._reservations, []
        self._reserve_scheduled = False
        for start in range(0, len(items), RESERVE_CHUNK):
            chunk = items[start : start + RESERVE_CHUNK]
            try:
                results = await self._reserve_chunk(chunk)
            except Exception as exc:  # redis raises several unrelated types
                results = [exc] * len(chunk)
            for (_, _, waiter), result in zip(chunk, results, strict=True):
                if waiter.done():  # its connect was cancelled meanwhile
                    continue
                if isinstance(result, Exception):
                    waiter.set_exception(result)
                else:
                    waiter.set_result(result)

    async def _reserve_chunk(self, chunk: list[tuple[str, str, asyncio.Future[Any]]]) -> list[Any]:
        """The reserve script's answers for ``chunk``, in one pipelined round trip.

        EVALSHA straight into the pipeline: redis-py's Script on a pipeline first asks
        SCRIPT EXISTS, a second round trip per batch.  The script is loaded once, and
        again when a Redis that lost its script cache (restarted) answers NOSCRIPT; the
        chunk is then sent once more (a member already reserved is answered 1
        unchanged, so a reserve the first attempt did run is not counted twice).
        """
        for _attempt in range(2):
            if not self._reserve_loaded:
                await self._redis.script_load(_RESERVE)
                self._reserve_loaded = True
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id, sid, _ in chunk:
                    pipe.evalsha(
                        self._reserve_sha,
                        1,
                        presence_key(user_id),
                        self.member(sid),
                        self.limit,
                        self.ttl,
                    )
                results: list[Any] = await pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in results):
                break
            self._reserve_loaded = False
        return results

    async def release(self, sid: str) -> None:
        """Give ``sid``'s slot back (idempotent; never raises).  When Redis refuses, the
        release is retried in the background (see the module docstring)."""
        user_id = self._local.pop(sid, None)
        if user_id is None:
            return
        if self._refreshing:
            self._released_during_refresh.add(f"{user_id}\0{sid}")
        await self._remove(user_id, sid)

    async def _remove(self, user_id: str, sid: str) -> None:
        # releases that arrive together (a mass disconnect: thousands in one moment)
        # share one pipelined round trip instead of one pooled connection each, which
        # exhausted the pool's wait and turned into thousands of retries
        self._removals.append((user_id, sid))
        batch = self._removal_batch
        if batch is None or batch.done():
            batch = self._removal_batch = asyncio.get_running_loop().create_future()
            task = asyncio.get_running_loop().create_task(
                self._flush_removals(batch), name="ws-slot-release"
            )
            self._retrying.add(task)
            task.add_done_callback(self._retrying.discard)
        await asyncio.shield(batch)

    async def _flush_removals(self, batch: asyncio.Future[None]) -> None:
        await asyncio.sleep(0)  # let the other releases of this moment join
        items, self._removals = self._removals, []
        self._removal_batch = None
        # the member's expiry is at most ttl ahead (set by reserve or the last refresh)
        moot_at = time.monotonic() + self.ttl
        done = 0
        try:
            for start in range(0, len(items), RELEASE_CHUNK):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for user_id, sid in items[start : start + RELEASE_CHUNK]:
                        pipe.zrem(presence_key(user_id), self.member(sid))
                    await pipe.execute()
                done = start + RELEASE_CHUNK
        except Exception as exc:  # redis raises several unrelated types
            log.warning("connection slot release failed, retrying: %s", exc)
            left = items[done:]
            for user_id, sid in left:
                metrics.slot_release_failed("retried")
                task = asyncio.get_running_loop().create_task(
                    self._retry_remove(user_id, sid, moot_at), name="ws-slot-release-retry"
                )
                self._retrying.add(task)
                task.add_done_callback(self._retrying.discard)
        finally:
            if not batch.done():
                batch.set_result(None)

    async def _retry_remove(self, user_id: str, sid: str, moot_at: float) -> None:
        delay = RELEASE_RETRY_FIRST_S
        while True:
            if time.monotonic() + delay >= moot_at:
                metrics.slot_release_failed("given_up")
                log.warning("connection slot release given up: it expires by itself now")
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RELEASE_RETRY_MAX_S)
            try:
                await self._redis.zrem(presence_key(user_id), self.member(sid))
                return
            except Exception:  # redis raises several unrelated types
                metrics.slot_release_failed("retried")

    def count_local(self, user_id: str | None = None) -> int:
        if user_id is None:
            return len(self._local)
        return sum(1 for u in self._local.values() if u == user_id)

    async def refresh(self) -> None:
        """Re-score (or re-add after a Redis restart) every local socket's slot."""
        by_user: dict[str, list[str]] = {}
        for sid, user_id in list(self._local.items()):
            by_user.setdefault(user_id, []).append(self.member(sid))
        if not by_user:
            return
        self._refreshing = True
        try:
            # one script call per REFRESH_CHUNK users (one for a whole process up to
            # that size): a pipeline of one call per user cost ~0.1 ms of event-loop
            # time per user and a round trip per 50 users, every ttl/3 s
            users = list(by_user.items())
            for start in range(0, len(users), REFRESH_CHUNK):
                keys: list[str] = []
                args: list[Any] = [self.ttl]
                for user_id, members in users[start : start + REFRESH_CHUNK]:
                    keys.append(presence_key(user_id))
                    args.append(len(members))
                    args.extend(members)
                await self._refresh(keys=keys, args=args)
        finally:
            self._refreshing = False
            stale, self._released_during_refresh = self._released_during_refresh, set()
            for item in stale:
                user_id, sid = item.split("\0", 1)
                await self._remove(user_id, sid)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: retry next beat; slots expire meanwhile
                log.warning("connection registry heartbeat failed: %s", exc)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._heartbeat(), name="ws-presence-heartbeat")

    async def stop(self) -> None:
        """Stop the heartbeat and release every slot this process holds."""
        await cancel_and_wait(self._task)
        self._task = None
        # together: one pipelined batch, not a round trip per socket
        await asyncio.gather(*(self.release(sid) for sid in list(self._local)))
        for task in list(self._retrying):  # the slots expire within ttl on their own
            task.cancel()
        await aclose_quietly(self._redis)

    def info(self) -> dict[str, Any]:
        return {"process_id": self.process_id, "local_connections": len(self._local)}
