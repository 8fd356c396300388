"""``reeltrack demo``: sample videos synthesised with PyAV, imported for a demo user.

The videos land under ``IMPORT_ROOT/demo`` (a few seconds each, varied resolutions and
codecs; a few rows fail on purpose so the demo shows failures: a corrupt file every
:data:`FAILURE_EVERY` rows and as the last row, an HLS playlist among them), the user is
created when missing, and one import job is created and enqueued for a new list.

``duration`` (``reeltrack demo --duration``, default :data:`DEFAULT_DURATION_S`) paces
the job so that it lasts about that long and a newcomer can watch the dashboard move:
the worker gives each video at least ``duration / count`` seconds.  0 runs it at full
speed.  Only the demo's job is paced.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from redis import Redis

from models.db import close_db, open_db
from models.entities import JobSource, User, VideoList
from models.jobs import JobSpec, NewVideo
from quart_app.core.accounts import create_user
from quart_app.core.config import Config
from quart_app.sample_video import make_video
from tasks.publisher import make_emitter
from tasks.submission import QueueUnavailable, submit_job

#: (width, height, fps, seconds, codec, container suffix)
VARIANTS: list[tuple[int, int, int, float, str, str]] = [
    (320, 180, 15, 3.0, "libx264", ".mp4"),
    (240, 180, 12, 2.0, "mpeg4", ".mp4"),
    (256, 144, 12, 2.0, "libvpx", ".webm"),
    (180, 320, 15, 2.0, "libx264", ".mkv"),
    (160, 90, 10, 4.0, "libx264", ".mp4"),
]
#: sample files synthesised at most; longer demo imports reuse them
DISTINCT_SAMPLES = 11
#: every FAILURE_EVERY-th row fails on purpose (and the last row does)
FAILURE_EVERY = 60
#: how long the demo job lasts by default (seconds), so its progress can be watched
DEFAULT_DURATION_S = 60.0
CORRUPT_TITLE = "A corrupt file (fails on purpose)"
PLAYLIST_TITLE = "A playlist, not a video (fails on purpose)"


def _failing(directory: Path, nth: int) -> NewVideo:
    """A row that fails on purpose: a corrupt file, every other time an HLS playlist."""
    if nth % 2 == 0:
        (directory / "playlist-sample.m3u8").write_text("#EXTM3U\n#EXT-X-ENDLIST\n")
        return NewVideo("import:demo/playlist-sample.m3u8", PLAYLIST_TITLE)
    return NewVideo("import:demo/corrupt-sample.mp4", CORRUPT_TITLE)


def make_samples(import_root: Path, count: int) -> list[NewVideo]:
    """``count`` import rows over sample files under ``import_root/demo``: every
    :data:`FAILURE_EVERY`-th row and the last one fail on purpose.  At most
    :data:`DISTINCT_SAMPLES` files are synthesised; longer imports reuse them, so a big
    demo job (bars that visibly move) stays cheap to make."""
    directory = import_root / "demo"
    directory.mkdir(parents=True, exist_ok=True)
    corrupt = directory / "corrupt-sample.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not really a video " * 64)
    items: list[NewVideo] = []
    failures = 0
    for i in range(max(0, count - 1)):
        if (i + 1) % FAILURE_EVERY == 0:
            failures += 1
            items.append(_failing(directory, failures))
            continue
        k = i % DISTINCT_SAMPLES
        width, height, fps, seconds, codec, suffix = VARIANTS[k % len(VARIANTS)]
        name = f"sample-{k + 1:02d}-{width}x{height}-{codec}{suffix}"
        if not (directory / name).exists():
            make_video(
                directory / name, width=width, height=height, fps=fps, seconds=seconds, codec=codec
            )
        items.append(NewVideo(f"import:demo/{name}", f"Sample {i + 1} ({width}x{height}, {codec})"))
    if count > 0:
        items.append(NewVideo("import:demo/corrupt-sample.mp4", CORRUPT_TITLE))
    return items


async def _demo(
    config: Config, username: str, count: int, duration: float
) -> tuple[str, int, str | None]:
    assert config.redis_url
    await open_db(config.database_url)
    try:
        user = await User.get_or_none(username=username)
        password = None
        if user is None:
            password = secrets.token_urlsafe(12)
            user = await create_user(username, password)
        items = await asyncio.to_thread(make_samples, config.import_root, count)
        vlist = await VideoList.create(owner=user, name="Demo videos")
        emitter = make_emitter(config)
        redis = Redis.from_url(config.redis_url)
        try:
            job = await submit_job(
                user.id,
                vlist.id,
                items,
                emitter=emitter,
                redis=redis,
                spec=JobSpec(source=JobSource.DEMO),
                pace_s=duration / len(items) if items and duration > 0 else 0.0,
            )
        finally:
            await emitter.close()
            redis.close()
        return str(job.id), len(items), password
    finally:
        await close_db()


def run_demo(
    config: Config,
    username: str = "demo",
    count: int = 12,
    duration: float = DEFAULT_DURATION_S,
) -> int:
    """Create the demo data and enqueue its import, paced to last about ``duration``
    seconds (0: full speed); returns the exit code (2 without REDIS_URL or with a
    negative duration, 1 when the username is invalid or the job could not be queued)."""
    if not config.redis_url:
        print("error: REDIS_URL is required for `reeltrack demo` (the job is queued)")
        return 2
    if duration < 0:
        print("error: --duration must be 0 (full speed) or more seconds")
        return 2
    try:
        job_id, n, password = asyncio.run(_demo(config, username, count, duration))
    except (ValueError, QueueUnavailable) as exc:
        print(f"error: {exc}")
        return 1
    if password is not None:
        print(f"created user {username!r} with password {password!r}")
    print(f"demo: {n} videos imported for {username!r} (job {job_id}); a worker processes them")
    return 0
