"""POST /api/jobs/{id}/retry: a new job over exactly the failed videos of a finished job.

The worker runs for real (in this process) against a loopback HTTP origin that fails a
URL the first time and serves a real video afterwards.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from models.entities import JobSource, JobStatus, ProcessingJob, Video, VideoList, VideoStatus
from models.jobs import JobSpec, NothingToRetry, create_retry_job
from tasks.processing import run_job
from tests.quart_app.conftest import ApiFactory
from tests.support.builders import make_job, make_list, make_user
from tests.support.media import make_video


class FlakyOrigin:
    """Serves ``/ok.mp4`` always and ``/flaky.mp4`` after failing its first request
    (503); ``/broken.mp4`` is never a video."""

    def __init__(self, video: bytes) -> None:
        self.requests: list[str] = []
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                origin.requests.append(self.path)
                if self.path == "/flaky.mp4" and origin.requests.count(self.path) == 1:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = b"not a video at all" * 10 if self.path == "/broken.mp4" else video
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[FlakyOrigin]:
    video = make_video(tmp_path / "clip.mp4").read_bytes()
    served = FlakyOrigin(video)
    yield served
    served.close()


async def test_retry_of_a_url_that_now_answers_makes_the_video_ready(
    pg_database_url: str, api_factory: ApiFactory, origin: FlakyOrigin
) -> None:
    async with api_factory(pg_database_url, import_allow_private_hosts=True) as api:
        user, stranger = await make_user(), await make_user()
        vlist = await make_list(user, name="Talks")
        body = {
            "name": "Evening talks",
            "videos": [
                {"url": origin.url("ok.mp4"), "title": "OK"},
                {"url": origin.url("flaky.mp4"), "title": "Flaky"},
            ],
        }
        created = await api.import_videos(user, vlist.id, body)
        first_id = created["job_id"]

        status, answer = await api.call("POST", f"/api/jobs/{first_id}/retry", user)
        assert status == 409 and answer["code"] == "job_active", answer
        assert "still running" in answer["message"]

        assert await run_job(first_id, api.config) == "completed"
        status, first = await api.call("GET", f"/api/jobs/{first_id}", user)
        assert first["status"] == "completed" and first["failed_videos"] == 1
        assert first["retryable_videos"] == 1
        flaky = await Video.get(job_id=first_id, title="Flaky")
        assert flaky.status == VideoStatus.FAILED and flaky.error

        await api.assert_not_found(stranger, [("POST", f"/api/jobs/{first_id}/retry")])
        status, accepted = await api.call("POST", f"/api/jobs/{first_id}/retry", user)
        assert status == 202, accepted
        assert accepted["total_videos"] == 1
        retry_id = accepted["job_id"]
        status, retry = await api.call("GET", f"/api/jobs/{retry_id}", user)
        assert retry["name"] == "Retry of Evening talks" and retry["source"] == "retry"
        assert retry["retry_of_id"] == first_id and retry["status"] == "pending"
        assert retry["list_id"] == str(vlist.id) and retry["total_videos"] == 1
        # exactly the failed video moved to the new job, its failure forgotten
        moved = await Video.filter(job_id=retry_id)
        assert [v.id for v in moved] == [flaky.id]
        assert moved[0].status == VideoStatus.PENDING and moved[0].error is None
        assert await Video.filter(job_id=first_id).count() == 1  # the ready one stays

        status, again = await api.call("POST", f"/api/jobs/{first_id}/retry", user)
        assert status == 409 and again["code"] == "nothing_to_retry"
        assert again["message"] == "the failed videos of this job have already been retried"

        assert await run_job(retry_id, api.config) == "completed"
        flaky = await Video.get(id=flaky.id)
        assert flaky.status == VideoStatus.READY and flaky.error is None
        assert flaky.duration_s and flaky.thumbnail_path
        assert origin.requests.count("/flaky.mp4") == 2
        status, retry = await api.call("GET", f"/api/jobs/{retry_id}", user)
        assert retry["status"] == "completed" and retry["failed_videos"] == 0
        assert retry["latest_event"]["progress"] == 100

        status, none = await api.call("POST", f"/api/jobs/{retry_id}/retry", user)
        assert status == 409 and none["code"] == "nothing_to_retry"
        assert none["message"] == "the job has no failed videos to retry"


async def test_only_one_of_two_concurrent_retries_takes_the_videos(db: str) -> None:
    user = await make_user()
    vlist: VideoList = await make_list(user)
    job = await make_job(vlist, status=JobStatus.COMPLETED, events=2, total=3)
    for i in range(3):
        await Video.create(
            list_id=vlist.id,
            job_id=job.id,
            position=i,
            source=f"https://example.com/{i}.mp4",
            title=f"V{i}",
            status=VideoStatus.FAILED,
            error="download failed",
        )
    spec = JobSpec(source=JobSource.RETRY)
    results = await asyncio.gather(
        create_retry_job(job, spec), create_retry_job(job, spec), return_exceptions=True
    )
    made = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(made) == 1 and len(refused) == 1, results
    assert isinstance(refused[0], NothingToRetry)
    new_job, first = made[0]
    assert await Video.filter(job_id=new_job.id, status=VideoStatus.PENDING).count() == 3
    assert first.seq == 1 and first.total_videos == 3
    assert await ProcessingJob.filter(retry_of_id=job.id).count() == 1  # rolled back
