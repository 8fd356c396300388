"""``reeltrack status`` as an operator runs it: a subprocess reading the settings from its
environment, against a running web process + worker, against Redis with no worker, and
against nothing at all."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from rq import Queue, Worker

from quart_app.core.config import Config
from quart_app.core.redis_pools import PoolLimits, sync_client
from tests.conftest import live_config
from tests.support.live import ROOT, LiveServer, child_environ
from tests.support.services import RedisServer, free_port
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess


def _status(config: Config) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quart_app.cli", "status"],
        cwd=ROOT,
        env=child_environ(config),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _line(out: str, key: str) -> str:
    found = re.search(rf"^{key}:\s+(.*)$", out, re.M)
    assert found, (key, out)
    return found.group(1)


async def test_status_of_a_running_installation(
    tmp_path: Path, fresh_pg_url: str, start_live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    # its own database too: the worker's stale check would requeue other tests' jobs
    # into this Redis, and the queue depths below would not be 0
    redis = RedisServer().start()
    worker: WorkerProcess | None = None
    try:
        server = await start_live_server(redis_url=redis.url, database_url=fresh_pg_url)
        worker = WorkerProcess(server.config, name="status-worker")
        client = sync_client(redis.url, PoolLimits(size=2, timeout=5))

        await wait_for(lambda: len(Worker.all(connection=client)) == 1, 30, "the worker")
        # REDIS_URL unset: the URL comes from the file `reeltrack run` writes
        url_file = server.config.var_dir / "redis" / "url"
        url_file.parent.mkdir(parents=True, exist_ok=True)
        url_file.write_text(redis.url + "\n")
        run = await asyncio.to_thread(_status, server.config.with_overrides(redis_url=None))
        out = run.stdout
        assert run.returncode == 0, out + run.stderr
        assert run.stderr == ""
        assert _line(out, "redis") == f"{redis.url} (from {url_file}): up"
        assert _line(out, "web") == f"http://127.0.0.1:{server.port}/api/health: up"
        assert _line(out, "workers") == "1 alive"
        assert re.search(r"^  \S+: (idle|busy), queues maintenance,videos-high,videos,", out, re.M)
        assert _line(out, "queues") == "maintenance 0, videos-high 0, videos 0, videos-low 0"
        assert re.fullmatch(
            r"reeltrack \S+, Python 3\.\d+\.\d+, Redis \d+\.\d+\.\d+, PostgreSQL \d+\.\d+.*",
            _line(out, "versions"),
        ), out
        assert _line(out, "status") == "up"
        client.close()
    finally:
        if worker is not None:
            await asyncio.to_thread(worker.stop, 15)
            worker.close()
        redis.stop()


def test_status_with_redis_but_no_worker_shows_the_waiting_jobs(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    redis = RedisServer().start()
    try:
        client = sync_client(redis.url, PoolLimits(size=2, timeout=5))
        for _ in range(2):
            Queue("videos", connection=client).enqueue("tasks.process_video_list", "x")
        client.close()
        config = live_config(tmp_path, sqlite_database_url, redis.url, port=free_port())
        run = _status(config)
        out = run.stdout
        assert run.returncode == 1, out + run.stderr
        assert run.stderr == ""
        assert _line(out, "redis").endswith("(from REDIS_URL): up")
        assert _line(out, "workers") == "0 alive"
        assert re.search(r"videos 2 \(oldest \d+ s\)", _line(out, "queues")), out
        assert re.search(r"SQLite \d+\.\d+", _line(out, "database")), out
        status = _line(out, "status")
        assert "no worker is alive" in status and "the web process does not answer" in status
    finally:
        redis.stop()


def test_status_with_nothing_running_explains_and_exits_1(tmp_path: Path) -> None:
    dead = free_port()
    config = live_config(
        tmp_path,
        f"postgres://postgres:hunter2@127.0.0.1:{free_port()}/nowhere",
        f"redis://127.0.0.1:{dead}/0",
        port=free_port(),
    )
    run = _status(config)
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert run.stderr == "" and "Traceback" not in out
    assert re.search(r": unreachable \(.*[Cc]onnect", _line(out, "redis")), out
    assert "unreachable" in _line(out, "web")
    assert _line(out, "workers") == "unknown (Redis unreadable)"
    database = _line(out, "database")
    assert "unreachable" in database and "hunter2" not in out and ":***@" in database
    assert _line(out, "status") == (
        "DOWN: the web process does not answer; Redis is unreachable; no worker is alive"
    )


def test_status_without_any_redis_url(tmp_path: Path, sqlite_database_url: str) -> None:
    config = live_config(tmp_path, sqlite_database_url, "", port=free_port()).with_overrides(
        redis_url=None
    )
    run = _status(config)
    assert run.returncode == 1
    assert "REDIS_URL is not set and" in _line(run.stdout, "redis"), run.stdout
    assert "redis/url does not exist" in run.stdout
