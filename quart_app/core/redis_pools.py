"""Redis clients whose connection pools are bounded AND wait for a free connection.

redis-py's default pool (asyncio and blocking alike) opens connections up to
``max_connections`` (100 unless told) and then raises ``Too many connections`` at
once.  Under a burst (thousands of sockets closing together, a flood of REST requests
each checking the rate limit) that turned into failed slot releases and a rate limit
that let everything through.  Every Redis client of reeltrack is built here instead:
its pool holds at most ``size`` connections and a command that finds none free waits
up to ``timeout`` seconds for one (then raises :class:`redis.exceptions.ConnectionError`
"No connection available.").

Sentinel.  ``REDIS_URL`` may name a Sentinel-managed master instead of one server::

    redis+sentinel://[[username:]password@]host:port[,host:port...]/<master-name>[/<db>]

e.g. ``redis+sentinel://s1:26379,s2:26379,s3:26379/reeltrack/0``.  The hosts are the
Sentinels (asked without a password); ``username``/``password`` are the master's.
Clients built from such a URL ask the Sentinels for the master's address on every
new connection, and a command that met a dead or demoted master (connection error,
``READONLY``) is retried every ``FAILOVER_RETRY_S`` for ``REDIS_FAILOVER_WAIT``
seconds, reconnecting each time: it lands on the new master once one is promoted.
:func:`master_url` gives the current master as a plain ``redis://`` URL for
connections built outside redis-py (the pub/sub listener), to be called again on
every reconnect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import redis
import redis.sentinel
from redis import asyncio as aioredis
from redis.asyncio import sentinel as aiosentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ConstantBackoff
from redis.retry import Retry

SENTINEL_SCHEME = "redis+sentinel"
#: seconds between two attempts of a command while the master fails over
FAILOVER_RETRY_S = 0.25
#: connection options that also apply to the connections to the Sentinels themselves
_SENTINEL_OPTIONS = ("socket_timeout", "socket_connect_timeout", "socket_keepalive")


@dataclass(frozen=True)
class PoolLimits:
    """How many connections a pool may hold and how long a command waits for one."""

    size: int
    timeout: float
    #: Sentinel only: how long a command keeps reconnecting to whichever server the
    #: Sentinels name master (a failover takes a few seconds) before it fails
    failover_wait: float = 15.0

    @classmethod
    def of(cls, config: Any, size: int | None = None) -> PoolLimits:
        """``REDIS_POOL_SIZE`` / ``REDIS_POOL_TIMEOUT`` / ``REDIS_FAILOVER_WAIT`` of
        ``config`` (``size`` overrides the size, e.g. with ``REDIS_PUBSUB_POOL_SIZE``)."""
        return cls(
            size or config.redis_pool_size, config.redis_pool_timeout, config.redis_failover_wait
        )


@dataclass(frozen=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    def master_options(self) -> dict[str, Any]:
        """Connection options for the master's connections (db, credentials)."""
        options: dict[str, Any] = {"db": self.db}
        if self.username:
            options["username"] = self.username
        if self.password:
            options["password"] = self.password
        return options


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() == SENTINEL_SCHEME


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Parse ``redis+sentinel://[[user:]password@]host:port[,host:port...]/<master>[/<db>]``.

    Raises ValueError naming what is wrong (no host, a port that is not a number, no
    master name, a db that is not a number, anything after the db)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        creds, netloc = netloc.rsplit("@", 1)
        user, sep, pw = creds.partition(":")
        username, password = (unquote(user) or None, unquote(pw)) if sep else (None, unquote(user))
    sentinels: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"Sentinel address {item!r} is not host:port")
        sentinels.append((host.strip("[]"), int(port)))
    segments = [unquote(p) for p in parts.path.split("/")[1:]]
    if not segments or not segments[0]:
        raise ValueError("the URL names no master (redis+sentinel://host:port/<master-name>)")
    if len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise ValueError("after the master name only a db number may follow: /<master>/<db>")
    db = int(segments[1]) if len(segments) == 2 else 0
    return SentinelTarget(tuple(sentinels), segments[0], db, username, password or None)


class _AsyncMasterConnection(aiosentinel.SentinelManagedConnection):
    """A connection to the master the Sentinels name, also when it reconnects itself.

    redis-py 8's ``send_packed_command`` reconnects a dropped connection through
    ``connect_check_health``, which retries the address of the master it last had
    (the one just killed) for the whole failover wait, then fails: RQ's worker then
    quits.  That reconnect goes through ``connect`` instead, which asks the Sentinels
    again on every attempt (``connect_to`` calls back here with
    ``retry_socket_connect=False``).
    """

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if retry_socket_connect and self._reader is None:
            await self.connect()
            return
        await super().connect_check_health(check_health, retry_socket_connect)


class _MasterConnection(redis.sentinel.SentinelManagedConnection):
    """The blocking counterpart of :class:`_AsyncMasterConnection`."""

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if retry_socket_connect and self._sock is None:
            self.connect()
            return
        super().connect_check_health(check_health, retry_socket_connect)


class _AsyncWaitingSentinelPool(
    aiosentinel.SentinelConnectionPool, aioredis.BlockingConnectionPool
):
    """redis-py's Sentinel pool (connects to whichever server the Sentinels name
    master), bounded and waiting like :class:`aioredis.BlockingConnectionPool`; a full
    close (the client's ``aclose``) also closes the connections to the Sentinels."""

    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        kwargs.setdefault("connection_class", _AsyncMasterConnection)
        super().__init__(service_name, sentinel_manager, **kwargs)

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:
            await self.sentinel_manager.aclose()


class _WaitingSentinelPool(redis.sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """The blocking counterpart of :class:`_AsyncWaitingSentinelPool`."""

    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        kwargs.setdefault("connection_class", _MasterConnection)
        super().__init__(service_name, sentinel_manager, **kwargs)


def _sentinel_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in _SENTINEL_OPTIONS}


def _failover_retries(limits: PoolLimits) -> int:
    """Attempts (after the first) that span ``limits.failover_wait``: each reconnect asks
    the Sentinels again, so a command issued mid-failover lands on the new master.
    (RQ, for one, quits when a command fails after its job ran.)"""
    return max(3, math.ceil(limits.failover_wait / FAILOVER_RETRY_S))


@dataclass(frozen=True)
class _Flavour:
    """The classes one side of redis-py (asyncio or blocking) builds a client from."""

    sentinel: Any
    sentinel_pool: type
    retry: Any
    pool: Any
    client: Any


_ASYNC = _Flavour(
    aiosentinel.Sentinel,
    _AsyncWaitingSentinelPool,
    AsyncRetry,
    aioredis.BlockingConnectionPool,
    aioredis.Redis,
)
_SYNC = _Flavour(
    redis.sentinel.Sentinel,
    _WaitingSentinelPool,
    Retry,
    redis.BlockingConnectionPool,
    redis.Redis,
)


def _client(flavour: _Flavour, url: str, limits: PoolLimits, options: dict[str, Any]) -> Any:
    """A ``flavour`` client on its own waiting pool: of ``url``'s server, or for a
    ``redis+sentinel://`` URL of the master the Sentinels name."""
    if is_sentinel_url(url):
        target = parse_sentinel_url(url)
        manager = flavour.sentinel(
            list(target.sentinels), sentinel_kwargs=_sentinel_options(options)
        )
        return manager.master_for(
            target.master,
            connection_pool_class=flavour.sentinel_pool,
            retry=flavour.retry(ConstantBackoff(FAILOVER_RETRY_S), _failover_retries(limits)),
            max_connections=limits.size,
            timeout=limits.timeout,
            **target.master_options(),
            **options,
        )
    pool = flavour.pool.from_url(
        url, max_connections=limits.size, timeout=limits.timeout, **options
    )
    return flavour.client.from_pool(pool)


def async_client(url: str, limits: PoolLimits, **options: Any) -> aioredis.Redis:
    """An asyncio client on its own waiting pool (closed with the client's ``aclose``).

    ``options`` are connection options (``socket_timeout``...), as for ``from_url``.
    A ``redis+sentinel://`` URL gives a client of the master the Sentinels name.
    """
    client: aioredis.Redis = _client(_ASYNC, url, limits, options)
    return client


def sync_client(url: str, limits: PoolLimits, **options: Any) -> redis.Redis:
    """A blocking client (for threads, RQ) on its own waiting pool; a
    ``redis+sentinel://`` URL gives a client of the master the Sentinels name."""
    client: redis.Redis = _client(_SYNC, url, limits, options)
    return client


async def master_url(url: str, wait_s: float = 5.0) -> str:
    """``url`` itself, or for a ``redis+sentinel://`` URL the master the Sentinels name
    now, as ``redis://[user:password@]host:port/db``.

    Raises :class:`redis.exceptions.ConnectionError` (``MasterNotFoundError``) when no
    Sentinel answers or none knows a healthy master (e.g. mid-failover)."""
    if not is_sentinel_url(url):
        return url
    target = parse_sentinel_url(url)
    manager = aiosentinel.Sentinel(
        list(target.sentinels),
        sentinel_kwargs={"socket_timeout": wait_s, "socket_connect_timeout": wait_s},
    )
    try:
        host, port = await manager.discover_master(target.master)
    finally:
        await manager.aclose()
    creds = ""
    if target.password:
        user = quote(target.username, safe="") if target.username else ""
        creds = f"{user}:{quote(target.password, safe='')}@"
    host_text = f"[{host}]" if ":" in str(host) else str(host)
    return f"redis://{creds}{host_text}:{port}/{target.db}"


def pool_exhausted(exc: BaseException) -> bool:
    """Whether ``exc`` is a pool's bounded wait running out (every connection busy for
    ``timeout`` seconds: the process is saturated), not Redis being unreachable."""
    return (
        isinstance(exc, redis.exceptions.ConnectionError) and str(exc) == "No connection available."
    )
