"""Emit-to-receive latency of one progress event on loopback (issue 3, must-show 9).

An external ``ProgressEmitter`` (what the worker uses) publishes to a user's room; a
python-socketio client of that user, connected to a real ``reeltrack serve`` process,
receives it.  One event at a time (the next is published once the previous arrived), so
the figure is the delivery path's latency, not queueing.  Measured over websocket and
long-polling, for each client manager (SOCKETIO_MANAGER), with private services: a
redis-server started here and a SQLite database in a temporary directory.

    python -m tests.benchmarks.latency [--events 1000] [--managers user-channels,stock]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import socketio

from models.db import close_db, open_db
from models.events import ProgressEvent, utcnow
from quart_app.core.config import Config
from quart_app.core.tokens import issue_token
from socket_layer.emitter import ProgressEmitter
from socket_layer.protocol import EVENT_PROGRESS, SOCKETIO_PATH
from tests.conftest import migrate_in_subprocess
from tests.support.builders import make_user
from tests.support.live import LiveServer
from tests.support.services import RedisServer

SECRET = "latency-bench-secret-0123456789"
WARMUP = 50


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def sample_event(job_id: uuid.UUID, seq: int) -> dict[str, Any]:
    """A realistic ~350-byte progress event."""
    return ProgressEvent(
        job_id=job_id,
        seq=seq,
        status="processing",
        progress=min(99, seq % 100),
        current_video=seq % 10,
        total_videos=10,
        processed_videos=seq % 10,
        failed_videos=0,
        message=f"Processing video {seq % 10}/10: 'Tutorial Title'",
        video_id=uuid.uuid4(),
        video_title="Tutorial Title",
        created_at=utcnow(),
    ).to_wire()


async def measure(
    server: LiveServer, user_id: uuid.UUID, token: str, transport: str, events: int
) -> list[float]:
    """Latencies (ms) of ``events`` sequential emits to a client on ``transport``."""
    client = socketio.AsyncClient(reconnection=False)
    arrived: dict[int, float] = {}
    got = asyncio.Event()

    @client.on(EVENT_PROGRESS)  # type: ignore[misc]
    async def _progress(data: dict[str, Any]) -> None:
        arrived[data["seq"]] = time.perf_counter()
        got.set()

    await client.connect(
        server.url, auth={"token": token}, transports=[transport], socketio_path=SOCKETIO_PATH
    )
    emitter = ProgressEmitter.for_config(server.config)
    job_id = uuid.uuid4()
    latencies: list[float] = []
    try:
        for seq in range(1, WARMUP + events + 1):
            event = sample_event(job_id, seq)
            got.clear()
            sent = time.perf_counter()
            await emitter.publish_progress(user_id, event)
            await asyncio.wait_for(got.wait(), 10)
            if seq > WARMUP:
                latencies.append((arrived[seq] - sent) * 1000)
    finally:
        await emitter.close()
        try:
            await asyncio.wait_for(client.disconnect(), 2)
        except Exception:  # a polling client may wait for its long-poll; abort it
            await client.eio.disconnect(abort=True)
    return latencies


async def run(events: int = 1000, managers: tuple[str, ...] = ("user-channels", "stock")) -> None:
    """Start private services, then print p50/p90/p99/max per manager and transport."""
    workdir = Path(tempfile.mkdtemp(prefix="rt-latency-"))
    database_url = f"sqlite://{workdir / 'bench.sqlite3'}"
    await asyncio.to_thread(migrate_in_subprocess, database_url)
    redis = await asyncio.to_thread(RedisServer().start)
    await open_db(database_url)
    user = await make_user()
    await close_db()
    token = issue_token(SECRET, user.id)
    rows: list[tuple[str, str, list[float]]] = []
    try:
        for manager in managers:
            config = Config(
                env="test",
                port=0,
                var_dir=workdir / manager / "var",
                media_root=workdir / manager / "media",
                import_root=workdir / manager / "import",
                database_url=database_url,
                redis_url=redis.url,
                secret_key=SECRET,
                socketio_manager=manager,
                ws_ping_interval=5,
                ws_ping_timeout=10,
                log_level="WARNING",
            )
            server = LiveServer(config, name=f"latency-{manager}")
            await server.astart()
            try:
                for transport in ("websocket", "polling"):
                    latencies = await measure(server, user.id, token, transport, events)
                    rows.append((manager, transport, latencies))
            finally:
                await server.astop()
                server.close()
    finally:
        await asyncio.to_thread(redis.stop)
    print(f"\nemit-to-receive latency, {events} events each (loopback, one at a time), ms")
    print(
        f"{'manager':<14} {'transport':<10} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} {'mean':>7}"
    )
    for manager, transport, values in rows:
        print(
            f"{manager:<14} {transport:<10} {percentile(values, 50):7.2f} "
            f"{percentile(values, 90):7.2f} {percentile(values, 99):7.2f} "
            f"{max(values):7.2f} {statistics.fmean(values):7.2f}"
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--managers", default="user-channels,stock")
    args = parser.parse_args(argv)
    asyncio.run(run(args.events, tuple(m for m in args.managers.split(",") if m)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
