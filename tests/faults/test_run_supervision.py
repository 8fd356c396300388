"""``reeltrack run`` looks after its processes, on the real stack it starts (embedded
Redis on a unix socket, SQLite in VAR_DIR, one web process, RUN_WORKERS workers):

* a worker SIGKILLed mid-job is replaced, /api/health answers throughout, and the job
  completes with contiguous seq;
* Ctrl-C mid-job leaves no process behind (work-horses included) within RUN_STOP_GRACE,
  and the next ``reeltrack run`` on the same VAR_DIR completes the job: seq contiguous
  from 1, no video finished before the stop fetched again.

The job's videos come from a slow HTTP origin on loopback (IMPORT_ALLOW_PRIVATE_HOSTS),
so a job of a dozen videos lasts a dozen seconds without any test knob in product code.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.builders import build_samples
from tests.support.live import ROOT
from tests.support.services import free_port

pytestmark = pytest.mark.slow

#: settings the run must choose itself (embedded Redis, SQLite in VAR_DIR, generated secret)
UNSET = ("REDIS_URL", "DATABASE_URL", "SECRET_KEY", "MEDIA_ROOT", "IMPORT_ROOT", "VAR_DIR")
VIDEOS = 12
DELAY_S = 1.0
GRACE_S = 10.0


class SlowOrigin:
    """Serves files of ``directory`` over HTTP, each after ``delay`` seconds; counts the
    requests per path."""

    def __init__(self, directory: Path, delay: float) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                origin.counts[self.path] += 1
                time.sleep(delay)  # the slow origin: what makes the job last
                body = (directory / self.path.split("?")[0].lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)  # a killed work-horse hangs up mid-download

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _wait_until(condition: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        time.sleep(0.1)


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, pgid) of ``pid``, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    return int(fields[1]), int(fields[2])


def _pids() -> Iterator[int]:
    return (int(e) for e in os.listdir("/proc") if e.isdigit())


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def processes_of(var_dir: Path) -> dict[int, str]:
    """Every live process (not a zombie) that ``reeltrack run`` on ``var_dir`` started,
    work-horses and orphans included: its environment names ``var_dir`` (redis-server
    rewrites its environment for its process title; its command line names the socket
    in ``var_dir``).  Maps pid -> ``ppid pgid command`` as seen now."""
    marker = f"VAR_DIR={var_dir}\0".encode()
    found = {}
    for pid in _pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        cmd = _cmdline(pid)
        if state == b"Z" or not (marker in environ or str(var_dir) in cmd):
            continue
        st = _stat(pid)
        if st is not None:
            found[pid] = f"ppid={st[0]:<7} pgid={st[1]:<7} {cmd}"
    return found


def ps_summary(procs: dict[int, str]) -> str:
    return "\n".join(f"  {pid:>7} {line}" for pid, line in sorted(procs.items()))


class Run:
    """``python -m quart_app.cli run`` on ``var_dir``, its output in a temporary file."""

    def __init__(self, var_dir: Path, port: int) -> None:
        self.var_dir = var_dir
        self.port = port
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env.pop("REELTRACK_ENV", None)
        env.update(
            VAR_DIR=str(var_dir),
            PORT=str(port),
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
            IMPORT_ALLOW_PRIVATE_HOSTS="true",
            RATE_LIMIT_PER_MINUTE="0",
            RUN_STOP_GRACE=str(GRACE_S),
        )
        self.log = tempfile.NamedTemporaryFile(prefix="rt-run-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quart_app.cli", "run"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started = time.monotonic()
        _wait_until(
            lambda: self.proc.poll() is not None or "reeltrack is running" in self.output(),
            60,
            "reeltrack run up",
        )
        assert self.proc.poll() is None, self.output()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def workers(self) -> list[int]:
        """Pids of the ``reeltrack worker`` processes this run started (its children)."""
        return [
            pid
            for pid in _pids()
            if (_stat(pid) or (0, 0))[0] == self.proc.pid and " worker " in f"{_cmdline(pid)} "
        ]

    def busy_worker(self) -> int | None:
        """The worker whose work-horse (a child in a process group of its own) runs now."""
        for worker in self.workers():
            for pid in _pids():
                st = _stat(pid)
                if st and st[0] == worker and st[1] == pid:
                    return worker
        return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(GRACE_S + 10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in processes_of(self.var_dir):  # never leave anything behind
            os.kill(pid, signal.SIGKILL)
        self.log.close()
        os.unlink(self.log.name)


def fresh_var_dir(base: Path) -> Path:
    """A VAR_DIR whose first start skips the 300-video demo import (the tests import
    their own job): the demo is marked as done."""
    var_dir = base / "var"
    var_dir.mkdir(mode=0o700)
    (var_dir / "demo_created").touch()
    return var_dir


class Client:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)
        self.headers: dict[str, str] = {}

    def sign_up(self) -> None:
        body = {"username": "sup_user", "password": "pw-supervision-1"}
        r = self.http.post("/api/auth/register", json=body)
        assert r.status_code == 201, r.text
        r = self.http.post("/api/auth/login", json=body)
        assert r.status_code == 200, r.text
        self.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

    def log_in(self) -> None:
        body = {"username": "sup_user", "password": "pw-supervision-1"}
        r = self.http.post("/api/auth/login", json=body)
        assert r.status_code == 200, r.text
        self.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

    def import_job(self, origin: SlowOrigin, samples: list[str]) -> tuple[str, str]:
        """A list of VIDEOS URLs on the origin, bulk-imported; (list id, job id)."""
        r = self.http.post("/api/lists", json={"name": "slow"}, headers=self.headers)
        assert r.status_code == 201, r.text
        list_id = r.json()["id"]
        rows = [
            {"url": f"{origin.url}/{samples[i % len(samples)]}?n={i}", "title": f"v{i}"}
            for i in range(VIDEOS)
        ]
        r = self.http.post(
            f"/api/lists/{list_id}/videos/bulk", json={"videos": rows}, headers=self.headers
        )
        assert r.status_code == 202, r.text
        return list_id, str(r.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(f"/api/jobs/{job_id}", headers=self.headers)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def videos(self, list_id: str) -> list[dict[str, Any]]:
        """The list's videos (one page holds them all: VIDEOS < the page limit)."""
        r = self.http.get(f"/api/lists/{list_id}/videos?limit=200", headers=self.headers)
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    def ready_sources(self, list_id: str) -> set[str]:
        return {v["source"] for v in self.videos(list_id) if v["status"] == "ready"}

    def errors(self, list_id: str) -> list[str]:
        return [f"{v['source']}: {v['error']}" for v in self.videos(list_id) if v["error"]]

    def seqs(self, job_id: str) -> list[int]:
        r = self.http.get(f"/api/jobs/{job_id}/progress-history?limit=1000", headers=self.headers)
        assert r.status_code == 200, r.text
        return [e["seq"] for e in r.json()["events"]]


class HealthProbe:
    """GET /api/health every 0.1 s in a thread; records every failure."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=2) as http:
            while not self._stop.wait(0.1):
                try:
                    r = http.get("/api/health")
                    if r.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"{r.status_code} {r.text[:100]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[tuple[SlowOrigin, list[str]]]:
    samples = tmp_path / "samples"
    samples.mkdir()
    names = [p.name for p in build_samples(samples) if p.name != "corrupt.mp4"]
    served = SlowOrigin(samples, DELAY_S)
    yield served, names
    served.close()


def _contiguous(seqs: list[int]) -> bool:
    return seqs == list(range(1, len(seqs) + 1))


def test_worker_sigkilled_mid_job_is_replaced_and_the_job_completes(
    tmp_path: Path, origin: tuple[SlowOrigin, list[str]]
) -> None:
    served, samples = origin
    run = Run(fresh_var_dir(tmp_path), free_port())
    probe: HealthProbe | None = None
    try:
        client = Client(run.url)
        client.sign_up()
        assert len(run.workers()) == 2  # RUN_WORKERS' default
        list_id, job_id = client.import_job(served, samples)
        _wait_until(lambda: client.job(job_id)["processed_videos"] >= 2, 30, "2 videos done")
        victim = _wait_until(run.busy_worker, 10, "the worker running the job")
        probe = HealthProbe(run.url)
        time.sleep(0.5)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        _wait_until(
            lambda: len([w for w in run.workers() if w != victim]) == 2, 30, "a worker back"
        )
        back_s = time.monotonic() - killed_at
        done = _wait_until(
            lambda: (j := client.job(job_id))["status"] in ("completed", "failed") and j,
            45,
            "the job ended",
        )
        done_s = time.monotonic() - killed_at
        probe.stop()
        seqs = client.seqs(job_id)
        print(
            f"\n[sigkill] worker {victim} killed; a worker back after {back_s:.1f}s; job "
            f"{done['status']} {done_s:.1f}s after the kill; health ok {probe.ok} times, "
            f"{len(probe.failures)} failures; seq 1..{seqs[-1]} ({len(seqs)} events); "
            f"origin fetches {sum(served.counts.values())} for {VIDEOS} videos"
        )
        assert back_s < 30
        assert done["status"] == "completed", (done, client.errors(list_id))
        assert done["processed_videos"] == VIDEOS and done["failed_videos"] == 0, done
        assert _contiguous(seqs), seqs
        assert seqs[-1] == done["last_seq"], (seqs, done)
        assert not probe.failures, probe.failures[:5]
        assert probe.ok > 10 * done_s * 0.5  # answered all along, not just at the end
        # only the video in flight at the kill was fetched twice
        assert max(served.counts.values()) <= 2 and sum(served.counts.values()) <= VIDEOS + 1
        assert "worker-" in run.output() and "killed by signal SIGKILL" in run.output()
    finally:
        if probe is not None:
            probe.stop()
        run.close()


def test_ctrl_c_mid_job_leaves_nothing_and_the_next_run_completes_the_job(
    tmp_path: Path, origin: tuple[SlowOrigin, list[str]]
) -> None:
    served, samples = origin
    var_dir = fresh_var_dir(tmp_path)
    port = free_port()
    run = Run(var_dir, port)
    try:
        client = Client(run.url)
        client.sign_up()
        list_id, job_id = client.import_job(served, samples)
        _wait_until(lambda: client.job(job_id)["processed_videos"] >= 3, 30, "3 videos done")
        _wait_until(run.busy_worker, 10, "a work-horse running the job")
        before = processes_of(var_dir)
        ready_before = client.ready_sources(list_id)
        interrupted_at = time.monotonic()
        run.proc.send_signal(signal.SIGINT)
        code = run.proc.wait(GRACE_S + 10)
        stop_s = time.monotonic() - interrupted_at
        left = processes_of(var_dir)
        out = run.output()
    finally:
        run.close()
    print(
        f"\n[ctrl-c] {len(before)} processes before (horse included):\n{ps_summary(before)}\n"
        f"stopped in {stop_s:.1f}s (exit {code}); processes left: {len(left)} "
        f"{ps_summary(left)}; {len(ready_before)} videos ready at the stop"
    )
    assert code == 0, out
    assert stop_s <= GRACE_S + 1.0, out
    assert not left, ps_summary(left)
    assert "cold shutdown" in out, out

    rerun = Run(var_dir, port)
    try:
        client = Client(rerun.url)
        client.log_in()
        resumed = _wait_until(
            lambda: client.job(job_id)["processed_videos"] > len(ready_before) and True,
            30,
            "the job resumed",
        )
        resume_s = time.monotonic() - rerun.started
        done = _wait_until(
            lambda: (j := client.job(job_id))["status"] in ("completed", "failed") and j,
            45,
            "the job ended",
        )
        done_s = time.monotonic() - rerun.started
        seqs = client.seqs(job_id)
        print(
            f"[ctrl-c] second run: job moving again {resume_s:.1f}s after the start "
            f"({resumed}), {done['status']} after {done_s:.1f}s; seq 1..{seqs[-1]}; origin "
            f"fetches {sum(served.counts.values())} for {VIDEOS} videos; twice: "
            f"{sorted(p for p, n in served.counts.items() if n > 1)}"
        )
        assert done["status"] == "completed", (done, client.errors(list_id))
        assert done["processed_videos"] == VIDEOS and done["failed_videos"] == 0, done
        assert _contiguous(seqs), seqs
        for source in ready_before:  # finished before the stop: never fetched again
            path = source.removeprefix(served.url)
            assert served.counts[path] == 1, (source, served.counts)
        assert sum(served.counts.values()) <= VIDEOS + 1, served.counts
    finally:
        rerun.close()
