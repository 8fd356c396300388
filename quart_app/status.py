"""``reeltrack status``: what is running, read from outside the processes.

It reports the Redis URL in use (REDIS_URL, or the one ``reeltrack run`` wrote to
VAR_DIR/redis/url for its embedded Redis), whether the web process answers
``/api/health`` on HOST:PORT, the RQ workers alive, the depth of each queue, and the
versions of reeltrack, Python, the Redis server and the database.

Every probe has a short timeout and reports a failure as a sentence, never a
traceback. The installation is "up" (exit 0) when the web process, Redis and at least
one worker are; the database is shown but not required (the web's /api/ready checks it).
"""

from __future__ import annotations

import asyncio
import platform
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from quart_app.core.config import Config

#: seconds each probe (HTTP, Redis, database) may take
PROBE_TIMEOUT_S = 3.0


@dataclass
class WorkerInfo:
    name: str
    state: str
    queues: list[str]
    where: str


@dataclass
class Status:
    """One reading. ``*_error`` is the sentence saying why a part could not be read."""

    redis_url: str | None = None
    redis_source: str = ""
    redis_version: str | None = None
    redis_error: str | None = None
    web_url: str = ""
    web_error: str | None = None
    workers: list[WorkerInfo] = field(default_factory=list)
    queues: dict[str, int] = field(default_factory=dict)
    oldest_age_s: dict[str, float] = field(default_factory=dict)
    database: str = ""
    database_version: str | None = None
    database_error: str | None = None

    @property
    def web_up(self) -> bool:
        return self.web_error is None

    @property
    def redis_up(self) -> bool:
        return self.redis_version is not None

    @property
    def up(self) -> bool:
        """The web process, Redis and at least one worker are up."""
        return self.web_up and self.redis_up and bool(self.workers)


def without_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def redis_url_file(config: Config) -> Path:
    """Where ``reeltrack run`` writes the URL of its embedded Redis."""
    return config.var_dir / "redis" / "url"


def configured_redis_url(config: Config) -> tuple[str | None, str]:
    """(the Redis URL, where it came from): REDIS_URL, else the embedded Redis's file;
    (None, why) when neither exists."""
    if config.redis_url:
        return config.redis_url, "REDIS_URL"
    path = redis_url_file(config)
    try:
        url = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None, f"REDIS_URL is not set and {path} does not exist (reeltrack run writes it)"
    return (url, str(path)) if url else (None, f"{path} is empty")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def web_address(config: Config) -> str:
    """The health URL of the web process of ``config`` (a wildcard bind is asked on
    loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(config.host, config.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.port}/api/health"


def probe_web(url: str) -> str | None:
    """None when ``url`` answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as resp:  # noqa: S310 (operator's own HOST:PORT)
            return None if resp.status == 200 else f"answered HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"answered HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return f"unreachable ({_reason(reason) if isinstance(reason, BaseException) else reason})"


def probe_redis(status: Status, config: Config) -> None:
    """Fill the Redis version, the live workers and the queue depths of ``status``."""
    import redis
    from rq import Worker

    from quart_app.core.metrics_scrape import read_queues
    from quart_app.core.redis_pools import PoolLimits, sync_client
    from tasks.queue import WORKER_QUEUES

    assert status.redis_url is not None
    try:
        client = sync_client(
            status.redis_url,
            PoolLimits(size=2, timeout=PROBE_TIMEOUT_S, failover_wait=PROBE_TIMEOUT_S),
            socket_timeout=PROBE_TIMEOUT_S,
            socket_connect_timeout=PROBE_TIMEOUT_S,
        )
    except (ValueError, redis.exceptions.RedisError) as exc:
        status.redis_error = f"bad URL ({_reason(exc)})"
        return
    try:
        status.redis_version = str(client.info("server").get("redis_version", "unknown"))
        for worker in Worker.all(connection=client):
            status.workers.append(
                WorkerInfo(
                    name=worker.name,
                    state=str(worker.get_state()),
                    queues=worker.queue_names(),
                    where=f"pid {worker.pid} on {worker.hostname}",
                )
            )
        reading = read_queues(client, WORKER_QUEUES)
        status.queues = reading.jobs
        status.oldest_age_s = reading.oldest_age_s
    except (OSError, redis.exceptions.RedisError) as exc:
        status.redis_error = f"unreachable ({_reason(exc)})"
    finally:
        client.close()


async def _database_version(database_url: str) -> str:
    from tortoise import connections

    from models.db import close_db, dialect_of, open_db

    query = "SELECT sqlite_version() AS v" if dialect_of(database_url) == "sqlite" else None
    await open_db(database_url)
    try:
        conn = connections.get("default")
        rows = await conn.execute_query_dict(query or "SHOW server_version")
        name = "SQLite" if query else "PostgreSQL"
        return f"{name} {next(iter(rows[0].values()))}"
    finally:
        await close_db()


def probe_database(status: Status, config: Config) -> None:
    """Fill the database's version (or why it could not be read) of ``status``."""
    from models.db import dialect_of, sqlite_path

    url = config.database_url
    status.database = without_password(url)
    try:
        if dialect_of(url) == "sqlite" and not sqlite_path(url).exists():
            # opening it would create an empty database
            status.database_error = "the SQLite file does not exist yet (reeltrack migrate)"
            return
        status.database_version = asyncio.run(
            asyncio.wait_for(_database_version(url), PROBE_TIMEOUT_S)
        )
    except TimeoutError:
        status.database_error = f"unreachable (no answer within {PROBE_TIMEOUT_S:g} s)"
    except Exception as exc:  # whatever the driver raises is a sentence for the operator
        status.database_error = f"unreachable ({_reason(exc)})"


def read_status(config: Config) -> Status:
    """Probe everything ``config`` points at."""
    status = Status()
    status.redis_url, status.redis_source = configured_redis_url(config)
    if status.redis_url is None:
        status.redis_error = status.redis_source
    else:
        probe_redis(status, config)
    status.web_url = web_address(config)
    status.web_error = probe_web(status.web_url)
    probe_database(status, config)
    return status


def _reeltrack_version() -> str:
    try:
        return version("reeltrack")
    except PackageNotFoundError:
        return "unknown (not installed)"


def render(status: Status) -> str:
    """The text ``reeltrack status`` prints."""
    lines: list[str] = []
    if status.redis_url is None:
        lines.append(f"redis:    not configured: {status.redis_error}")
    else:
        shown = f"{without_password(status.redis_url)} (from {status.redis_source})"
        state = "up" if status.redis_up else (status.redis_error or "down")
        lines.append(f"redis:    {shown}: {state}")
    lines.append(f"web:      {status.web_url}: {status.web_error or 'up'}")
    if not status.redis_up:
        lines.append("workers:  unknown (Redis unreadable)")
        lines.append("queues:   unknown (Redis unreadable)")
    else:
        lines.append(f"workers:  {len(status.workers)} alive")
        for w in status.workers:
            lines.append(f"  {w.name}: {w.state}, queues {','.join(w.queues)}, {w.where}")
        depths = []
        for name, depth in status.queues.items():
            age = status.oldest_age_s.get(name, 0.0)
            depths.append(f"{name} {depth}" + (f" (oldest {age:.0f} s)" if depth else ""))
        lines.append(f"queues:   {', '.join(depths)}")
    db_state = status.database_version or status.database_error
    lines.append(f"database: {status.database}: {db_state}")
    versions = [
        f"reeltrack {_reeltrack_version()}",
        f"Python {platform.python_version()}",
        f"Redis {status.redis_version or 'unknown'}",
        status.database_version or "database unknown",
    ]
    lines.append(f"versions: {', '.join(versions)}")
    missing = [
        what
        for what, ok in (
            ("the web process does not answer", status.web_up),
            ("Redis is unreachable", status.redis_up),
            ("no worker is alive", bool(status.workers)),
        )
        if not ok
    ]
    lines.append("status:   up" if not missing else f"status:   DOWN: {'; '.join(missing)}")
    return "\n".join(lines)


def status_command(config: Config) -> int:
    """Print the status; 0 when the web process, Redis and a worker are up, else 1."""
    status = read_status(config)
    print(render(status))
    return 0 if status.up else 1
