"""End to end: a real web process and a python-socketio client watch a worker run a job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from models.entities import User, VideoList
from models.history import events_after
from quart_app.core.config import Config
from quart_app.core.tokens import issue_token
from tasks.processing import run_job
from tasks.publisher import make_emitter
from tasks.submission import submit_job
from tests.support.builders import place_videos, seqs
from tests.support.live import LiveServer
from tests.support.sio_client import TRANSPORT_IDS, TRANSPORTS, connect_client


@pytest.mark.parametrize("transports", TRANSPORTS, ids=TRANSPORT_IDS)
async def test_client_sees_ten_video_job_live_identical_to_history(
    db: str,
    config: Callable[..., Config],
    samples: Path,
    live_server: LiveServer,
    transports: list[str],
) -> None:
    cfg = config()
    assert cfg.secret_key == live_server.config.secret_key
    user = await User.create(username=f"e2e{transports[0]}{live_server.port}x", password_hash="x")
    vlist = await VideoList.create(owner=user, name="list")
    client = await connect_client(
        live_server.url, token=issue_token(cfg.secret_key, user.id), transports=transports
    )
    try:
        await client.wait_for("snapshot")
        emitter = make_emitter(cfg)
        try:
            items = place_videos(samples, cfg.import_root, 10)
            job = await submit_job(
                user.id, vlist.id, items, emitter=emitter, redis=None, enqueue=False
            )
            assert await run_job(job.id, cfg, emitter=emitter) == "completed"
        finally:
            await emitter.close()
        received = await client.wait_for("progress", count=12, wait_s=20)
    finally:
        await client.close()
    assert seqs(received) == list(range(1, 13))
    assert [e["status"] for e in received] == ["pending"] + ["processing"] * 10 + ["completed"]
    progress = [e["progress"] for e in received]
    assert progress == sorted(progress) and progress[-1] == 100
    assert received == await events_after(job.id, limit=100)
