"""The builders of test data: users, lists, videos, jobs and their history, sample
media, and the worker tests' Redis channel recorder.

Tortoise must be open (e.g. inside ``app.test_app()``, or the ``db`` fixture).  Users get
a precomputed argon2 hash so building many is cheap.  A job a task test will run is made
the product's way, by :func:`seed_job` (:func:`tasks.submission.submit_job`); a job
with a hand-written history by :func:`make_job` / :func:`make_empty_job` + :func:`add_event`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from models.entities import JobProgressEvent, JobStatus, ProcessingJob, User, Video, VideoList
from models.events import EventStatus, ProgressEvent, job_event, utcnow
from models.history import record_event
from models.jobs import NewVideo
from quart_app.core.accounts import hash_password
from quart_app.core.config import Config
from quart_app.core.tokens import issue_token
from socket_layer.protocol import EVENT_PROGRESS, REDIS_CHANNEL, user_room
from tasks.publisher import Emitter, JobPublisher
from tasks.submission import submit_job
from tests.support.live import TEST_SECRET
from tests.support.media import make_corrupt
from tests.support.media import make_video as make_video_file
from tests.support.waiting import wait_for

PASSWORD = "correct-horse-battery"
_counter = itertools.count(1)


@lru_cache(maxsize=1)
def _password_hash() -> str:
    return hash_password(PASSWORD)


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}{next(_counter)}_{uuid.uuid4().hex[:8]}"


async def make_user(username: str | None = None) -> User:
    """A user whose password is :data:`PASSWORD`."""
    return await User.create(username=username or unique_name(), password_hash=_password_hash())


def token_for(config: Config, user: User) -> str:
    return issue_token(config.secret_key, user.id)


def auth_headers(config: Config, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(config, user)}"}


def bearer(user_id: uuid.UUID) -> dict[str, str]:
    """The Authorization header of ``user_id`` for a live server (signed with the test
    secret the live fixtures configure)."""
    return {"Authorization": f"Bearer {issue_token(TEST_SECRET, user_id)}"}


async def make_list(owner: User, name: str = "my list") -> VideoList:
    return await VideoList.create(owner_id=owner.id, name=name)


async def make_video(video_list: VideoList, **fields: object) -> Video:
    values: dict[str, object] = {"source": "https://example.com/v.mp4", "title": "a video"}
    values.update(fields)
    return await Video.create(list_id=video_list.id, **values)


def event_for(
    job_id: uuid.UUID | str,
    seq: int,
    *,
    total: int = 10,
    status: EventStatus = "processing",
    created_at: datetime | None = None,
    **fields: Any,
) -> ProgressEvent:
    """Event ``seq`` of a job of ``total`` videos (seq - 1 of them done); ``fields``
    override any wire field (``progress``, ``message``, ...)."""
    done = min(seq - 1, total)
    values: dict[str, Any] = {
        "message": f"event {seq}",
        "total_videos": total,
        "processed_videos": done,
        "progress": (done * 100 // total) if total else 0,
        "current_video": done,
        "created_at": created_at,
        **fields,
    }
    return job_event(job_id, seq, status, **values)


async def make_job(
    video_list: VideoList,
    *,
    status: JobStatus = JobStatus.PENDING,
    total: int = 10,
    events: int = 1,
    start: datetime | None = None,
    step: timedelta = timedelta(milliseconds=1),
    seq_order: list[int] | None = None,
) -> ProcessingJob:
    """A job with ``events`` history rows (seq 1..events, created ``step`` apart from
    ``start``; none with ``events=0``), inserted in one bulk statement, in ``seq_order``
    when given."""
    job = await ProcessingJob.create(
        list_id=video_list.id,
        owner_id=video_list.owner_id,
        status=status,
        total_videos=total,
        last_seq=events,
    )
    begin = start or utcnow() - step * events
    seqs = seq_order or list(range(1, events + 1))
    rows = []
    for seq in seqs:
        ev = event_for(
            job.id,
            seq,
            total=max(total, events),
            status="pending" if seq == 1 else "processing",
            created_at=begin + step * (seq - 1),
        )
        rows.append(
            JobProgressEvent(
                job_id=job.id, seq=seq, created_at=ev.created_at, progress_data=ev.to_wire()
            )
        )
    if rows:
        await JobProgressEvent.bulk_create(rows, batch_size=500)
    return job


async def make_empty_job(owner: User, *, total_videos: int = 10) -> ProcessingJob:
    """A ``pending`` job of ``total_videos`` (in a fresh list of ``owner``) with no
    history yet (last_seq 0): the test writes it with :func:`add_event`."""
    return await make_job(await make_list(owner, "test list"), total=total_videos, events=0)


async def add_event(
    job: ProcessingJob,
    *,
    status: EventStatus = "processing",
    processed: int | None = None,
    failed: int = 0,
    created_at: datetime | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Persist the job's next event (seq = last_seq + 1) via ``record_event``; returns
    its wire form.  ``processed`` defaults to seq - 1 capped at total_videos."""
    await job.refresh_from_db()
    seq = job.last_seq + 1
    total = job.total_videos
    done = min(total, seq - 1) if processed is None else processed
    completed = status == "completed"
    event = job_event(
        job.id,
        seq,
        status,
        fields.pop("message", f"event {seq}"),
        total_videos=total,
        processed_videos=total if completed else done,
        failed_videos=failed,
        progress=100 if completed else (done * 100 // total if total else 0),
        current_video=done,
        created_at=created_at,
        **fields,
    )
    if not await record_event(event):
        raise RuntimeError(f"record_event refused seq {seq} of job {job.id}")
    return event.to_wire()


async def add_events(job: ProcessingJob, count: int, **kwargs: Any) -> list[dict[str, Any]]:
    """``count`` consecutive processing events."""
    return [await add_event(job, **kwargs) for _ in range(count)]


def minutes_ago(minutes: float) -> datetime:
    return utcnow() - timedelta(minutes=minutes)


# -- jobs the worker runs: sample media, submitted the product's way -------------------

#: (file name, builder kwargs): varied sizes and codecs
SAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("v0.mp4", {"codec": "libx264", "width": 64, "height": 48, "audio": True}),
    ("v1.webm", {"codec": "libvpx", "width": 96, "height": 54}),
    ("v2.mp4", {"codec": "mpeg4", "width": 80, "height": 60}),
    ("v3.mkv", {"codec": "libx264", "width": 48, "height": 64}),
]


def build_samples(directory: Path) -> list[Path]:
    return [make_video_file(directory / name, **kw) for name, kw in SAMPLES] + [
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


async def seed_job(
    items: list[NewVideo], *, owner: User | None = None, emitter: Emitter | None = None
) -> tuple[User, ProcessingJob]:
    """A job of ``items`` in a fresh list (of ``owner``, or a new user), submitted through
    :func:`tasks.submission.submit_job` but not enqueued: the test runs it (``run_job``)
    or lets the stale-job check enqueue it."""
    user = owner or await make_user()
    vlist = await make_list(user, "list")
    job = await submit_job(user.id, vlist.id, items, emitter=emitter, redis=None, enqueue=False)
    return user, job


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


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [int(e["seq"]) for e in events]


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


def multipart(
    files: list[tuple[str, str, bytes]], fields: dict[str, str] | None = None
) -> tuple[bytes, dict[str, str]]:
    """Encode a multipart/form-data body; returns (body, headers with Content-Type)."""
    boundary = f"----reeltrack{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in (fields or {}).items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, filename, content in files:
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + content
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def bounded_eio_socket(limit: int, sid: str = "s1") -> tuple[Any, Any, Any]:
    """(an engine.io ASGI server whose sockets get a SendQueue bounded at ``limit``
    bytes, one socket ``sid`` registered in it, that socket's queue)."""
    import engineio
    from engineio.async_socket import AsyncSocket

    from socket_layer.send_buffer import SendQueue, bound_send_buffers

    eio = engineio.AsyncServer(async_mode="asgi")
    bound_send_buffers(eio, limit)
    sock = AsyncSocket(eio, sid)
    eio.sockets[sid] = sock
    assert isinstance(sock.queue, SendQueue)
    return eio, sock, sock.queue
