"""The ``reeltrack`` command: run, serve, worker, migrate, create-user, demo, purge-history.

Each subcommand builds its Config from the environment and imports what it needs
lazily, so ``reeltrack migrate`` does not load Socket.IO and the worker does not load
Quart.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

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


#: long-running processes whose metrics GET /metrics aggregates
PROCESS_METRICS_COMMANDS = frozenset({"serve", "worker"})
#: commands whose log records go through quart_app.core.logs (the others print to a terminal)
LOGGING_COMMANDS = frozenset({"serve", "worker", "run"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reeltrack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, tuple[str, Callable[[Config, argparse.Namespace], int]]] = {
        "run": ("web + worker (+ embedded Redis), demo data on first start", _run),
        "serve": ("one web process on HOST:PORT", _serve),
        "worker": (
            "an RQ worker on queues 'maintenance' and 'videos' (with the cron scheduler)",
            _worker,
        ),
        "migrate": ("apply database migrations for DATABASE_URL", _migrate),
        "create-user": ("create a user", _create_user),
        "demo": ("synthesise sample videos and import them for a user", _demo),
        "purge-history": ("delete progress events older than the retention", _purge),
    }
    for name, (help_text, handler) in commands.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(handler=handler)
        if name == "create-user":
            p.add_argument("username")
            p.add_argument(
                "--password",
                help="the password (default: prompt, or read one line from stdin; "
                "prefer that: arguments are visible to other local users)",
            )
        elif name == "worker":
            p.add_argument("--burst", action="store_true", help="exit when the queues are empty")
            p.add_argument(
                "--queues",
                type=_queue_list,
                default="maintenance,videos",
                help="comma-separated, in priority order (default: maintenance,videos); "
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
            p.add_argument("--username", default="demo")
            p.add_argument("--count", type=int, default=12)
            p.add_argument(
                "--duration",
                type=float,
                default=None,
                metavar="SECONDS",
                help="pace the demo job to last about this long, so its progress can be "
                "watched (default a minute; 0: full speed)",
            )
        elif name == "purge-history":
            p.add_argument("--older-than", type=int, default=None, metavar="DAYS")
            p.add_argument("--dry-run", action="store_true")
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
