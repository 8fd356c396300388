"""One real end-to-end run (``reeltrack serve`` + ``reeltrack worker`` + Redis +
PostgreSQL), then two checks on what it left behind:

- ``GET /metrics`` shows non-zero published events, live connections of both
  transports, the persist latency histogram and the emit-to-forward lag, aggregated
  from the web AND the worker processes (multiprocess mode);
- every log line both processes wrote (DEBUG level, JSON lines for the web, text for
  the worker, hypercorn's access log included) is free of the access token, the
  passwords and the SECRET_KEY — while the same logs demonstrably saw the requests that
  carried them (``token=[redacted]`` in the access log) and carry job_id/user_id.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from quart_app.core.metrics import sample_value
from tests.conftest import TEST_SECRET, live_config
from tests.support.live import LiveServer, import_videos, sign_up
from tests.support.media import make_video
from tests.support.services import RedisServer
from tests.support.sio_client import RecordingClient, connect_client
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

VIDEOS = 3


@dataclass
class Flow:
    token: str
    password: str
    wrong_password: str
    user_id: str
    job_id: str
    metrics_text: str
    web_log: str
    worker_log: str
    received: dict[str, list[Any]] = field(default_factory=dict)


async def _wait_completed(client: RecordingClient, job_id: str, wait_s: float = 60.0) -> None:
    await wait_for(
        lambda: any(
            e.get("job_id") == job_id and e.get("status") == "completed"
            for e in client.events("progress")
        ),
        wait_s,
        f"job {job_id} to complete",
    )


@pytest.fixture(scope="module")
async def flow(
    tmp_path_factory: pytest.TempPathFactory, pg_database_url: str
) -> AsyncIterator[Flow]:
    base = tmp_path_factory.mktemp("ops-flow")
    redis = RedisServer().start()  # own Redis: this worker takes only our job
    config = live_config(base, pg_database_url, redis.url, log_level="DEBUG", log_json=True)
    for i in range(VIDEOS):
        make_video(config.import_root / f"clip{i}.mp4", seconds=0.5)

    web = LiveServer(config)
    # the text log format, too
    worker = WorkerProcess(config.with_overrides(log_json=False), name="ops-worker")
    clients: list[RecordingClient] = []
    try:
        await web.astart()
        password = f"Pw-{uuid.uuid4().hex}"
        wrong_password = f"Wrong-{uuid.uuid4().hex}"
        username = f"ops{uuid.uuid4().hex[:8]}"
        async with httpx.AsyncClient(base_url=web.url, timeout=20) as http:
            user_id, token = await sign_up(http, username, password)
            r = await http.post(
                "/api/auth/login", json={"username": username, "password": wrong_password}
            )
            assert r.status_code == 401, r.text
            headers = {"Authorization": f"Bearer {token}"}
            assert (await http.get("/api/me", headers=headers)).status_code == 200
            # the token in a query string of a REST call, too (must not be logged)
            await http.get(f"/api/me?token={token}", headers=headers)

            for transports in (["polling"], ["websocket"]):
                client = await connect_client(
                    web.url, token=token, transports=transports, via_query=True
                )
                clients.append(client)
                await client.wait_for("snapshot")

            rows = [{"url": f"clip{i}.mp4", "title": f"Clip {i}"} for i in range(3)]
            job_id = await import_videos(http, headers, "ops", rows)
            for client in clients:
                await _wait_completed(client, job_id)
            r = await http.get(f"/api/jobs/{job_id}/progress-history", headers=headers)
            assert r.status_code == 200, r.text
            r = await http.get("/metrics")
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("text/plain")
            metrics_text = r.text
        received = {"polling": clients[0].events("progress")}
        for client in clients:
            await client.close()
        clients.clear()
    finally:
        for client in clients:
            await client.close()
        await web.astop()
        await asyncio.to_thread(worker.stop, 15)
        worker_log = worker.output()
        worker.close()
        redis.stop()
    yield Flow(
        token=token,
        password=password,
        wrong_password=wrong_password,
        user_id=user_id,
        job_id=job_id,
        metrics_text=metrics_text,
        web_log=web.output(),
        worker_log=worker_log,
        received=received,
    )


def value(text: str, name: str, **labels: str) -> float:
    found = sample_value(text, name, labels)
    assert found is not None, f"{name}{labels} missing from /metrics"
    return found


def test_metrics_aggregate_web_and_worker_after_a_run(flow: Flow) -> None:
    text = flow.metrics_text
    events = len(flow.received["polling"])  # pending is published by the API process
    assert events >= VIDEOS + 1
    # published by the worker (another process than the one answering /metrics)
    assert value(text, "reeltrack_progress_events_published_total") >= VIDEOS + 1
    assert value(text, "reeltrack_progress_publish_failures_total") == 0
    # the persist latency histogram, from the worker's work-horse
    assert value(text, "reeltrack_progress_persist_seconds_count") >= VIDEOS + 1
    assert value(text, "reeltrack_progress_persist_seconds_sum") > 0
    assert value(text, "reeltrack_progress_persist_seconds_bucket", le="+Inf") >= VIDEOS + 1
    assert value(text, "reeltrack_progress_persist_failures_total") == 0
    assert value(text, "reeltrack_progress_events_persisted_total") >= VIDEOS + 1
    # both clients were connected when /metrics answered
    assert value(text, "reeltrack_socketio_connections", transport="polling") == 1
    assert value(text, "reeltrack_socketio_connections", transport="websocket") == 1
    assert value(text, "reeltrack_socketio_connects_total", transport="websocket") == 1
    # every event was forwarded to two sockets' room once (one web process)
    assert value(text, "reeltrack_progress_forward_lag_seconds_count") >= VIDEOS + 1
    assert value(text, "reeltrack_progress_forward_lag_seconds_sum") > 0
    assert value(text, "reeltrack_redis_connection_failures_total", process="worker") == 0


def test_no_token_or_password_in_any_log_line(flow: Flow) -> None:
    logs = {"web": flow.web_log, "worker": flow.worker_log}
    secrets = {
        "access token": flow.token,
        "token signature": flow.token.rsplit(".", 1)[-1],
        "password": flow.password,
        "wrong password": flow.wrong_password,
        "SECRET_KEY": TEST_SECRET,
    }
    for where, text in logs.items():
        assert len(text.splitlines()) > 20, f"{where} logged (almost) nothing:\n{text}"
        for what, secret in secrets.items():
            hits = [line for line in text.splitlines() if secret in line]
            assert not hits, f"{what} in the {where} log:\n" + "\n".join(hits[:5])

    # ... and the logs did see the requests that carried them
    assert "token=[redacted]" in flow.web_log  # ?token= of socket and REST requests
    assert "/api/auth/login" in flow.web_log


def test_logs_are_structured_with_job_and_user(flow: Flow) -> None:
    records = []
    for line in flow.web_log.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    assert records, "LOG_JSON=true: the web process writes JSON lines"
    assert {"ts", "level", "logger", "message", "pid"} <= set(records[0])
    assert any(r.get("user_id") == flow.user_id for r in records), "no web record names the user"
    # the worker (text format) names job and owner on the lines of the job's run
    tagged = [
        line
        for line in flow.worker_log.splitlines()
        if f"job_id={flow.job_id}" in line and f"user_id={flow.user_id}" in line
    ]
    assert tagged, "no worker line carries job_id and user_id"
