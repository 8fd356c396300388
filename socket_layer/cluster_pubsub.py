"""Sharded pub/sub subscriptions on a Redis Cluster (SSUBSCRIBE), following the cluster.

A sharded channel lives on the slot of its name (its hash tag) and is served by the
master owning that slot only.  :class:`ShardedSubscriptions` keeps one connection per
master that owns a wanted channel, subscribes each channel on its owner, and follows
the cluster when a channel's subscription is lost:

- ``-MOVED <slot> <host:port>`` in answer to an SSUBSCRIBE (our slot map was stale):
  the channel is subscribed again on the node the error names;
- a ``sunsubscribe`` pushed by the server (its slot migrated to another master): the
  slot map is read again and the channel subscribed on its new owner;
- a connection lost or not answering PING (the master died, its replica is promoted):
  every channel it carried is placed again, retrying with backoff until the slot map
  names a master that answers.

Anything published while a channel was not subscribed is gone, so once a channel that
had been live (or whose first subscribe was given up on, :meth:`mark_gap`) is confirmed
again, ``on_restored`` is called with it: the owner tells those rooms' sockets to
resync, and only those.  Channels on the other shards are not touched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import hiredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from socket_layer.protocol import RETRY_FIRST_S, RETRY_MAX_S
from socket_layer.redis_subscriber import CONNECT_TIMEOUT_S, OnMessage, RedisSubscriber
from socket_layer.stopping import cancel_and_wait

log = logging.getLogger(__name__)

Addr = tuple[str, int]
SLOTS = 16384
#: a shard connection is pinged this often and dropped when no answer comes in time
HEALTH_INTERVAL_S = 5.0
HEALTH_TIMEOUT_S = 3.0
#: attempts redis-py's cluster client makes for one SPUBLISH (MOVED, a lost node) before
#: the publish counts as failed (the subscribers of that shard resync anyway)
PUBLISH_ATTEMPTS = 3


def cluster_client(nodes: list[Addr], max_connections: int) -> RedisCluster:
    """redis-py's cluster client on ``nodes`` (it routes each SPUBLISH to its slot's
    master and follows MOVED)."""
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        socket_timeout=2,
        socket_connect_timeout=2,
        cluster_error_retry_attempts=PUBLISH_ATTEMPTS,
        max_connections=max_connections,
        require_full_coverage=False,
    )


def parse_nodes(items: Iterable[str]) -> list[Addr]:
    """``host:port`` items as addresses; raises ValueError for a malformed one."""
    nodes: list[Addr] = []
    for item in items:
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{item!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ValueError("no cluster node given")
    return nodes


def channel_slot(channel: str) -> int:
    """The cluster slot of ``channel`` (its hash tag's, when it has one)."""
    return int(key_slot(channel.encode()))


async def ask_node(addr: Addr, *args: str) -> object:
    """One command to one node on a short-lived connection; its decoded reply.

    Raises OSError/TimeoutError when the node cannot be reached."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr), CONNECT_TIMEOUT_S)
    try:
        parts = [f"*{len(args)}\r\n".encode()]
        parts += [b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args]
        writer.write(b"".join(parts))
        parser = hiredis.Reader(encoding="utf-8", errors="replace")
        while True:
            data = await asyncio.wait_for(reader.read(65536), CONNECT_TIMEOUT_S)
            if not data:
                raise ConnectionError(f"{addr[0]}:{addr[1]} closed the connection")
            parser.feed(data)
            reply = parser.gets()
            if reply is not False:
                return reply
    finally:
        writer.close()


class ShardConnection(RedisSubscriber):
    """One connection in sharded-subscribe mode to one master (RESP2)."""

    def __init__(self, addr: Addr, owner: ShardedSubscriptions) -> None:
        super().__init__(owner.on_message, lambda kind, channel: None)
        self.addr = addr
        self.owner = owner
        self.pong = asyncio.Event()
        #: channels this side unsubscribed whose ``sunsubscribe`` answer is still due
        self.own_unsubscribes: dict[str, int] = {}

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        deliver = self.on_message
        owner = self.owner
        while True:
            msg = reader.gets()
            if msg is False:
                return
            if type(msg) is list and msg:
                kind = msg[0]
                if kind == "smessage":
                    deliver(msg[1], msg[2])
                elif kind == "ssubscribe":
                    owner._confirmed(self, msg[1])
                elif kind == "sunsubscribe":
                    owner._unsubscribed(self, msg[1])
                elif kind == "pong":
                    self.pong.set()
            elif isinstance(msg, hiredis.ReplyError):
                owner._refused(self, str(msg))


@dataclass
class _Sub:
    slot: int
    #: resolved when the channel was first confirmed (enter_room waits for it)
    confirmed: asyncio.Future[None]
    #: the connection its SSUBSCRIBE went to (None: to be placed)
    conn: ShardConnection | None = None
    #: messages may have been missed: the room is resynced once confirmed again
    gap: bool = False
    live: bool = False


@dataclass
class _Stats:
    map_refreshes: int = 0
    moved: int = 0
    migrated: int = 0
    nodes_lost: int = 0
    restored: int = 0
    errors: list[str] = field(default_factory=list)


class ShardedSubscriptions:
    """Wanted sharded channels, each subscribed on the master owning its slot (see the
    module docstring).  ``on_message(channel, payload)`` runs in the read call;
    ``on_restored(channels)`` after channels whose messages may have been missed are
    subscribed again."""

    def __init__(
        self,
        seeds: list[Addr],
        on_message: OnMessage,
        on_restored: Callable[[list[str]], None],
    ) -> None:
        self.seeds = list(seeds)
        self.known: list[Addr] = list(seeds)
        self.on_message = on_message
        self.on_restored = on_restored
        self.slots: list[Addr | None] = [None] * SLOTS
        self.wanted: dict[str, _Sub] = {}
        self.conns: dict[Addr, ShardConnection] = {}
        self.stats = _Stats()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._need_map = True
        self._failing = False
        self._restored: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # -------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Start placing subscriptions and pinging the shards (idempotent)."""
        if not self._tasks:
            self._tasks = [
                asyncio.ensure_future(self._place_forever()),
                asyncio.ensure_future(self._ping_forever()),
            ]

    async def close(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        self._closed = True
        for conn in list(self.conns.values()):
            if conn.transport is not None:
                conn.transport.close()
        self.conns.clear()

    # -------------------------------------------------------------- the owner's side

    def subscribe(self, channel: str) -> asyncio.Future[None]:
        """Want ``channel``; the future resolves once its owner confirmed it."""
        sub = self.wanted.get(channel)
        if sub is None:
            sub = _Sub(channel_slot(channel), asyncio.get_running_loop().create_future())
            self.wanted[channel] = sub
            self._dirty.add(channel)
            self._wake.set()
        return sub.confirmed

    def mark_gap(self, channel: str) -> None:
        """Its subscriber stopped waiting: once ``channel`` is confirmed, it is restored."""
        sub = self.wanted.get(channel)
        if sub is not None and not sub.live:
            sub.gap = True

    def unsubscribe(self, channel: str) -> None:
        """No longer want ``channel`` (its owner is told to stop sending it)."""
        sub = self.wanted.pop(channel, None)
        if sub is None:
            return
        self._dirty.discard(channel)
        if not sub.confirmed.done():
            sub.confirmed.cancel()
        conn = sub.conn
        if conn is not None and conn.transport is not None:
            conn.own_unsubscribes[channel] = conn.own_unsubscribes.get(channel, 0) + 1
            conn.command("SUNSUBSCRIBE", channel)

    def shard_of(self, channel: str) -> Addr | None:
        """The master ``channel`` is subscribed on now (None while it is being placed)."""
        sub = self.wanted.get(channel)
        return sub.conn.addr if sub is not None and sub.conn is not None and sub.live else None

    # -------------------------------------------------------------- replies

    def _confirmed(self, conn: ShardConnection, channel: str) -> None:
        sub = self.wanted.get(channel)
        if sub is None or sub.conn is not conn:
            return  # an answer for a subscription placed elsewhere since
        sub.live = True
        if not sub.confirmed.done():
            sub.confirmed.set_result(None)
        if sub.gap:
            sub.gap = False
            self.stats.restored += 1
            if not self._restored:
                asyncio.get_running_loop().call_soon(self._flush_restored)
            self._restored.add(channel)

    def _flush_restored(self) -> None:
        channels = sorted(c for c in self._restored if c in self.wanted)
        self._restored.clear()
        if channels:
            self.on_restored(channels)

    def _lose(self, sub: _Sub, channel: str) -> None:
        """A subscription is no longer live: place it again (its room will resync)."""
        if sub.live:
            sub.gap = True
        sub.live = False
        sub.conn = None
        self._dirty.add(channel)
        self._wake.set()

    def _unsubscribed(self, conn: ShardConnection, channel: str) -> None:
        pending = conn.own_unsubscribes.get(channel, 0)
        if pending:
            if pending == 1:
                del conn.own_unsubscribes[channel]
            else:
                conn.own_unsubscribes[channel] = pending - 1
            return
        sub = self.wanted.get(channel)
        if sub is None or sub.conn is not conn:
            return
        # the server dropped it: the slot now belongs to another master
        self.stats.migrated += 1
        log.info("%s moved off %s:%d; subscribing on its new owner", channel, *conn.addr)
        self._need_map = True
        self._lose(sub, channel)

    def _refused(self, conn: ShardConnection, error: str) -> None:
        words = error.split()
        if len(words) == 3 and words[0] == "MOVED" and words[1].isdigit():
            slot = int(words[1])
            host, _, port = words[2].rpartition(":")
            self.slots[slot] = (host or conn.addr[0], int(port))
            self.stats.moved += 1
            for ch in [c for c in conn.own_unsubscribes if channel_slot(c) == slot]:
                del conn.own_unsubscribes[ch]
            hit = lambda s: s.slot == slot  # noqa: E731
        else:  # CLUSTERDOWN, TRYAGAIN, LOADING...: every pending subscribe there again
            self.stats.errors.append(error)
            self._need_map = True
            self._failing = True
            hit = lambda s: True  # noqa: E731
        for channel, sub in list(self.wanted.items()):
            if sub.conn is conn and not sub.live and hit(sub):
                self._lose(sub, channel)

    def _conn_lost(self, conn: ShardConnection) -> None:
        if self._closed:
            return
        if self.conns.get(conn.addr) is conn:
            del self.conns[conn.addr]
        lost = [(c, s) for c, s in self.wanted.items() if s.conn is conn]
        if lost:
            self.stats.nodes_lost += 1
            log.warning(
                "Redis Cluster node %s:%d lost; placing its %d channels again",
                *conn.addr,
                len(lost),
            )
            self._need_map = True
        for channel, sub in lost:
            self._lose(sub, channel)

    # -------------------------------------------------------------- placing

    async def _place_forever(self) -> None:
        retry = RETRY_FIRST_S
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._failing:
                self._failing = False
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX_S)
            try:
                if self._need_map:
                    await self._read_map()
                    self._need_map = False
                left = await self._place_dirty()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # OSError, TimeoutError, ConnectionError, bad replies
                log.warning("Redis Cluster not reachable (%s: %s)", type(exc).__name__, exc)
                left = True
            if left:
                self._need_map = True
                self._failing = True
                self._wake.set()
            elif not self._failing:
                retry = RETRY_FIRST_S

    async def _read_map(self) -> None:
        """Read the slot owners from the first node that answers; raises ConnectionError
        when none does."""
        last: Exception | None = None
        for addr in list(self.known):
            try:
                reply = await ask_node(addr, "CLUSTER", "SLOTS")
            except (OSError, TimeoutError, ConnectionError) as exc:
                last = exc
                continue
            if not isinstance(reply, list):
                last = ConnectionError(f"CLUSTER SLOTS from {addr}: {reply!r}")
                continue
            slots: list[Addr | None] = [None] * SLOTS
            seen: list[Addr] = [addr]
            for start, end, master, *replicas in reply:
                owner = (master[0] or addr[0], int(master[1]))
                slots[int(start) : int(end) + 1] = [owner] * (int(end) - int(start) + 1)
                seen += [owner, *((r[0] or addr[0], int(r[1])) for r in replicas)]
            self.slots = slots
            # ask the node that answered first next time, then the others, then the seeds
            self.known = list(dict.fromkeys([*seen, *self.known, *self.seeds]))
            self.stats.map_refreshes += 1
            return
        raise ConnectionError(f"no Redis Cluster node answered CLUSTER SLOTS ({last})")

    async def _place_dirty(self) -> bool:
        """Send SSUBSCRIBE for every channel to be placed; True when some could not be."""
        batch, self._dirty = self._dirty, set()
        by_node: dict[Addr, list[str]] = {}
        left: set[str] = set()
        for channel in batch:
            sub = self.wanted.get(channel)
            if sub is None or sub.conn is not None:
                continue
            owner = self.slots[sub.slot]
            if owner is None:
                left.add(channel)
            else:
                by_node.setdefault(owner, []).append(channel)
        for addr, channels in by_node.items():
            try:
                conn = await self._connection(addr)
            except (OSError, TimeoutError) as exc:
                log.info("Redis Cluster node %s:%d not reachable (%s)", *addr, exc)
                left.update(channels)
                continue
            for channel in channels:
                sub = self.wanted.get(channel)
                if sub is None or sub.conn is not None:
                    continue  # unsubscribed, or placed, while connecting
                sub.conn = conn
                # one channel per command: channels of different slots may not be mixed
                conn.command("SSUBSCRIBE", channel)
        self._dirty |= left
        return bool(left)

    async def _connection(self, addr: Addr) -> ShardConnection:
        conn = self.conns.get(addr)
        if conn is not None and conn.transport is not None:
            return conn
        loop = asyncio.get_running_loop()
        conn = ShardConnection(addr, self)
        await asyncio.wait_for(loop.create_connection(lambda: conn, *addr), CONNECT_TIMEOUT_S)
        self.conns[addr] = conn
        conn.lost.add_done_callback(lambda _f: self._conn_lost(conn))
        return conn

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_INTERVAL_S)
            await asyncio.gather(*(self._ping(c) for c in list(self.conns.values())))

    async def _ping(self, conn: ShardConnection) -> None:
        conn.pong.clear()
        conn.command("PING")
        try:
            await asyncio.wait_for(conn.pong.wait(), HEALTH_TIMEOUT_S)
        except TimeoutError:
            log.warning("Redis Cluster node %s:%d did not answer PING", *conn.addr)
            if conn.transport is not None:
                conn.transport.abort()
