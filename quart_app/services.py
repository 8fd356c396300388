"""Per-app connections to Redis and the progress emitter, opened in ``before_serving``.

Views reach them through :func:`services`; nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from quart import Quart, current_app
from redis import Redis as SyncRedis

from models.entities import ProcessingJob
from quart_app.core.config import REDIS_KEY_PREFIX as REDIS_KEY_PREFIX  # re-exported
from quart_app.core.config import Config
from quart_app.core.redis_pools import PoolLimits, async_client, sync_client
from quart_app.errors import ApiError
from socket_layer.emitter import ProgressEmitter, PublishError

log = logging.getLogger(__name__)

_REDIS_TIMEOUTS: dict[str, Any] = {"socket_timeout": 2, "socket_connect_timeout": 2}


@dataclass
class Services:
    """What the REST views need besides the database."""

    config: Config
    #: asyncio client: rate limit, login throttle, readiness (REDIS_POOL_SIZE
    #: connections; a command waits up to REDIS_POOL_TIMEOUT for a free one)
    redis: aioredis.Redis | None = None
    #: blocking client for RQ (used from a worker thread, never on the event loop)
    rq_redis: SyncRedis | None = None
    emitter: ProgressEmitter | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, config: Config) -> Services:
        """Create clients (connections are made lazily, on first use)."""
        svc = cls(config)
        if config.redis_url:
            limits = PoolLimits.of(config)
            svc.redis = async_client(config.redis_url, limits, **_REDIS_TIMEOUTS)
            svc.rq_redis = sync_client(config.redis_url, limits, **_REDIS_TIMEOUTS)
            # the wire the web processes' client manager listens on (SOCKETIO_MANAGER),
            # like the worker's emitter
            svc.emitter = ProgressEmitter.for_config(config)
        return svc

    async def close(self) -> None:
        if self.emitter is not None:
            await self.emitter.close()
        if self.redis is not None:
            try:
                await asyncio.wait_for(self.redis.aclose(), timeout=2)
            except Exception:  # a dead connection cannot be closed cleanly; nothing to do
                pass
        if self.rq_redis is not None:
            self.rq_redis.close()

    def require_redis(self) -> aioredis.Redis:
        """The asyncio Redis client; raises ApiError 503 when none is configured."""
        if self.redis is None:
            raise ApiError(503, "redis_unavailable", "Redis is not configured")
        return self.redis

    async def publish(self, job: ProcessingJob, event: dict[str, Any]) -> bool:
        """Publish a progress event to the job owner's room; False when it did not reach
        Redis (the event is logged and dropped: clients recover it from the history)."""
        if self.emitter is None:
            return False
        try:
            await self.emitter.publish_progress(job.owner_id, event)
        except PublishError as exc:
            log.warning(
                "progress publish failed job_id=%s seq=%s: %s", job.id, event.get("seq"), exc
            )
            return False
        return True


def install_services(app: Quart, config: Config) -> None:
    """Open :class:`Services` in ``before_serving`` and close them in ``after_serving``."""

    @app.before_serving
    async def _open_services() -> None:
        app.extensions["reeltrack.services"] = Services.open(config)

    @app.after_serving
    async def _close_services() -> None:
        svc: Services | None = app.extensions.pop("reeltrack.services", None)
        if svc is not None:
            await svc.close()


def services() -> Services:
    """The services of the current app (only while it is serving)."""
    svc: Services = current_app.extensions["reeltrack.services"]
    return svc
