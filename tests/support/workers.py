"""``reeltrack worker`` subprocesses: the one helper every test that runs a real worker
uses (tasks, ops, e2e, topology, faults).

    worker = WorkerProcess(config)      # python -m quart_app.cli worker, own session
    worker.output()                     # its stdout+stderr so far (a temporary file)
    worker.horses()                     # pids of RQ work-horses running a job now
    worker.kill_all()                   # SIGKILL parent, horse, scheduler, cron at once
    worker.stop()                       # SIGTERM (graceful), SIGKILL after a timeout
    worker.close()                      # stop, then remove the output file

RQ's work-horse calls ``setpgrp()``, so it is NOT in the worker's process group: the
whole tree is found through ``/proc`` (parent pids).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from quart_app.core.config import Config
from tests.support.live import ROOT, LiveServer, child_environ


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


class WorkerProcess:
    """One ``reeltrack worker`` (RQ worker + scheduler + cron child) in its own session."""

    def __init__(self, config: Config, *args: str, name: str = "worker") -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"rt-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quart_app.cli", "worker", *args],
            cwd=ROOT,
            env=child_environ(config),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def descendants(self) -> list[int]:
        """Pids of every process below the worker, at any depth."""
        children = _children_by_parent()
        found, todo = [], [self.proc.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        return found

    def horses(self) -> list[int]:
        """Children that left the worker's process group: RQ work-horses (setpgrp on fork)."""
        own = _group_of(self.proc.pid)
        return [
            pid
            for pid in self.descendants()
            if _group_of(pid) not in (None, own) and "worker" in _cmdline(pid)
        ]

    def kill_all(self) -> int:
        """SIGKILL the worker and everything it started at once (like an OOM kill of its
        container); returns how many processes were signalled."""
        victims = [self.proc.pid, *self.descendants()]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        return len(victims)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the worker's group and its horses; SIGKILL whatever is left."""
        if self.proc.poll() is None:
            horses = self.horses()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(self.proc.pid), signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_all()
            for pid in horses:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


@contextlib.asynccontextmanager
async def web_and_worker(
    config: Config, name: str
) -> AsyncIterator[tuple[LiveServer, WorkerProcess]]:
    """A web process (``<name>-web``) and then a worker (``<name>-worker``) on
    ``config``; on the way out the worker and everything it started are SIGKILLed, then
    the web is closed."""
    web = LiveServer(config, name=f"{name}-web")
    worker: WorkerProcess | None = None
    try:
        await web.astart(60)
        worker = WorkerProcess(config, name=f"{name}-worker")
        yield web, worker
    finally:
        if worker is not None:
            await asyncio.to_thread(worker.kill_all)
            worker.close()
        await asyncio.to_thread(web.close)
