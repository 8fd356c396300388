"""The seed's throttling policy: unit tests with a fake clock, and a 250-video job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from models.entities import Video
from models.history import events_after
from models.jobs import NewVideo
from quart_app.core.config import Config
from tasks.media import MediaError, MediaInfo, ProcessedMedia
from tasks.processing import run_job
from tasks.throttle import ThrottlePolicy, expected_event_count
from tests.support.builders import seed_job, seqs


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def policy(total: int, clock: FakeClock) -> ThrottlePolicy:
    return ThrottlePolicy(total, min_videos=100, every_n=10, interval=5.0, clock=clock)


def test_small_jobs_send_every_video() -> None:
    p = policy(99, FakeClock())
    assert all(p.should_send(n) for n in range(1, 100))


def test_large_jobs_first_every_nth_failure_and_interval() -> None:
    clock = FakeClock()
    p = policy(100, clock)
    assert p.should_send(1)  # the first event
    assert not p.should_send(2)
    assert p.should_send(3, failed=True)  # every failure
    assert not p.should_send(4)
    assert p.should_send(10)  # every 10th
    clock.now += 4.9
    assert not p.should_send(11)
    clock.now += 0.1  # 5 s since the last event
    assert p.should_send(12)
    clock.now += 4.0
    assert not p.should_send(13)  # the interval restarted at the last event
    assert p.should_send(20)
    assert p.final()


def test_expected_count_formula() -> None:
    assert expected_event_count(10, min_videos=100, every_n=10) == 11
    # first + 25 tenths + final
    assert expected_event_count(250, min_videos=100, every_n=10) == 27
    assert expected_event_count(250, min_videos=100, every_n=10, failed=frozenset({5, 10})) == 28


async def test_250_video_job_sends_exactly_what_the_policy_gives(
    db: str, config: Callable[..., Config], tmp_path: Path
) -> None:
    cfg = config()  # defaults: min 100, every 10th, 5 s
    clock = FakeClock()
    failing = {57, 141}
    slow = 33  # takes 6 s: the 5 s rule fires there
    items = [NewVideo(source=f"import:none{i}.mp4", title=f"V{i}") for i in range(250)]
    _user, job = await seed_job(items)
    calls: list[int] = []

    async def processor(video: Video, _cfg: Config) -> ProcessedMedia:
        number = video.position + 1
        calls.append(number)
        clock.now += 6.0 if number == slow else 0.1
        if number in failing:
            raise MediaError("synthetic failure")
        info = MediaInfo(1.0, 64, 48, 10.0, "h264", None, 1000, 100)
        return ProcessedMedia(info=info, thumbnail=f"thumbnails/{video.id}.jpg")

    published: list[dict[str, object]] = []

    class Emitter:
        async def publish_progress(self, user_id: object, event: dict[str, object]) -> None:
            published.append(event)

    result = await run_job(job.id, cfg, processor=processor, emitter=Emitter(), clock=clock)
    assert result == "completed"
    assert calls == list(range(1, 251))
    tenths = set(range(10, 251, 10))
    expected_videos = sorted({1, slow} | tenths | failing)
    # pending (API) + 1 first + 25 tenths + 2 failures + 1 interval + final = 31
    assert len(expected_videos) == 29
    history = await events_after(job.id, limit=1000)
    assert len(history) == 31
    assert [e["current_video"] for e in history[1:-1]] == expected_videos
    assert seqs(history) == list(range(1, 32))
    assert published == history[1:]  # everything the worker sent, nothing else
    assert history[-1]["status"] == "completed" and history[-1]["failed_videos"] == 2
    assert [e["current_video"] for e in history if e["error"]] == sorted(failing)
