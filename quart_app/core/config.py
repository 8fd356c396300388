"""The one place that reads reeltrack's settings.

Each setting is declared once, as a field of :class:`Config`: attribute name, type,
default, bounds, environment variable and meaning.  The README table and ``.env.example``
are rendered from these declarations (:mod:`quart_app.core.settings_docs`) and a test
keeps them equal.

Every process (web, worker, CLI) builds its :class:`Config` with :meth:`Config.from_env`
and passes it down; no other module reads ``os.environ`` for settings.  Values come from
the process environment first, then from a ``.env`` file (``.env`` in the working
directory, or the file ``REELTRACK_ENV_FILE`` names; ``REELTRACK_ENV_FILE=`` reads none).
``Config(...)`` with keywords never reads the environment (tests build it that way).

This module must stay free of Quart imports so the worker can use it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

#: every Redis key reeltrack writes starts with this (shared Redis instances); defined
#: here, in the Quart-free config module, so the worker (``tasks``) can use it too
REDIS_KEY_PREFIX = "reeltrack:"

#: names the ``.env`` file to read (process environment only); empty: read no file
ENV_FILE_VAR = "REELTRACK_ENV_FILE"
DEFAULT_ENV_FILE = ".env"
#: process variables starting with this that are not settings are refused as typos
_OWN_PREFIX = "REELTRACK_"


class ConfigError(ValueError):
    """A setting is missing, unknown or malformed; the message names the variable."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(value: object) -> object:
    """``1/true/yes/on`` or ``0/false/no/off/(empty)``, any case; anything else fails."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("must be true or false")
    return value


Flag = Annotated[bool, BeforeValidator(_flag)]


def _setting(
    default: Any,
    env: str,
    doc: str,
    *,
    shown: str | None = None,
    empty_is_default: bool = False,
    **bounds: Any,
) -> Any:
    """Declare one setting read from variable ``env``.

    ``shown`` is the default as the docs print it (when it is derived, e.g. from
    VAR_DIR); ``empty_is_default`` makes ``NAME=`` mean "unset" rather than a value;
    ``bounds`` are pydantic constraints (``ge``, ``le``, ``min_length``, ``repr``...).
    """
    extra: dict[str, Any] = {"shown": shown if shown is not None else _as_text(default)}
    if empty_is_default:
        extra["empty_is_default"] = True
    return Field(default, validation_alias=env, description=doc, json_schema_extra=extra, **bounds)


def _as_text(value: object) -> str:
    """A default as it is written in the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Config(BaseSettings):
    """Immutable (frozen, hashable) settings of one reeltrack process."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        case_sensitive=True,
        validate_by_name=True,
        validate_by_alias=True,
        env_file=None,
        # defaults are written valid (the docs test checks them); "" is SECRET_KEY's "unset"
        validate_default=False,
    )

    env: str = _setting("development", "REELTRACK_ENV", "`production` makes SECRET_KEY mandatory")
    host: str = _setting("127.0.0.1", "HOST", "address the web process binds")
    port: int = _setting(8000, "PORT", "port the web process binds", ge=0, le=65535)
    var_dir: Path = _setting(
        Path("var"),
        "VAR_DIR",
        "SQLite file, media, generated secret, embedded Redis",
        shown="./var",
    )
    database_url: str = _setting(
        "",
        "DATABASE_URL",
        "postgres://user:pass@host:5432/db or sqlite://path",
        shown="sqlite://VAR_DIR/reeltrack.sqlite3",
        empty_is_default=True,
    )
    redis_url: str | None = _setting(
        None,
        "REDIS_URL",
        "redis://host:6379/0, or redis+sentinel://host:port[,host:port...]/<master>[/<db>]; "
        "unset: `reeltrack run` starts a private Redis",
        shown="(embedded)",
        empty_is_default=True,
    )
    run_workers: int = _setting(
        2, "RUN_WORKERS", "workers `reeltrack run` starts (each restarted if it crashes)", ge=1
    )
    run_stop_grace: float = _setting(
        10.0,
        "RUN_STOP_GRACE",
        "seconds `reeltrack run` gives its processes to stop (a running job is requeued)",
        gt=0,
    )
    secret_key: str = _setting(
        "",
        "SECRET_KEY",
        "signs access tokens; required in production; at least 16 characters",
        shown="(generated into VAR_DIR/secret_key)",
        empty_is_default=True,
        min_length=16,
        repr=False,
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = _setting(
        (),
        "CORS_ORIGINS",
        "comma-separated origins allowed for REST and Socket.IO",
        shown="(same origin only)",
        empty_is_default=True,
    )
    ws_ping_interval: float = _setting(
        30.0, "WEBSOCKET_PING_INTERVAL", "Socket.IO ping interval, seconds", gt=0
    )
    ws_ping_timeout: float = _setting(
        60.0, "WEBSOCKET_TIMEOUT", "Socket.IO ping timeout, seconds", gt=0
    )
    ws_max_connections_per_user: int = _setting(
        5,
        "WS_MAX_CONNECTIONS_PER_USER",
        "live Socket.IO connections per user, all processes",
        ge=1,
    )
    ws_presence_ttl: float = _setting(
        30.0,
        "WS_PRESENCE_TTL",
        "seconds a dead web process's sockets keep counting toward the per-user limit",
        gt=0,
    )
    serve_role: Literal["all", "sockets", "api"] = _setting(
        "all",
        "SERVE_ROLE",
        "what `reeltrack serve` serves: `all`, `sockets` (Socket.IO, /api/health, /metrics) "
        "or `api` (REST, the web app, /metrics); `--role` overrides it",
    )
    event_loop: Literal["uvloop", "asyncio"] = _setting(
        "uvloop",
        "EVENT_LOOP",
        "the web process's event loop: `uvloop` (libuv: less CPU per connection, packet "
        "and disconnect) or `asyncio` (the standard library's)",
    )
    socketio_manager: Literal["user-channels", "stock"] = _setting(
        "user-channels",
        "SOCKETIO_MANAGER",
        "`user-channels` (a Redis channel per user; fast) or `stock` (python-socketio's)",
    )
    fanout_redis_cluster: Annotated[tuple[str, ...], NoDecode] = _setting(
        (),
        "FANOUT_REDIS_CLUSTER",
        "Redis Cluster nodes `host:port,host:port` (any of its nodes) carrying the progress "
        "fan-out as sharded pub/sub (a channel per user, SPUBLISH/SSUBSCRIBE on the shard "
        "owning it); unset: the fan-out stays on REDIS_URL",
        shown="(unset)",
        empty_is_default=True,
    )
    ws_permessage_deflate: Flag = _setting(
        False, "WS_PERMESSAGE_DEFLATE", "compress websocket messages (costs ~90 KB/connection)"
    )
    ws_max_message_bytes: int = _setting(
        65536, "WS_MAX_MESSAGE_BYTES", "largest Socket.IO message a client may send", ge=1024
    )
    ws_connect_timeout: float = _setting(
        10.0,
        "WS_CONNECT_TIMEOUT",
        "seconds an engine.io session may wait for its Socket.IO connect before it is closed",
        gt=0,
    )
    ws_max_pending_per_address: int = _setting(
        256,
        "WS_MAX_PENDING_PER_ADDRESS",
        "engine.io sessions one client address may hold before their Socket.IO connect",
        ge=1,
    )
    ws_max_pending_sessions: int = _setting(
        1024,
        "WS_MAX_PENDING_SESSIONS",
        "engine.io sessions per web process waiting for their Socket.IO connect",
        ge=1,
    )
    ws_send_buffer_bytes: int = _setting(
        1048576,
        "WS_SEND_BUFFER_BYTES",
        "bytes waiting for one socket that does not read (queued, in flight, buffered) "
        "past which the next message closes it",
        ge=65536,
    )
    resume_max_jobs: int = _setting(
        200, "RESUME_MAX_JOBS", "job ids accepted in one `resume`", ge=1
    )
    resume_max_events: int = _setting(
        5000, "RESUME_MAX_EVENTS", "events returned by one `resume` before `truncated`", ge=1
    )
    resume_burst: int = _setting(
        10,
        "RESUME_BURST",
        "`resume` requests one user may send at once per web process (token bucket size)",
        ge=1,
    )
    resume_per_second: float = _setting(
        2.0,
        "RESUME_PER_SECOND",
        "rate at which a user's `resume` allowance refills, per web process",
        gt=0,
    )
    redis_pubsub_pool_size: int = _setting(
        10, "REDIS_PUBSUB_POOL_SIZE", "Redis connections for pub/sub per web process", ge=1
    )
    redis_pool_size: int = _setting(
        50,
        "REDIS_POOL_SIZE",
        "connections of each other Redis client pool per process (rate limit, login, presence)",
        ge=1,
    )
    redis_pool_timeout: float = _setting(
        5.0,
        "REDIS_POOL_TIMEOUT",
        "seconds a Redis command waits for a free pooled connection before it fails",
        gt=0,
    )
    redis_failover_wait: float = _setting(
        15.0,
        "REDIS_FAILOVER_WAIT",
        "with a `redis+sentinel://` REDIS_URL: seconds a command keeps reconnecting "
        "(asking the Sentinels for the master) before it fails",
        ge=0,
    )
    retention_days: int = _setting(
        30,
        "PROGRESS_HISTORY_RETENTION_DAYS",
        "progress events older than this many days are purged",
        ge=1,
    )
    media_root: Path = _setting(
        Path("var/media"),
        "MEDIA_ROOT",
        "uploads and thumbnails",
        shown="VAR_DIR/media",
        empty_is_default=True,
    )
    import_root: Path = _setting(
        Path("var/import"),
        "IMPORT_ROOT",
        "CSV paths are relative to it",
        shown="VAR_DIR/import",
        empty_is_default=True,
    )
    import_allow_private_hosts: Flag = _setting(
        False, "IMPORT_ALLOW_PRIVATE_HOSTS", "allow URL imports from private/loopback addresses"
    )
    max_upload_bytes: int = _setting(
        2 * 1024**3, "MAX_UPLOAD_BYTES", "largest uploaded or fetched video, bytes", ge=1
    )
    max_request_bytes: int = _setting(
        2 * 1024**3, "MAX_REQUEST_BYTES", "largest request body, bytes", ge=1
    )
    max_videos_per_job: int = _setting(
        1000, "MAX_VIDEOS_PER_JOB", "rows per import / files per upload", ge=1
    )
    body_read_timeout: float = _setting(
        30.0,
        "BODY_READ_TIMEOUT",
        "seconds a request body may go without a byte arriving (then 408, connection closed)",
        gt=0,
    )
    body_min_rate: int = _setting(
        1024,
        "BODY_MIN_RATE",
        "slowest a request body may arrive, bytes/s over each BODY_READ_TIMEOUT (0 = off)",
        ge=0,
    )
    uploads_per_address: int = _setting(
        4,
        "UPLOADS_PER_ADDRESS",
        "uploads one client address may have in flight, over every web process (more: 429)",
        ge=1,
    )
    fetch_timeout: float = _setting(
        60.0, "FETCH_TIMEOUT", "seconds allowed for fetching one URL", gt=0
    )
    video_time_budget: float = _setting(
        300.0,
        "VIDEO_TIME_BUDGET",
        "seconds one video may take in all (fetch + probe + thumbnail) before it fails",
        gt=0,
    )
    job_time_budget: float = _setting(
        3600.0,
        "JOB_TIME_BUDGET",
        "seconds of processing one job may use over all its slices; the videos left then fail",
        gt=0,
    )
    slice_seconds: float = _setting(
        10.0,
        "SLICE_SECONDS",
        "a job yields its worker after this many seconds of processing (0: no time limit)",
        ge=0,
    )
    slice_videos: int = _setting(
        25,
        "SLICE_VIDEOS",
        "...or after this many videos, whichever first (both 0: a job runs to its end)",
        ge=0,
    )
    user_max_active_jobs: int = _setting(
        2,
        "USER_MAX_ACTIVE_JOBS",
        "slices of one user's jobs processed at once, and half of how many are in line "
        "(running or queued); more wait their turn (0: no cap)",
        ge=0,
    )
    high_priority_max_active: int = _setting(
        2,
        "HIGH_PRIORITY_MAX_ACTIVE",
        "unfinished `high` jobs one user may have; more are submitted as `normal`",
        ge=0,
    )
    access_token_ttl: int = _setting(
        86400, "ACCESS_TOKEN_TTL", "access token lifetime, seconds", ge=1
    )
    allow_registration: Flag = _setting(True, "ALLOW_REGISTRATION", "allow POST /api/auth/register")
    login_max_attempts: int = _setting(
        5, "LOGIN_MAX_ATTEMPTS", "failed logins per username+address before 429", ge=1
    )
    login_window: int = _setting(
        300, "LOGIN_WINDOW", "seconds over which failed logins are counted", ge=1
    )
    login_max_attempts_per_username: int = _setting(
        20,
        "LOGIN_MAX_ATTEMPTS_PER_USERNAME",
        "failed logins per username from all addresses before 429",
        ge=1,
    )
    login_max_attempts_per_address: int = _setting(
        50,
        "LOGIN_MAX_ATTEMPTS_PER_ADDRESS",
        "failed logins per client address over all usernames before 429",
        ge=1,
    )
    password_hash_workers: int = _setting(
        2, "PASSWORD_HASH_WORKERS", "password hashes computed at once per web process", ge=1
    )
    password_hash_queue: int = _setting(
        8,
        "PASSWORD_HASH_QUEUE",
        "logins that may wait for a hash worker; more answer 503 busy",
        ge=0,
    )
    rate_limit_per_minute: int = _setting(
        600, "RATE_LIMIT_PER_MINUTE", "REST requests per user per minute (0 = off)", ge=0
    )
    trusted_proxy_hops: int = _setting(
        0,
        "TRUSTED_PROXY_HOPS",
        "proxies in front whose X-Forwarded-For is trusted for the client address (1 behind nginx)",
        ge=0,
    )
    throttle_every_n_videos: int = _setting(
        10, "THROTTLE_EVERY_N_VIDEOS", "large jobs publish every Nth video...", ge=1
    )
    throttle_interval: float = _setting(
        5.0, "THROTTLE_INTERVAL", "...or after this many seconds, whichever first", ge=0
    )
    throttle_min_videos: int = _setting(
        100, "THROTTLE_MIN_VIDEOS", "jobs with at least this many videos are throttled", ge=1
    )
    retry_buffer_size: int = _setting(
        10000, "RETRY_BUFFER_SIZE", "events kept in memory while the DB is unreachable", ge=1
    )
    stale_job_seconds: int = _setting(
        120,
        "STALE_JOB_SECONDS",
        "a `processing` job whose worker is gone this long is failed/requeued",
        ge=1,
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = _setting(
        "INFO", "LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR or CRITICAL"
    )
    log_json: Flag = _setting(False, "LOG_JSON", "log JSON lines instead of text")
    access_log: Flag = _setting(
        False,
        "ACCESS_LOG",
        "log one line per HTTP request and websocket handshake (on anyway at LOG_LEVEL=DEBUG)",
    )

    @field_validator("env", "socketio_manager", "serve_role", "event_loop", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        """Comma-separated text or a sequence; blanks dropped, no trailing slash."""
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, list | tuple):
            return tuple(str(o).strip().rstrip("/") for o in items if str(o).strip())
        return value

    @field_validator("fanout_redis_cluster", mode="before")
    @classmethod
    def _cluster_nodes(cls, value: object) -> object:
        """Comma-separated ``host:port`` items (blanks dropped); a bad item raises."""
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return value
        nodes = tuple(str(n).strip() for n in items if str(n).strip())
        for node in nodes:
            host, _, port = node.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{node!r} is not host:port")
        return nodes

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Config(...) takes only its keywords; the environment is read by from_env alone
        return (init_settings,)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def with_overrides(self, **changes: Any) -> Config:
        """A copy with some fields replaced (tests, CLI flags), validated like the rest.

        Raises :class:`ConfigError` for an unknown field or a value out of its bounds.
        """
        given = {name: getattr(self, name) for name in self.model_fields_set}
        try:
            return type(self)(**{**given, **changes})
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read every setting from ``environ`` (default ``os.environ``), then ``.env``.

        The process environment wins over the file.  Raises :class:`ConfigError` naming
        the variable when a value is malformed or out of bounds, when the ``.env`` file
        holds a name that is not a setting, when a ``REELTRACK_*`` variable is not one,
        when ``REELTRACK_ENV_FILE`` names a missing file, or when
        ``REELTRACK_ENV=production`` and ``SECRET_KEY`` is unset.  In development a
        missing ``SECRET_KEY`` is generated once into ``VAR_DIR/secret_key`` (mode 0600).
        """
        env = os.environ if environ is None else environ
        unknown = sorted(
            name
            for name in env
            if name.startswith(_OWN_PREFIX) and name not in ENV_VARS and name != ENV_FILE_VAR
        )
        if unknown:
            raise ConfigError(f"{', '.join(unknown)}: not a reeltrack setting (see .env.example)")
        env_file = _env_file(env)
        sources = (_EnvSource(cls, env), _DotEnvSource(cls, env_file))
        try:
            # BaseSettings' own hook for "these sources instead of the configured ones"
            read = cls(_build_sources=(sources, {}))  # type: ignore[call-arg]
        except ValidationError as exc:
            raise ConfigError(_describe(exc, env_file)) from None
        return read._derive()

    def _derive(self) -> Config:
        """Resolve the VAR_DIR-relative defaults and the secret key of a read config."""
        var_dir = self.var_dir.expanduser().resolve()
        given = self.model_fields_set
        media = self.media_root if "media_root" in given else var_dir / "media"
        imports = self.import_root if "import_root" in given else var_dir / "import"
        secret = self.secret_key
        if not secret:
            if self.is_production:
                raise ConfigError("SECRET_KEY is required when REELTRACK_ENV=production")
            secret = _dev_secret(var_dir)
        return self.model_copy(
            update={
                "var_dir": var_dir,
                "database_url": self.database_url or f"sqlite://{var_dir / 'reeltrack.sqlite3'}",
                "media_root": media.expanduser().resolve(),
                "import_root": imports.expanduser().resolve(),
                "secret_key": secret,
            }
        )


def _extra(info: FieldInfo) -> dict[str, Any]:
    """What :func:`_setting` stored beside the pydantic field."""
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


#: variable -> (default as the docs show it, meaning), in declaration order
ENV_VARS: dict[str, tuple[str, str]] = {
    str(info.validation_alias): (str(_extra(info)["shown"]), info.description or "")
    for info in Config.model_fields.values()
}

#: Config attribute -> the variable it is read from
FIELD_ENV: dict[str, str] = {
    name: str(info.validation_alias) for name, info in Config.model_fields.items()
}

_EMPTY_IS_DEFAULT = frozenset(
    str(info.validation_alias)
    for info in Config.model_fields.values()
    if _extra(info).get("empty_is_default")
)
_SECRET = frozenset(
    {name for name, info in Config.model_fields.items() if not info.repr}
    | {FIELD_ENV[name] for name, info in Config.model_fields.items() if not info.repr}
)


def _present(values: Mapping[str, str | None]) -> dict[str, str | None]:
    """``values`` without the empty ones that mean "use the default"."""
    return {k: v for k, v in values.items() if not (k in _EMPTY_IS_DEFAULT and v == "")}


class _EnvSource(EnvSettingsSource):
    """The settings in a given mapping (the process environment by default)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls, case_sensitive=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return _present({k: v for k, v in self._environ.items() if k in ENV_VARS})


class _DotEnvSource(DotEnvSettingsSource):
    """The ``.env`` file; a name in it that is not a setting fails validation (extra)."""

    def __init__(self, settings_cls: type[BaseSettings], env_file: Path | None) -> None:
        super().__init__(settings_cls, env_file=env_file, case_sensitive=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return _present(super()._load_env_vars())


def _env_file(env: Mapping[str, str]) -> Path | None:
    """The ``.env`` file to read: REELTRACK_ENV_FILE (must exist), else ./.env if any."""
    named = env.get(ENV_FILE_VAR)
    if named is None:
        return Path(DEFAULT_ENV_FILE)
    if not named:
        return None
    path = Path(named).expanduser()
    if not path.is_file():
        raise ConfigError(f"{ENV_FILE_VAR}: no such file {named!r}")
    return path


def _describe(exc: ValidationError, env_file: Path | None = None) -> str:
    """One line per bad setting, each naming its variable (secrets not echoed)."""
    lines = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "?"
        name = FIELD_ENV.get(key, key)
        if error["type"] == "extra_forbidden":
            # the environment source reads only settings: an extra comes from the file
            where = f" (in {env_file})" if env_file is not None else ""
            lines.append(f"{name}{where}: not a reeltrack setting (see .env.example)")
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
        got = "" if key in _SECRET else f", got {error.get('input')!r}"
        lines.append(f"{name}: {message}{got}")
    return "; ".join(lines)


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
