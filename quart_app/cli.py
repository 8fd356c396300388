"""The ``reeltrack`` command: run, serve, worker, migrate, create-user, demo, purge-history,
status.

Help texts are plain text (what ``--help`` prints): each command names the settings
(environment variables, or a ``.env`` file) that change what it does, with defaults.

Each subcommand builds its Config from the environment and imports what it needs
lazily, so ``reeltrack migrate`` does not load Socket.IO and the worker does not load
Quart.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from quart_app.core.config import Config, ConfigError


def _migrate(config: Config, args: argparse.Namespace) -> int:
    from models.migrate import MigrationsMissing, location_for, upgrade

    try:
        applied = asyncio.run(upgrade(config.database_url))
    except MigrationsMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    where = location_for(config.database_url)
    print(
        f"migrations applied: {len(applied)} ({where.name})" + "".join(f"\n  {n}" for n in applied)
    )
    return 0


def _create_user(config: Config, args: argparse.Namespace) -> int:
    from quart_app.core.accounts import UserExists, create_user_in_db

    password = args.password or _read_password()
    try:
        asyncio.run(create_user_in_db(config, args.username, password))
    except UserExists:
        print(f"error: user {args.username!r} already exists", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"created user {args.username!r}")
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\n")


def _serve(config: Config, args: argparse.Namespace) -> int:
    from quart_app.serve import serve

    if args.role is not None:
        config = config.with_overrides(serve_role=args.role)
    return serve(config)


def _run(config: Config, args: argparse.Namespace) -> int:
    from quart_app.devserver import run_all

    return run_all(config)


def _worker(config: Config, args: argparse.Namespace) -> int:
    from tasks.worker import run_worker

    return run_worker(
        config,
        burst=args.burst,
        queues=args.queues,
        name=args.name,
        replaces=tuple(args.replaces),
    )


def _queue_list(text: str) -> tuple[str, ...]:
    """argparse type of ``--queues``: refused while parsing, before anything starts."""
    from tasks.queue import parse_queues

    try:
        return parse_queues(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _demo(config: Config, args: argparse.Namespace) -> int:
    from quart_app.demo import run_demo

    paced = {} if args.duration is None else {"duration": args.duration}
    return run_demo(config, username=args.username, count=args.count, **paced)


def _purge(config: Config, args: argparse.Namespace) -> int:
    from tasks.retention import purge_history_command

    return purge_history_command(config, older_than_days=args.older_than, dry_run=args.dry_run)


def _status(config: Config, args: argparse.Namespace) -> int:
    from quart_app.status import status_command

    return status_command(config)


#: long-running processes whose metrics GET /metrics aggregates
PROCESS_METRICS_COMMANDS = frozenset({"serve", "worker"})
#: commands whose log records go through quart_app.core.logs (the others print to a terminal)
LOGGING_COMMANDS = frozenset({"serve", "worker", "run"})


DESCRIPTION = (
    "reeltrack: import video lists, process them in background workers, watch every job live."
)
SETTINGS_NOTE = (
    "Settings come from environment variables, then from a .env file in the working\n"
    "directory (REELTRACK_ENV_FILE names another, empty: none). Every setting, its\n"
    "default and meaning: .env.example and the README's settings table."
)
#: the settings that change what each command does (all of them: .env.example)
COMMAND_SETTINGS: dict[str, str] = {
    "run": "VAR_DIR (state: SQLite, media, secret key, embedded Redis; default ./var),\n"
    "HOST, PORT, DATABASE_URL (default SQLite in VAR_DIR), REDIS_URL (default: an\n"
    "embedded redis-server started in VAR_DIR), RUN_WORKERS, RUN_STOP_GRACE,\n"
    "SECRET_KEY, MEDIA_ROOT, IMPORT_ROOT, LOG_LEVEL, LOG_JSON; its web process and\n"
    "workers read the settings of `serve` and `worker`",
    "serve": "HOST, PORT, DATABASE_URL, REDIS_URL (required in production), REELTRACK_ENV,\n"
    "SECRET_KEY, ACCESS_TOKEN_TTL, CORS_ORIGINS, TRUSTED_PROXY_HOPS, MEDIA_ROOT,\n"
    "IMPORT_ROOT, MAX_UPLOAD_BYTES, MAX_REQUEST_BYTES, MAX_VIDEOS_PER_JOB,\n"
    "BODY_READ_TIMEOUT, BODY_MIN_RATE, UPLOADS_PER_ADDRESS, HIGH_PRIORITY_MAX_ACTIVE,\n"
    "RATE_LIMIT_PER_MINUTE, ALLOW_REGISTRATION, LOGIN_*, PASSWORD_HASH_WORKERS,\n"
    "PASSWORD_HASH_QUEUE, REDIS_POOL_SIZE, REDIS_POOL_TIMEOUT, REDIS_PUBSUB_POOL_SIZE,\n"
    "SOCKETIO_MANAGER, WEBSOCKET_PING_INTERVAL, WEBSOCKET_TIMEOUT, WS_* (Socket.IO),\n"
    "RESUME_*, SERVE_ROLE (or --role), REDIS_FAILOVER_WAIT, FANOUT_REDIS_CLUSTER,\n"
    "EVENT_LOOP, ACCESS_LOG, LOG_LEVEL, LOG_JSON",
    "worker": "DATABASE_URL, REDIS_URL, SOCKETIO_MANAGER, MEDIA_ROOT, IMPORT_ROOT,\n"
    "IMPORT_ALLOW_PRIVATE_HOSTS, MAX_UPLOAD_BYTES, FETCH_TIMEOUT, VIDEO_TIME_BUDGET,\n"
    "JOB_TIME_BUDGET, SLICE_SECONDS, SLICE_VIDEOS, USER_MAX_ACTIVE_JOBS, THROTTLE_*,\n"
    "RETRY_BUFFER_SIZE, STALE_JOB_SECONDS, PROGRESS_HISTORY_RETENTION_DAYS,\n"
    "REDIS_FAILOVER_WAIT, FANOUT_REDIS_CLUSTER, LOG_LEVEL, LOG_JSON",
    "migrate": "DATABASE_URL (default SQLite in VAR_DIR); a PostgreSQL URL applies the\n"
    "PostgreSQL migrations, a sqlite:// URL the SQLite ones",
    "create-user": "DATABASE_URL",
    "demo": "DATABASE_URL, REDIS_URL (a worker must run to process the job), IMPORT_ROOT\n"
    "(the samples go to IMPORT_ROOT/demo), SOCKETIO_MANAGER",
    "purge-history": "DATABASE_URL, PROGRESS_HISTORY_RETENTION_DAYS (used without --older-than)",
    "status": "REDIS_URL (default: the embedded Redis's URL in VAR_DIR/redis/url), VAR_DIR,\n"
    "HOST, PORT (the web process asked for /api/health), DATABASE_URL",
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; an option's default shown when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


def _version() -> str:
    try:
        return version("reeltrack")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def _epilog(command: str) -> str:
    return f"environment:\n{COMMAND_SETTINGS[command]}\n\n{SETTINGS_NOTE}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reeltrack",
        description=DESCRIPTION,
        epilog=SETTINGS_NOTE + "\n\n`reeltrack COMMAND --help` lists the settings of a command.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, tuple[str, Callable[[Config, argparse.Namespace], int]]] = {
        "run": (
            "one web process and RUN_WORKERS workers, restarted when they crash"
            " (+ embedded Redis), demo data on first start",
            _run,
        ),
        "serve": ("one web process on HOST:PORT", _serve),
        "worker": (
            "an RQ worker on queues maintenance, videos-high, videos, videos-low (with cron)",
            _worker,
        ),
        "migrate": ("apply database migrations for DATABASE_URL", _migrate),
        "create-user": ("create a user", _create_user),
        "demo": ("synthesise sample videos and import them for a user", _demo),
        "purge-history": ("delete progress events older than the retention", _purge),
        "status": (
            "show Redis, the web process, live workers, queue depths and versions"
            " (exit 0 when web, Redis and a worker are up, else 1)",
            _status,
        ),
    }
    for name, (help_text, handler) in commands.items():
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            epilog=_epilog(name),
            formatter_class=_HelpFormatter,
        )
        p.set_defaults(handler=handler)
        if name == "create-user":
            p.add_argument("username", help="the new user's name (case-insensitive)")
            p.add_argument(
                "--password",
                help="the password (default: prompt, or read one line from stdin; "
                "prefer that: arguments are visible to other local users)",
            )
        elif name == "serve":
            p.add_argument(
                "--role",
                choices=("all", "sockets", "api"),
                default=None,
                help="sockets: only Socket.IO (+ /api/health, /metrics); api: only REST and "
                "the web app (+ /metrics); all: both (default: SERVE_ROLE, all)",
            )
        elif name == "worker":
            p.add_argument("--burst", action="store_true", help="exit when the queues are empty")
            p.add_argument(
                "--queues",
                type=_queue_list,
                # tasks.queue.WORKER_QUEUES (a test keeps them equal; not imported here,
                # so `reeltrack --help` does not load RQ)
                default="maintenance,videos-high,videos,videos-low",
                help="comma-separated, in priority order; "
                "'maintenance' alone makes a worker that upkeep never waits for",
            )
            p.add_argument("--name", default=None, help="the worker's RQ name (default: random)")
            p.add_argument(
                "--replaces",
                action="append",
                default=[],
                metavar="NAME",
                help="a dead worker (its work-horse gone too) whose jobs are requeued at "
                "start; used by `reeltrack run` after a crash",
            )
        elif name == "demo":
            p.add_argument(
                "--username",
                default="demo",
                help="the user the demo list belongs to (created when missing)",
            )
            p.add_argument("--count", type=int, default=12, help="how many videos to synthesise")
            p.add_argument(
                "--duration",
                type=float,
                default=None,
                metavar="SECONDS",
                help="pace the demo job to last about this long, so its progress can be "
                "watched (default: about a minute; 0: full speed)",
            )
        elif name == "purge-history":
            p.add_argument(
                "--older-than",
                type=int,
                default=None,
                metavar="DAYS",
                help="delete events older than this many days "
                "(default: PROGRESS_HISTORY_RETENTION_DAYS)",
            )
            p.add_argument(
                "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command in LOGGING_COMMANDS:
        from quart_app.core.logs import configure_logging

        configure_logging(config)  # LOG_LEVEL / LOG_JSON, job/user context, redaction
    if args.command in PROCESS_METRICS_COMMANDS:
        # before anything imports prometheus_client: this process and its forks write
        # the multiprocess files that /metrics aggregates (quart_app.core.metrics_multiprocess)
        from quart_app.core.metrics_multiprocess import setup_process_metrics

        setup_process_metrics(config)
    result: int = args.handler(config, args)
    return result


if __name__ == "__main__":
    sys.exit(main())
