"""Publishing progress from processes that hold no sockets (the RQ worker).

python-socketio's write-only Redis manager only logs "giving up" when a publish fails;
:class:`ProgressEmitter` raises :class:`PublishError` instead so the publisher knows
(DESIGN section 4, rule 4).
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio

from socket_layer.protocol import EVENT_PROGRESS, NAMESPACE, REDIS_CHANNEL, user_room


class PublishError(RuntimeError):
    """The message did not reach Redis; the caller decides what to do."""


class _ReportingRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """A write-only AsyncRedisManager whose failed publish raises."""

    async def _publish(self, data: Any) -> Any:
        last: Exception | None = None
        for _attempt in range(2):
            try:
                if not self.connected:  # type: ignore[has-type]
                    self._redis_connect()
                return await self.redis.publish(self.channel, self.json.dumps(data))
            except Exception as exc:  # redis raises several unrelated types
                last = exc
                self.connected = False
        raise PublishError(f"publish to Redis failed: {type(last).__name__}: {last}") from last


class ProgressEmitter:
    """Emits events into users' rooms through Redis, one instance per event loop."""

    def __init__(self, redis_url: str, *, channel: str = REDIS_CHANNEL) -> None:
        self._manager = _ReportingRedisManager(
            redis_url,
            channel=channel,
            write_only=True,
            redis_options={"socket_timeout": 2, "socket_connect_timeout": 2},
        )

    async def emit_to_user(self, user_id: object, event: str, data: Any) -> None:
        """Publish ``event`` to every socket of ``user_id`` on any web process.

        Raises :class:`PublishError` when Redis did not accept the message.
        """
        await self._manager.emit(event, data, namespace=NAMESPACE, room=user_room(user_id))

    async def publish_progress(self, user_id: object, event: dict[str, Any]) -> None:
        """Publish one progress event (already validated and persisted)."""
        await self.emit_to_user(user_id, EVENT_PROGRESS, event)

    async def close(self) -> None:
        redis = getattr(self._manager, "redis", None)
        if redis is not None:
            try:
                await asyncio.wait_for(redis.aclose(), timeout=2)
            except Exception:  # closing a dead connection is not an error worth raising
                pass
