"""``reeltrack run`` keeps VAR_DIR private: the directory tree 0700, every file 0600
(SQLite with password hashes, secret, thumbnails, Redis data), and the embedded Redis
reachable only through a unix socket inside it - no TCP listener."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.live import ROOT
from tests.support.services import free_port
from tests.support.workers import _children_by_parent, _cmdline

#: settings the run must choose itself (embedded Redis, SQLite in VAR_DIR, generated secret)
UNSET = ("REDIS_URL", "DATABASE_URL", "SECRET_KEY", "MEDIA_ROOT", "IMPORT_ROOT", "VAR_DIR")


def _wait_until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        time.sleep(0.2)


def _descendants(pid: int) -> list[int]:
    tree = _children_by_parent()
    found, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _tcp_listen_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def test_run_keeps_var_dir_private_and_redis_off_tcp(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    port = free_port()
    env.update(VAR_DIR=str(var_dir), PORT=str(port), LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    env.pop("REELTRACK_ENV", None)
    old_umask = os.umask(0o022)  # a usual login umask: what reeltrack must not rely on
    log = tempfile.NamedTemporaryFile(prefix="rt-run-", suffix=".log", delete=False)
    try:
        run = subprocess.Popen(
            [sys.executable, "-m", "quart_app.cli", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        os.umask(old_umask)

    def output() -> str:
        log.flush()
        return Path(log.name).read_text(errors="replace")

    try:
        thumbs = var_dir / "media" / "thumbnails"
        _wait_until(
            lambda: (
                run.poll() is not None
                or ("reeltrack is running" in output() and any(thumbs.glob("*.jpg")))
            ),
            90,
            "reeltrack run up with a thumbnail written",
        )
        assert run.poll() is None, output()
        text = output()
        assert "embedded Redis on unix socket" in text, text
        # the embedded Redis's URL is written down, and printed
        url = (var_dir / "redis" / "url").read_text()
        assert url == f"unix://{(var_dir / 'redis' / 'redis.sock').resolve()}?db=0\n", url
        assert f"REDIS_URL={url.strip()}" in text, text

        # the whole tree is private: directories 0700, files 0600
        assert stat.S_IMODE(var_dir.stat().st_mode) == 0o700
        loose = []
        for path in [var_dir, *var_dir.rglob("*")]:
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue
            if stat.S_IMODE(mode) & 0o077:
                loose.append(f"{oct(stat.S_IMODE(mode))} {path.relative_to(var_dir)}")
        assert not loose, loose
        for name in ("reeltrack.sqlite3", "secret_key", "demo_password"):
            assert stat.S_IMODE((var_dir / name).stat().st_mode) == 0o600, name
        jpg = next(thumbs.glob("*.jpg"))
        assert stat.S_IMODE(jpg.stat().st_mode) == 0o600
        assert any((var_dir / "redis").glob("*.aof*")) or any(
            (var_dir / "redis" / "appendonlydir").glob("*")
        )

        # Redis: a unix socket inside VAR_DIR and no TCP listening socket at all
        redis_pids = [p for p in _descendants(run.pid) if "redis-server" in _cmdline(p)]
        assert len(redis_pids) == 1, [_cmdline(p) for p in _descendants(run.pid)]
        assert not _socket_inodes(redis_pids[0]) & _tcp_listen_inodes()
        sock = var_dir / "redis" / "redis.sock"
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) & 0o077 == 0
    finally:
        if run.poll() is None:
            os.kill(run.pid, signal.SIGTERM)
        try:
            run.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        final_output = output()
        log.close()
        os.unlink(log.name)
    assert run.returncode == 0, final_output
