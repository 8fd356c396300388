"""The Socket.IO server at ``/api/ws/progress`` (DESIGN sections 4 and 5).

- connect (:meth:`SocketLayer.on_connect`): token from ``auth={"token": ...}`` or
  ``?token=`` (never logged), verified with :func:`quart_app.core.tokens.verify_token`;
  the user must exist; the per-user limit is taken in Redis
  (:class:`socket_layer.connection_limit.ConnectionRegistry`); the socket joins
  ``user:<id>`` and only THEN gets its ``snapshot``, so nothing falls between the
  snapshot/resume answers and the live stream.
- ``resume`` (:meth:`SocketLayer.on_resume`, with ack): the user's missed events,
  validated and capped.
- ``resync``: sent by the client manager (:func:`make_fanout_manager` picks it) to local
  sockets whenever its Redis listener had to re-subscribe
  (:func:`socket_layer.resync.emit_resync`).
- input python-engineio/socketio handle badly is refused in front of them
  (:mod:`socket_layer.input_guards`).

The database must be open (Tortoise) while the server handles connections: the Quart
app's ``before_serving`` opens it, and :func:`quart_app.asgi.create_asgi_app` runs
:meth:`SocketLayer.start` / :meth:`SocketLayer.stop` from the same lifespan.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import socketio

from models.history import connect_snapshot, missed_events
from quart_app.core import metrics
from quart_app.core.config import Config
from quart_app.core.logs import bind_log_context
from quart_app.core.origins import origin_allowed
from quart_app.core.redis_pools import PoolLimits
from quart_app.core.tokens import InvalidToken, verify_token
from socket_layer import asgi_environ, polling_close
from socket_layer.cluster_pubsub import parse_nodes
from socket_layer.connection_limit import ConnectionRegistry
from socket_layer.direct_websocket import install_direct_websockets, install_lean_app_inboxes
from socket_layer.input_guards import guard_polling_posts, guard_socketio_packets
from socket_layer.ping_wheel import PingWheel
from socket_layer.pooled_redis import DEFAULT_LIMITS
from socket_layer.protocol import (
    EVENT_RESUME,
    EVENT_SNAPSHOT,
    NAMESPACE,
    REASON_INVALID_TOKEN,
    REASON_TOO_MANY_CONNECTIONS,
    REASON_UNAVAILABLE,
    REDIS_CHANNEL,
    SNAPSHOT_FINISHED_WINDOW_S,
    WIRE_STOCK,
    WIRE_USER_CHANNELS,
    refusal,
    user_room,
)
from socket_layer.resume_limit import ResumeLimiter, ResumeRefused
from socket_layer.send_buffer import bound_send_buffers
from socket_layer.sessions import guard_sessions
from socket_layer.sharded_channels import ShardedChannelManager
from socket_layer.stock_manager import make_manager
from socket_layer.user_channels import UserChannelManager
from socket_layer.websocket_handler import install_lean_websockets

log = logging.getLogger(__name__)

#: how long start-up waits for the first Redis subscription before serving anyway
STARTUP_SUBSCRIBE_WAIT_S = 10.0
#: ``reeltrack_socketio_packets_refused_total`` reason of a ``resume`` with extra arguments
REFUSED_RESUME_ARGUMENTS = "resume_arguments"
#: how often the connections gauge moves upgraded sockets from polling to websocket
METRICS_REFRESH_S = 5.0


def refused(reason: str) -> socketio.exceptions.ConnectionRefusedError:
    """The refusal raised from the connect handler (counted in the metrics).

    On the wire the CONNECT_ERROR packet is ``{"message": reason, "data": {"code": 1008,
    "reason": reason}}``: socket.io-client then gives ``err.message == reason`` and
    ``err.data == {"code": 1008, "reason": reason}`` (python-socketio's client passes the
    whole dict).  A single dict argument would be stringified into ``message``.
    """
    metrics.connection_refused(reason)
    return socketio.exceptions.ConnectionRefusedError(reason, refusal(reason))


class _Refusal(Exception):
    """Raised inside the connect handler once the slot is held: release, then refuse."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ResumeRequestError(ValueError):
    """A ``resume`` payload that is not ``{"jobs": {"<uuid>": <int >= 0>, ...}}``."""


def token_from(environ: dict[str, Any], auth: Any) -> str | None:
    """The access token of a connection attempt: ``auth["token"]``, else ``?token=``."""
    if isinstance(auth, dict) and "token" in auth:
        token = auth["token"]
        return token if isinstance(token, str) else None
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    values = query.get("token")
    return values[0] if values else None


def parse_resume(payload: Any, max_jobs: int) -> dict[uuid.UUID, int]:
    """Validate a ``resume`` payload; raises :class:`ResumeRequestError` with a message
    safe to return to the client."""
    if not isinstance(payload, dict) or set(payload) != {"jobs"}:
        raise ResumeRequestError('expected {"jobs": {"<job_id>": <last_seq>, ...}}')
    jobs = payload["jobs"]
    if not isinstance(jobs, dict):
        raise ResumeRequestError('"jobs" must be an object of job id -> last seq')
    if len(jobs) > max_jobs:
        raise ResumeRequestError(f"at most {max_jobs} jobs per resume")
    parsed: dict[uuid.UUID, int] = {}
    for key, seq in jobs.items():
        try:
            job_id = uuid.UUID(str(key))
        except ValueError:
            raise ResumeRequestError("job ids must be UUIDs") from None
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ResumeRequestError("last seq must be an integer >= 0")
        parsed[job_id] = seq
    return parsed


async def build_snapshot(user_id: uuid.UUID) -> dict[str, Any] | None:
    """``{"jobs": [...]}``: the latest event of each of the user's jobs that is active or
    finished less than :data:`SNAPSHOT_FINISHED_WINDOW_S` ago, oldest job first; None
    when the user does not exist (deleted: the token is dead too).  One SQL statement
    answers both, so a connect makes one database round trip."""
    cutoff = datetime.now(UTC) - timedelta(seconds=SNAPSHOT_FINISHED_WINDOW_S)
    jobs = await connect_snapshot(user_id, cutoff)
    return None if jobs is None else {"jobs": jobs}


class SocketLayer:
    """The server and the state that lives next to it in one web process."""

    def __init__(
        self,
        config: Config,
        sio: socketio.AsyncServer,
        registry: ConnectionRegistry,
    ) -> None:
        self.config = config
        self.sio = sio
        self.registry = registry
        #: sid -> user id (text) of sockets that passed connect
        self.users: dict[str, str] = {}
        self._metrics_task: asyncio.Task[None] | None = None
        self.resume_limiter = ResumeLimiter(config.resume_burst, config.resume_per_second)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool | None:
        """Accept (None), refuse (raises ConnectionRefusedError), or return False when
        the client left before the handler finished (nothing of it is kept)."""
        try:
            user_id = verify_token(
                self.config.secret_key, token_from(environ, auth), self.config.access_token_ttl
            )
        except InvalidToken:
            raise refused(REASON_INVALID_TOKEN) from None
        uid = str(user_id)
        bind_log_context(user_id=uid)
        # one Redis round trip (the slot), one SQL statement (user check + snapshot):
        # the user check rides on the snapshot query, so a deleted user's token takes a
        # slot for the length of that query and is then refused
        if not await self.registry.reserve(uid, sid):
            raise refused(REASON_TOO_MANY_CONNECTIONS)
        try:
            # the room first: from here on every live event reaches this socket, so
            # the snapshot (and any resume) cannot leave a hole before the live stream
            await self.sio.enter_room(sid, user_room(uid), namespace=NAMESPACE)
            self.users[sid] = uid
            try:
                snapshot = await build_snapshot(user_id)
            except Exception:  # the DB is down: a retry later may work, the token is fine
                log.exception("connect: snapshot failed")
                raise _Refusal(REASON_UNAVAILABLE) from None
            if snapshot is None:  # a deleted user's token is dead too
                raise _Refusal(REASON_INVALID_TOKEN)
            await self.sio.emit(
                EVENT_SNAPSHOT, snapshot, to=sid, namespace=NAMESPACE, ignore_queue=True
            )
            if not self._still_there(sid):
                # the client left while this handler awaited: python-socketio calls no
                # disconnect handler for a socket that never finished connecting, so
                # its slot (and room) would be held for as long as this process lives
                self.users.pop(sid, None)
                await self.registry.release(sid)
                return False
            opened_on = metrics.opening_transport(environ.get("QUERY_STRING", ""))
            metrics.connection_opened(sid, self._transport(sid), opened_on)
        except BaseException as exc:
            self.users.pop(sid, None)
            await self.registry.release(sid)
            if isinstance(exc, _Refusal):
                raise refused(exc.reason) from None
            if isinstance(exc, Exception):  # not cancellation: refuse instead of hanging
                log.exception("connect: snapshot failed")
                raise refused(REASON_UNAVAILABLE) from exc
            raise
        return None

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        # the transport it ends on: an upgrade the periodic refresh has not seen yet
        metrics.connection_closed(sid, reason, self._transport(sid))
        self.users.pop(sid, None)
        await self.registry.release(sid)

    async def on_resume(self, sid: str, *args: Any) -> dict[str, Any]:
        """The ack of ``resume``: ``{"events", "truncated"}``, or ``{"error": message}``
        for a payload that is not exactly one ``{"jobs": ...}`` argument (counted when
        there are more arguments: python-socketio would raise a TypeError for them), or
        at once ``{"error": "resume_in_progress"}`` while this socket has one in flight
        and ``{"error": "resume_rate_limited", "retry_after": s}`` past the user's
        allowance (:mod:`socket_layer.resume_limit`)."""
        uid = self.users.get(sid)
        if uid is None:
            return {"error": "not connected"}
        if len(args) > 1:
            metrics.packet_refused(REFUSED_RESUME_ARGUMENTS)
            return {"error": 'resume takes one argument: {"jobs": {...}}'}
        payload = args[0] if args else None
        try:
            last_seqs = parse_resume(payload, self.config.resume_max_jobs)
        except ResumeRequestError as exc:
            return {"error": str(exc)}
        try:
            self.resume_limiter.acquire(sid, uid)
        except ResumeRefused as refusal:
            metrics.packet_refused(refusal.error)
            if refusal.retry_after:
                return {"error": refusal.error, "retry_after": refusal.retry_after}
            return {"error": refusal.error}
        try:
            events, truncated = await missed_events(uid, last_seqs, self.config.resume_max_events)
        except Exception:  # the DB is down: answer now so the client retries, not waits
            log.exception("resume: history lookup failed")
            return {"error": REASON_UNAVAILABLE}
        finally:
            self.resume_limiter.release(sid)
        return {"events": events, "truncated": truncated}

    async def start(self) -> None:
        """Start the Redis listener and the registry heartbeat; waits (bounded) for the
        listener's first subscription so no event published after start-up is lost."""
        manager = self.sio.manager
        # python-socketio starts the manager lazily on the first client; start it now
        self.sio.manager_initialized = True
        manager.initialize()
        subscribed = getattr(manager, "subscribed", None)
        if isinstance(subscribed, asyncio.Event):
            try:
                await asyncio.wait_for(subscribed.wait(), STARTUP_SUBSCRIBE_WAIT_S)
            except TimeoutError:
                log.warning("Redis not reachable at start-up; live events resume when it is")
        self.registry.start()
        self._metrics_task = asyncio.create_task(self._refresh_metrics())

    def _still_there(self, sid: str) -> bool:
        """Whether ``sid``'s engine.io session is still open."""
        try:
            eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        except Exception:  # KeyError and friends: the socket is gone
            return False
        socket = self.sio.eio.sockets.get(eio_sid) if eio_sid is not None else None
        return socket is not None and not (socket.closed or socket.closing)

    def _transport(self, sid: str) -> str | None:
        """The socket's transport now (``polling``/``websocket``), None when gone."""
        try:
            return str(self.sio.transport(sid, namespace=NAMESPACE))
        except Exception:  # KeyError and friends: the socket is gone
            return None

    async def _refresh_metrics(self) -> None:
        # polling sockets upgrade to websocket after connect, and engine.io tells no one
        while True:
            await asyncio.sleep(METRICS_REFRESH_S)
            metrics.refresh_transports(self._transport)

    async def disconnect_all(self) -> None:
        """Close every socket of this process (clients reconnect elsewhere and resume)."""
        eio = self.sio.eio
        sockets = list(eio.sockets.values())
        # close without waiting for each queue: a polling client that never polls
        # again would hold engineio's own disconnect() forever
        await asyncio.gather(
            *(s.close(wait=False, reason=eio.reason.SERVER_DISCONNECT) for s in sockets),
            return_exceptions=True,
        )
        try:  # give the CLOSE packets a moment to go out
            await asyncio.wait_for(asyncio.gather(*(s.queue.join() for s in sockets)), 0.5)
        except (TimeoutError, Exception):  # clients that went away; nothing to flush
            pass
        for s in sockets:
            eio.sockets.pop(s.sid, None)
        # together, so their slot releases share pipelined round trips
        await asyncio.gather(*(self.on_disconnect(sid) for sid in list(self.users)))

    async def stop(self) -> None:
        """Disconnect every local socket, release its slots, stop background tasks."""
        if self._metrics_task is not None:
            self._metrics_task.cancel()
        await self.disconnect_all()
        try:
            await asyncio.wait_for(self.sio.shutdown(), 5)
        except Exception:  # shutting down anyway
            log.exception("socket server shutdown")
        await self.registry.stop()
        wheel = getattr(self.sio.eio, "ping_wheel", None)
        if wheel is not None:
            await wheel.stop()
        close = getattr(self.sio.manager, "close", None)
        if close is not None:
            await close()


def make_fanout_manager(
    redis_url: str,
    kind: str,
    *,
    channel: str = REDIS_CHANNEL,
    pool_limits: PoolLimits = DEFAULT_LIMITS,
    cluster: tuple[str, ...] = (),
) -> socketio.AsyncManager:
    """The client manager for ``SOCKETIO_MANAGER``: ``user-channels`` (default,
    :class:`~socket_layer.user_channels.UserChannelManager`; with ``cluster`` nodes
    (``FANOUT_REDIS_CLUSTER``) its user rooms on that Redis Cluster,
    :class:`~socket_layer.sharded_channels.ShardedChannelManager`) or ``stock``
    (python-socketio's AsyncRedisManager with resync; the baseline).  ``pool_limits``
    bound its publish pool (``REDIS_PUBSUB_POOL_SIZE``, ``REDIS_POOL_TIMEOUT``: a
    publish waits for a free connection); an unknown ``kind``, or ``stock`` with a
    cluster, raises ValueError."""
    if cluster:
        if kind != WIRE_USER_CHANNELS:
            raise ValueError(f"FANOUT_REDIS_CLUSTER needs SOCKETIO_MANAGER={WIRE_USER_CHANNELS}")
        return ShardedChannelManager(
            redis_url, parse_nodes(cluster), channel=channel, pool_limits=pool_limits
        )
    if kind == WIRE_STOCK:
        return make_manager(redis_url, channel=channel, pool_limits=pool_limits)
    if kind == WIRE_USER_CHANNELS:
        return UserChannelManager(redis_url, channel=channel, pool_limits=pool_limits)
    raise ValueError(f"unknown SOCKETIO_MANAGER {kind!r}")


def create_sio(
    config: Config, *, client_manager: socketio.AsyncManager | None = None
) -> socketio.AsyncServer:
    """The Socket.IO server for one web process.

    ``client_manager`` defaults to the one ``config.socketio_manager`` names
    (:func:`make_fanout_manager`) on ``config.redis_url``; the
    connection limit lives in Redis too, so a missing ``redis_url`` raises ValueError.
    The :class:`SocketLayer` is reachable as ``sio.reeltrack``; call its ``start()``
    and ``stop()`` from the ASGI lifespan (``quart_app.asgi`` does).
    """
    if not config.redis_url:
        raise ValueError("REDIS_URL is required for the Socket.IO server")
    redis_url = config.redis_url
    manager = client_manager or make_fanout_manager(
        redis_url,
        config.socketio_manager,
        pool_limits=PoolLimits.of(config, config.redis_pubsub_pool_size),
        cluster=config.fanout_redis_cluster,
    )
    # the token may sit in engineio's request logs: keep both loggers quiet
    for name in ("socketio", "socketio.server", "engineio", "engineio.server"):
        logging.getLogger(name).setLevel(logging.WARNING)

    def origin_ok(origin: str | None, environ: dict[str, Any]) -> bool:
        # the REST API's rule (CORS_ORIGINS plus the app's own origin); python-engineio's
        # own list form would refuse the app's own origin as soon as CORS_ORIGINS is set.
        # engineio also asks with no Origin at all (non-browser clients: nothing to check)
        if not origin:
            return True
        return origin_allowed(origin, config, environ.get("HTTP_HOST", ""))

    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        cors_allowed_origins=origin_ok,
        ping_interval=config.ws_ping_interval,
        ping_timeout=config.ws_ping_timeout,
        max_http_buffer_size=config.ws_max_message_bytes,
        logger=False,
        engineio_logger=False,
    )
    registry = ConnectionRegistry(
        redis_url,
        limit=config.ws_max_connections_per_user,
        ttl=config.ws_presence_ttl,
        pool_limits=PoolLimits.of(config),
    )
    layer = SocketLayer(config, sio, registry)
    sio.on("connect", layer.on_connect, namespace=NAMESPACE)
    sio.on("disconnect", layer.on_disconnect, namespace=NAMESPACE)
    sio.on(EVENT_RESUME, layer.on_resume, namespace=NAMESPACE)
    # malformed or oversize input that python-engineio/socketio handle badly: refuse it
    # in front of them (socket_layer/input_guards.py)
    guard_polling_posts(
        sio.eio,
        config.ws_max_message_bytes,
        read_timeout=config.body_read_timeout,
        min_rate=config.body_min_rate,
    )
    # one ping timer per process, not a task per socket per interval
    PingWheel.install(sio.eio)
    guard_socketio_packets(sio)
    # what may wait for a client that does not read is bounded per socket; the websocket
    # writer (whichever manager) counts its share and can reset the connection
    install_direct_websockets(sio.eio)
    bound_send_buffers(sio.eio, config.ws_send_buffer_bytes)
    # and no writer task or per-frame read task per websocket (the queue writes), no
    # class per request in the environ, no idle asyncio.Queue under each connection
    install_lean_websockets()
    asgi_environ.install(sio.eio)
    install_lean_app_inboxes()
    # a long-polling client's CLOSE answers its pending GET now, not after the poll
    # timeout (which also held a stopping process for its graceful timeout)
    polling_close.install()
    # each session bound to the client that opened it; anonymous ones capped and timed out
    guard_sessions(
        sio,
        connect_timeout=config.ws_connect_timeout,
        max_pending_per_address=config.ws_max_pending_per_address,
        max_pending=config.ws_max_pending_sessions,
    )
    # python-socketio's entry point only awaits engine.io's: hand engine.io's coroutine
    # straight to the ASGI app instead (one frame less under every websocket)
    sio.handle_request = lambda *args, **kwargs: sio.eio.handle_request(*args, **kwargs)
    sio.reeltrack = layer
    return sio


def layer_of(sio: socketio.AsyncServer) -> SocketLayer:
    """The :class:`SocketLayer` of a server made by :func:`create_sio`."""
    layer: SocketLayer = sio.reeltrack
    return layer
