"""The one place that reads reeltrack's environment.

Every process (web, worker, CLI, tests) builds a :class:`Config` with
:meth:`Config.from_env` (or directly, in tests) and passes it down; no other module
reads ``os.environ`` for settings.  This module must stay free of Quart imports so the
worker can use it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

#: name -> (default as text, description). The README table and .env.example mirror it.
ENV_VARS: dict[str, tuple[str, str]] = {
    "REELTRACK_ENV": ("development", "`production` makes SECRET_KEY mandatory"),
    "HOST": ("127.0.0.1", "address the web process binds"),
    "PORT": ("8000", "port the web process binds"),
    "VAR_DIR": ("./var", "SQLite file, media, generated secret, embedded Redis"),
    "DATABASE_URL": (
        "sqlite://VAR_DIR/reeltrack.sqlite3",
        "postgres://user:pass@host:5432/db or sqlite://path",
    ),
    "REDIS_URL": (
        "(embedded)",
        "redis://host:6379/0; unset: `reeltrack run` starts a private Redis",
    ),
    "SECRET_KEY": (
        "(generated into VAR_DIR/secret_key)",
        "signs access tokens; required in production",
    ),
    "CORS_ORIGINS": (
        "(same origin only)",
        "comma-separated origins allowed for REST and Socket.IO",
    ),
    "WEBSOCKET_PING_INTERVAL": ("30", "Socket.IO ping interval, seconds"),
    "WEBSOCKET_TIMEOUT": ("60", "Socket.IO ping timeout, seconds"),
    "WS_MAX_CONNECTIONS_PER_USER": ("5", "live Socket.IO connections per user, all processes"),
    "WS_PRESENCE_TTL": (
        "30",
        "seconds a dead web process's sockets keep counting toward the per-user limit",
    ),
    "SOCKETIO_MANAGER": (
        "user-channels",
        "`user-channels` (a Redis channel per user; fast) or `stock` (python-socketio's)",
    ),
    "WS_PERMESSAGE_DEFLATE": ("false", "compress websocket messages (costs ~90 KB/connection)"),
    "WS_MAX_MESSAGE_BYTES": ("65536", "largest Socket.IO message a client may send"),
    "RESUME_MAX_JOBS": ("200", "job ids accepted in one `resume`"),
    "RESUME_MAX_EVENTS": ("5000", "events returned by one `resume` before `truncated`"),
    "REDIS_PUBSUB_POOL_SIZE": ("10", "Redis connections for pub/sub per web process"),
    "PROGRESS_HISTORY_RETENTION_DAYS": ("30", "progress events older than this are purged"),
    "MEDIA_ROOT": ("VAR_DIR/media", "uploads and thumbnails"),
    "IMPORT_ROOT": ("VAR_DIR/import", "CSV paths are relative to it"),
    "IMPORT_ALLOW_PRIVATE_HOSTS": ("false", "allow URL imports from private/loopback addresses"),
    "MAX_UPLOAD_BYTES": ("2147483648", "largest uploaded or fetched video, bytes"),
    "MAX_REQUEST_BYTES": ("2147483648", "largest request body, bytes"),
    "MAX_VIDEOS_PER_JOB": ("1000", "rows per import / files per upload"),
    "FETCH_TIMEOUT": ("60", "seconds allowed for fetching one URL"),
    "ACCESS_TOKEN_TTL": ("86400", "access token lifetime, seconds"),
    "ALLOW_REGISTRATION": ("true", "allow POST /api/auth/register"),
    "LOGIN_MAX_ATTEMPTS": ("5", "failed logins per username+address before 429"),
    "LOGIN_WINDOW": ("300", "seconds over which failed logins are counted"),
    "RATE_LIMIT_PER_MINUTE": ("600", "REST requests per user per minute (0 = off)"),
    "TRUSTED_PROXY_HOPS": (
        "0",
        "proxies in front whose X-Forwarded-For is trusted for the client address (1 behind nginx)",
    ),
    "THROTTLE_EVERY_N_VIDEOS": ("10", "large jobs publish every Nth video..."),
    "THROTTLE_INTERVAL": ("5", "...or after this many seconds, whichever first"),
    "THROTTLE_MIN_VIDEOS": ("100", "jobs with at least this many videos are throttled"),
    "RETRY_BUFFER_SIZE": ("10000", "events kept in memory while the DB is unreachable"),
    "STALE_JOB_SECONDS": (
        "120",
        "a `processing` job whose worker is gone this long is failed/requeued",
    ),
    "LOG_LEVEL": ("INFO", "DEBUG, INFO, WARNING, ERROR"),
    "LOG_JSON": ("false", "log JSON lines instead of text"),
}

_TRUE = {"1", "true", "yes", "on"}


#: every Redis key reeltrack writes starts with this (shared Redis instances); defined
#: here, in the Quart-free config module, so the worker (``tasks``) can use it too
REDIS_KEY_PREFIX = "reeltrack:"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, ENV_VARS[name][0]).strip().lower()
    if raw in _TRUE:
        return True
    if raw in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, minimum: int = 0) -> int:
    raw = env.get(name, ENV_VARS[name][0])
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _socketio_manager(env: Mapping[str, str]) -> str:
    raw = env.get("SOCKETIO_MANAGER", ENV_VARS["SOCKETIO_MANAGER"][0]).strip().lower()
    if raw not in {"user-channels", "stock"}:
        raise ConfigError(f"SOCKETIO_MANAGER must be user-channels or stock, got {raw!r}")
    return raw


def _float(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name, ENV_VARS[name][0])
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class Config:
    """Immutable settings of one reeltrack process."""

    env: str = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    var_dir: Path = Path("var")
    database_url: str = ""
    redis_url: str | None = None
    secret_key: str = field(default="", repr=False)
    cors_origins: tuple[str, ...] = ()
    ws_ping_interval: float = 30.0
    ws_ping_timeout: float = 60.0
    ws_max_connections_per_user: int = 5
    ws_presence_ttl: float = 30.0
    socketio_manager: str = "user-channels"
    ws_permessage_deflate: bool = False
    ws_max_message_bytes: int = 65536
    resume_max_jobs: int = 200
    resume_max_events: int = 5000
    redis_pubsub_pool_size: int = 10
    retention_days: int = 30
    media_root: Path = Path("var/media")
    import_root: Path = Path("var/import")
    import_allow_private_hosts: bool = False
    max_upload_bytes: int = 2 * 1024**3
    max_request_bytes: int = 2 * 1024**3
    max_videos_per_job: int = 1000
    fetch_timeout: float = 60.0
    access_token_ttl: int = 86400
    allow_registration: bool = True
    login_max_attempts: int = 5
    login_window: int = 300
    rate_limit_per_minute: int = 600
    trusted_proxy_hops: int = 0
    throttle_every_n_videos: int = 10
    throttle_interval: float = 5.0
    throttle_min_videos: int = 100
    retry_buffer_size: int = 10000
    stale_job_seconds: int = 120
    log_level: str = "INFO"
    log_json: bool = False

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def with_overrides(self, **changes: Any) -> Config:
        """A copy with some fields replaced (tests, CLI flags)."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read every setting from ``environ`` (default ``os.environ``).

        Raises :class:`ConfigError` naming the variable when a value is malformed, or
        when ``REELTRACK_ENV=production`` and ``SECRET_KEY`` is unset.  In development a
        missing ``SECRET_KEY`` is generated once into ``VAR_DIR/secret_key``.
        """
        env = dict(os.environ if environ is None else environ)
        mode = env.get("REELTRACK_ENV", "development").strip().lower()
        var_dir = Path(env.get("VAR_DIR", "./var")).expanduser().resolve()
        database_url = env.get("DATABASE_URL") or f"sqlite://{var_dir / 'reeltrack.sqlite3'}"
        secret = env.get("SECRET_KEY", "")
        if not secret:
            if mode == "production":
                raise ConfigError("SECRET_KEY is required when REELTRACK_ENV=production")
            secret = _dev_secret(var_dir)
        elif len(secret) < 16:
            raise ConfigError("SECRET_KEY must be at least 16 characters")
        level = env.get("LOG_LEVEL", "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
        origins = tuple(
            o.strip().rstrip("/") for o in env.get("CORS_ORIGINS", "").split(",") if o.strip()
        )
        return cls(
            env=mode,
            host=env.get("HOST", "127.0.0.1"),
            port=_int(env, "PORT", 0),
            var_dir=var_dir,
            database_url=database_url,
            redis_url=env.get("REDIS_URL") or None,
            secret_key=secret,
            cors_origins=origins,
            ws_ping_interval=_float(env, "WEBSOCKET_PING_INTERVAL"),
            ws_ping_timeout=_float(env, "WEBSOCKET_TIMEOUT"),
            ws_max_connections_per_user=_int(env, "WS_MAX_CONNECTIONS_PER_USER", 1),
            ws_presence_ttl=_float(env, "WS_PRESENCE_TTL"),
            socketio_manager=_socketio_manager(env),
            ws_permessage_deflate=_bool(env, "WS_PERMESSAGE_DEFLATE"),
            ws_max_message_bytes=_int(env, "WS_MAX_MESSAGE_BYTES", 1024),
            resume_max_jobs=_int(env, "RESUME_MAX_JOBS", 1),
            resume_max_events=_int(env, "RESUME_MAX_EVENTS", 1),
            redis_pubsub_pool_size=_int(env, "REDIS_PUBSUB_POOL_SIZE", 1),
            retention_days=_int(env, "PROGRESS_HISTORY_RETENTION_DAYS", 1),
            media_root=Path(env.get("MEDIA_ROOT") or var_dir / "media").expanduser().resolve(),
            import_root=Path(env.get("IMPORT_ROOT") or var_dir / "import").expanduser().resolve(),
            import_allow_private_hosts=_bool(env, "IMPORT_ALLOW_PRIVATE_HOSTS"),
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", 1),
            max_request_bytes=_int(env, "MAX_REQUEST_BYTES", 1),
            max_videos_per_job=_int(env, "MAX_VIDEOS_PER_JOB", 1),
            fetch_timeout=_float(env, "FETCH_TIMEOUT"),
            access_token_ttl=_int(env, "ACCESS_TOKEN_TTL", 1),
            allow_registration=_bool(env, "ALLOW_REGISTRATION"),
            login_max_attempts=_int(env, "LOGIN_MAX_ATTEMPTS", 1),
            login_window=_int(env, "LOGIN_WINDOW", 1),
            rate_limit_per_minute=_int(env, "RATE_LIMIT_PER_MINUTE", 0),
            trusted_proxy_hops=_int(env, "TRUSTED_PROXY_HOPS", 0),
            throttle_every_n_videos=_int(env, "THROTTLE_EVERY_N_VIDEOS", 1),
            throttle_interval=_float(env, "THROTTLE_INTERVAL"),
            throttle_min_videos=_int(env, "THROTTLE_MIN_VIDEOS", 1),
            retry_buffer_size=_int(env, "RETRY_BUFFER_SIZE", 1),
            stale_job_seconds=_int(env, "STALE_JOB_SECONDS", 1),
            log_level=level,
            log_json=_bool(env, "LOG_JSON"),
        )


def _dev_secret(var_dir: Path) -> str:
    """Return the development secret in ``var_dir``, creating it (mode 0600) once."""
    path = var_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    var_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its secret
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value
