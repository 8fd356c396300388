"""Helpers for the worker tests: sample videos, seeding jobs, a Redis channel recorder."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from models.entities import ProcessingJob, User, VideoList
from models.events import ProgressEvent
from socket_layer.protocol import EVENT_PROGRESS, REDIS_CHANNEL, user_room
from tasks.imports import NewVideo, create_import_job
from tasks.publisher import JobPublisher
from tests.support.media import make_corrupt, make_video
from tests.support.waiting import wait_for

#: (file name, builder kwargs): varied sizes and codecs
SAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("v0.mp4", {"codec": "libx264", "width": 64, "height": 48, "audio": True}),
    ("v1.webm", {"codec": "libvpx", "width": 96, "height": 54}),
    ("v2.mp4", {"codec": "mpeg4", "width": 80, "height": 60}),
    ("v3.mkv", {"codec": "libx264", "width": 48, "height": 64}),
]


def build_samples(directory: Path) -> list[Path]:
    return [make_video(directory / name, **kw) for name, kw in SAMPLES] + [
        make_corrupt(directory / "corrupt.mp4")
    ]


def place_videos(samples: Path, import_root: Path, count: int) -> list[NewVideo]:
    """``count`` good videos copied under ``import_root`` as import sources."""
    good = [p for p in sorted(samples.iterdir()) if p.name != "corrupt.mp4"]
    items = []
    for i in range(count):
        src = good[i % len(good)]
        dest = import_root / f"clip{i:03d}{src.suffix}"
        shutil.copyfile(src, dest)
        items.append(NewVideo(source=f"import:{dest.name}", title=f"Clip {i}"))
    return items


async def seed_job(items: list[NewVideo]) -> tuple[User, ProcessingJob]:
    user = await User.create(username=f"w{uuid.uuid4().hex[:12]}", password_hash="x")
    vlist = await VideoList.create(owner=user, name="list")
    job = await create_import_job(user.id, vlist.id, items, redis=None)
    return user, job


class ChannelRecorder:
    """Records progress events python-socketio's Redis manager publishes for one room."""

    def __init__(self, redis_url: str, room: str) -> None:
        self.redis = aioredis.Redis.from_url(redis_url)
        self.room = room
        self.events: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._pubsub: Any = None

    @classmethod
    async def start(cls, redis_url: str, user_id: object) -> ChannelRecorder:
        """Subscribe to both wires a ProgressEmitter may use: python-socketio's stock
        channel, and the per-user channel carrying ready engine.io packets."""
        rec = cls(redis_url, user_room(user_id))
        rec._pubsub = rec.redis.pubsub()
        await rec._pubsub.subscribe(REDIS_CHANNEL, f"{REDIS_CHANNEL}:{rec.room}")
        rec._task = asyncio.create_task(rec._run())
        return rec

    async def _run(self) -> None:
        async for message in self._pubsub.listen():
            if message.get("type") != "message":
                continue
            raw = (
                message["data"].decode() if isinstance(message["data"], bytes) else message["data"]
            )
            channel = message["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else channel
            if channel == REDIS_CHANNEL:  # stock python-socketio pub/sub message
                data = json.loads(raw)
                if data.get("event") == EVENT_PROGRESS and data.get("room") == self.room:
                    self.events.append(data["data"][0])
            elif raw.startswith("42"):  # engine.io packet: 4 message, 2 socket.io EVENT
                event, payload = json.loads(raw[2:])
                if event == EVENT_PROGRESS:
                    self.events.append(payload)

    async def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], within: float = 20.0
    ) -> list[dict[str, Any]]:
        await wait_for(lambda: predicate(self.events), within, "the recorded events")
        return list(self.events)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._pubsub.aclose()
        await self.redis.aclose()


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [int(e["seq"]) for e in events]


def video_event(pub: JobPublisher, n: int, message: str | None = None) -> ProgressEvent:
    """The publisher's next event: video ``n`` processed (``n`` done, none failed)."""
    return pub.build(
        status="processing",
        progress=min(99, n * 10),
        current_video=n,
        processed_videos=n,
        failed_videos=0,
        message=message or f"video {n}",
    )
