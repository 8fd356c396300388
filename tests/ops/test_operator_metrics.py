"""What an operator alerts on, after one end-to-end run against a real ``reeltrack serve``
and a real ``reeltrack worker`` (own Redis, PostgreSQL), both with ``LOG_JSON=true``:

- the scrape passes ``promtool check metrics`` and shows non-zero HTTP (by URL rule, never
  the path), job, video, queue and worker figures, and ``process_*`` of the web and the
  worker process;
- the live connection gauge follows the transport each client uses NOW: a
  websocket-only, a polling-only and an upgrading client (polling -> websocket) read 2
  websocket / 1 polling, and the upgrade is counted in ``reeltrack_socketio_upgrades_total``;
- every line either process printed parses as JSON, hypercorn's access log included;
  failed logins are WARNING lines with username, address and reason, never the password;
  no "Tortoise-ORM shutdown" line per job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tortoise import Tortoise

from models.db import close_db, open_db
from quart_app.core.metrics import sample_value
from tests.conftest import live_config, migrated_database
from tests.support.live import LiveServer
from tests.support.media import make_video
from tests.support.services import RedisServer
from tests.support.sio_client import RecordingClient, connect_client
from tests.support.waiting import wait_for, wait_until
from tests.support.workers import WorkerProcess

VIDEOS = 3
JOBS = 2


@dataclass
class Run:
    web: LiveServer
    worker: WorkerProcess
    http: httpx.AsyncClient
    token: str
    username: str
    password: str
    wrong_password: str
    list_id: str
    job_ids: list[str]


async def scrape(http: httpx.AsyncClient) -> str:
    r = await http.get("/metrics")
    assert r.status_code == 200, r.text
    return r.text


def value(text: str, name: str, **labels: str) -> float:
    found = sample_value(text, name, labels)
    assert found is not None, f"{name}{labels} missing from /metrics"
    return found


@pytest.fixture(scope="module")
async def own_database(pg_admin_url: str) -> AsyncIterator[str]:
    """A database of this module's own: its worker's stale check must not fail other
    tests' leftover jobs, which would show in the job counters asserted below."""
    async with migrated_database(pg_admin_url, prefix="reeltrack_own") as url:
        yield url


@pytest.fixture(scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory, own_database: str) -> AsyncIterator[Run]:
    base = tmp_path_factory.mktemp("operator")
    redis = RedisServer().start()  # own Redis: this worker takes only our jobs
    # DEBUG: the access log is on at DEBUG (it is off at INFO unless ACCESS_LOG=true)
    config = live_config(base, own_database, redis.url, log_level="DEBUG", log_json=True)
    for i in range(VIDEOS):
        make_video(config.import_root / f"clip{i}.mp4", seconds=0.5)
    web = LiveServer(config)
    worker = WorkerProcess(config, name="operator-worker")
    http = httpx.AsyncClient(timeout=20)
    try:
        await web.astart()
        http.base_url = httpx.URL(web.url)
        username = f"op{uuid.uuid4().hex[:8]}"
        password = f"Pw-{uuid.uuid4().hex}"
        wrong = f"Wrong-{uuid.uuid4().hex}"
        r = await http.post("/api/auth/register", json={"username": username, "password": password})
        assert r.status_code == 201, r.text
        r = await http.post("/api/auth/login", json={"username": username, "password": wrong})
        assert r.status_code == 401
        r = await http.post(
            "/api/auth/login", json={"username": "nobody\n\x1b[31mfake line", "password": wrong}
        )
        assert r.status_code == 401
        r = await http.post("/api/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        r = await http.post("/api/lists", json={"name": "ops"})
        assert r.status_code == 201, r.text
        list_id = r.json()["id"]
        job_ids = []
        for _ in range(JOBS):
            body = {"videos": [{"url": f"clip{i}.mp4", "title": f"Clip {i}"} for i in range(3)]}
            r = await http.post(f"/api/lists/{list_id}/videos/bulk", json=body)
            assert r.status_code == 202, r.text
            job_ids.append(r.json()["job_id"])

        async def all_done() -> bool:
            for job_id in job_ids:
                r = await http.get(f"/api/jobs/{job_id}")
                if r.json()["status"] != "completed":
                    return False
            return True

        await wait_for(all_done, 90, "both jobs to complete")
        yield Run(web, worker, http, token, username, password, wrong, list_id, job_ids)
    finally:
        await http.aclose()
        await web.astop()
        await asyncio.to_thread(worker.stop, 15)
        redis.stop()


async def test_scrape_has_http_job_video_queue_worker_and_process_figures(run: Run) -> None:
    http = run.http
    # a request per URL rule with a path parameter, and one no rule matches
    assert (await http.get(f"/api/lists/{run.list_id}")).status_code == 200
    assert (await http.get(f"/api/lists/{uuid.uuid4()}")).status_code == 404
    assert (await http.delete("/api/auth/options")).status_code == 405

    async def worker_counted() -> bool:
        return sample_value(await scrape(http), "reeltrack_workers") == 1

    # (the queue reading is cached for a few seconds)
    assert await wait_until(worker_counted, 15, interval=0.5), "worker not counted"
    text = await scrape(http)

    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make system-deps` installs Debian's prometheus package"
    checked = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # HTTP by URL rule (never the path) and status class
    rule = "/api/lists/<uuid:list_id>"
    assert value(text, "reeltrack_http_requests_total", route=rule, status="2xx") >= 1
    assert value(text, "reeltrack_http_requests_total", route=rule, status="4xx") >= 1
    assert value(text, "reeltrack_http_requests_total", route="/api/auth/login", status="4xx") == 2
    # a method the rule does not allow matches no rule: one "unmatched" series, not a path
    unmatched = {"route": "unmatched", "method": "DELETE", "status": "4xx"}
    assert value(text, "reeltrack_http_requests_total", **unmatched) == 1
    assert run.list_id not in text, "a raw path leaked into a label"
    count = value(text, "reeltrack_http_request_duration_seconds_count", route="/api/auth/login")
    assert count == 3
    assert value(text, "reeltrack_http_request_duration_seconds_sum", route="/api/auth/login") > 0

    # jobs and videos, from the worker's work-horses
    assert value(text, "reeltrack_jobs_finished_total", status="completed") == JOBS
    assert value(text, "reeltrack_jobs_finished_total", status="failed") == 0
    assert value(text, "reeltrack_job_duration_seconds_count", status="completed") == JOBS
    assert value(text, "reeltrack_job_duration_seconds_sum", status="completed") > 0
    assert value(text, "reeltrack_job_runs_total", outcome="completed") == JOBS
    assert value(text, "reeltrack_videos_processed_total", outcome="ready") == JOBS * VIDEOS
    assert value(text, "reeltrack_video_processing_seconds_count", outcome="ready") == JOBS * VIDEOS

    # the queues (empty now) and the worker serving each of them
    assert value(text, "reeltrack_queue_stats_up") == 1
    for queue in ("maintenance", "videos-high", "videos", "videos-low"):
        assert value(text, "reeltrack_queue_jobs", queue=queue) == 0
        assert value(text, "reeltrack_queue_scheduled_jobs", queue=queue) == 0
        assert value(text, "reeltrack_queue_oldest_job_age_seconds", queue=queue) == 0
        assert value(text, "reeltrack_queue_workers", queue=queue) == 1

    # process_* of the web process and the worker, by their pids
    assert run.web.proc is not None
    web_pid = str(run.web.proc.pid)
    kinds = {
        (s.labels["kind"], s.labels["pid"])
        for s in _samples(text, "process_resident_memory_bytes")
        if s.value > 0
    }
    assert ("worker", str(run.worker.pid)) in kinds, kinds
    assert ("web", web_pid) in kinds, kinds
    assert value(text, "process_open_fds", kind="worker", pid=str(run.worker.pid)) > 0
    assert value(text, "process_start_time_seconds", kind="worker", pid=str(run.worker.pid)) > 0


async def test_a_queued_job_shows_in_depth_and_age(run: Run) -> None:
    """A job waiting in videos-low (no worker takes it while it is stopped) is counted."""
    from redis import Redis

    from tasks.queue import enqueue_processing

    config_redis = run.web.config.redis_url
    assert config_redis
    redis = Redis.from_url(config_redis)
    try:
        await asyncio.to_thread(run.worker.stop, 15)
        await asyncio.to_thread(
            enqueue_processing, redis, uuid.uuid4(), priority="low", rq_job_id="op-probe"
        )
        # and one waiting its turn, scheduled for later
        await asyncio.to_thread(
            enqueue_processing, redis, uuid.uuid4(), rq_job_id="op-later", delay_s=600
        )
        await asyncio.sleep(1.2)  # so that the job's age is measurable

        async def counted() -> bool:
            text = await scrape(run.http)
            return sample_value(text, "reeltrack_queue_jobs", {"queue": "videos-low"}) == 1

        assert await wait_until(counted, 15, interval=0.5)
        text = await scrape(run.http)
        assert value(text, "reeltrack_queue_oldest_job_age_seconds", queue="videos-low") >= 1
        assert value(text, "reeltrack_queue_jobs", queue="videos") == 0
        assert value(text, "reeltrack_queue_scheduled_jobs", queue="videos") == 1
        assert value(text, "reeltrack_queue_scheduled_jobs", queue="videos-low") == 0
        # a cleanly stopped worker unregisters at once
        assert value(text, "reeltrack_workers") == 0
    finally:
        redis.delete("rq:queue:videos-low", "rq:scheduled:videos")
        redis.close()


def _samples(text: str, name: str) -> list[Any]:
    from prometheus_client.parser import text_string_to_metric_families

    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


async def test_connection_gauge_follows_the_current_transport(run: Run) -> None:
    http = run.http
    before = await scrape(http)
    upgrades_before = value(before, "reeltrack_socketio_upgrades_total")
    clients: list[RecordingClient] = []
    try:
        for transports in (["websocket"], ["polling"], ["polling", "websocket"]):
            client = await connect_client(run.web.url, token=run.token, transports=transports)
            await client.wait_for("snapshot")
            clients.append(client)
        upgrading = clients[2]
        await wait_for(lambda: upgrading.sio.transport() == "websocket", 10, "the upgrade")
        assert clients[1].sio.transport() == "polling"

        async def settled() -> bool:
            text = await scrape(http)
            return (
                sample_value(text, "reeltrack_socketio_connections", {"transport": "websocket"})
                == 2
            )

        # the refresh moves the upgraded socket within its period (5 s)
        assert await wait_until(settled, 15, interval=0.2), await scrape(http)
        text = await scrape(http)
        assert value(text, "reeltrack_socketio_connections", transport="polling") == 1
        assert value(text, "reeltrack_socketio_upgrades_total") == upgrades_before + 1

        # an upgrade right before the close (inside the refresh period) is counted too
        quick = await connect_client(
            run.web.url, token=run.token, transports=["polling", "websocket"]
        )
        await quick.wait_for("snapshot")
        await wait_for(lambda: quick.sio.transport() == "websocket", 10, "the second upgrade")
        await quick.close()
    finally:
        for client in clients:
            await client.close()

    async def closed() -> bool:
        text = await scrape(http)
        return sample_value(text, "reeltrack_socketio_connections", {"transport": "websocket"}) == 0

    assert await wait_until(closed, 10, interval=0.2)
    text = await scrape(http)
    assert value(text, "reeltrack_socketio_connections", transport="polling") == 0
    assert value(text, "reeltrack_socketio_upgrades_total") == upgrades_before + 2


def _json_lines(where: str, text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"a {where} line is not JSON: {line[:300]!r}") from None
    return records


async def test_every_line_is_json_failed_logins_logged_no_shutdown_noise(run: Run) -> None:
    web = _json_lines("web", run.web.output())
    worker = _json_lines("worker", run.worker.output())
    assert len(web) > 20 and len(worker) > 5
    access = [r for r in web if r.get("logger") == "reeltrack.access"]
    assert any("/api/auth/login" in r["message"] for r in access), "no access log line"

    failed = [r for r in web if str(r.get("message", "")).startswith("failed login")]
    assert len(failed) == 2, failed
    assert all(r["level"] == "WARNING" for r in failed)
    by_name = {r["username"]: r for r in failed}
    assert by_name[run.username]["reason"] == "wrong_password"
    assert by_name[run.username]["client"].startswith("127.0.0.1")
    forged = by_name["nobody??[31mfake line"]  # control characters replaced
    assert forged["reason"] == "unknown_user"
    for where, text in (("web", run.web.output()), ("worker", run.worker.output())):
        assert run.wrong_password not in text and run.password not in text, where

    # the worker closes the database after every job: at DEBUG the shutdown line is a
    # DEBUG record, never INFO
    shutdown = [r for r in worker if r.get("message") == "Tortoise-ORM shutdown"]
    assert all(r["level"] == "DEBUG" for r in shutdown), shutdown


async def test_no_tortoise_shutdown_line_at_info(
    sqlite_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """What a worker does per job (open, close the database) logs nothing at INFO."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.INFO):
            await open_db(sqlite_database_url)
            assert Tortoise._inited
            await close_db()
    finally:
        root.setLevel(level)
    assert not [r for r in caplog.records if "Tortoise-ORM shutdown" in r.getMessage()]
