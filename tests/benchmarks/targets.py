"""What a benchmark runs against: the stock baseline or reeltrack's own web process.

A target starts its web process(es) on free ports, says which wire format its emitter
must publish (``stock``: python-socketio's single channel; ``reeltrack``: what
ProgressEmitter publishes) and makes the client specs (users, tokens, job ids).
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from tests.benchmarks.common import (
    BENCH_SECRET,
    ClientSpec,
    ServerProc,
    free_port,
    stock_server,
)


def bench_users(n: int, *, prefix: int = 0) -> list[tuple[str, str]]:
    """``n`` (user_id, job_id) pairs, deterministic so runs are comparable."""
    out = []
    for i in range(n):
        user = uuid.UUID(int=(prefix << 64) | (i + 1))
        job = uuid.UUID(int=(1 << 126) | (prefix << 64) | (i + 1))
        out.append((str(user), str(job)))
    return out


class Target:
    name = "?"
    wire = "reeltrack"

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.redis_pid: int | None = None
        self.servers: list[ServerProc] = []
        self.stopped: list[ServerProc] = []

    def start(self, count: int = 1, ping_interval: float = 25.0) -> list[ServerProc]:
        raise NotImplementedError

    def specs(self, n: int) -> list[ClientSpec]:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the servers (gracefully: they log what they received); the stopped
        ones stay readable in ``stopped``."""
        for s in self.servers:
            s.stop()
        self.stopped = self.servers
        self.servers = []


class StockTarget(Target):
    """python-socketio 5.18 AsyncServer + stock AsyncRedisManager under hypercorn 0.18.

    With ``fast=True`` the same tiny app runs reeltrack's user-channel manager, no
    permessage-deflate and the GC tuning (``tiny-fast``): the fast path without the DB.
    """

    name = "stock"
    wire = "stock"

    def __init__(self, redis_url: str, fast: bool = False) -> None:
        super().__init__(redis_url)
        self.extra: list[str] = []
        if fast:
            self.name, self.wire = "tiny-fast", "reeltrack"
            self.extra = ["--manager", "user-channels", "--tuned"]

    def start(self, count: int = 1, ping_interval: float = 25.0) -> list[ServerProc]:
        logs = Path(tempfile.mkdtemp(prefix="rt-bench-stock-"))
        for _ in range(count):
            port = free_port()
            self.servers.append(
                stock_server(
                    self.redis_url, port, ping_interval, self.extra, logs / f"{port}.log"
                ).start()
            )
        return self.servers

    def specs(self, n: int) -> list[ClientSpec]:
        return [ClientSpec(user=u, token=u, jobs=[j]) for u, j in bench_users(n)]


class ReeltrackTarget(Target):
    """``reeltrack serve`` (quart_app.serve) with the given settings."""

    name = "reeltrack"
    wire = "reeltrack"

    def __init__(
        self,
        redis_url: str,
        database_url: str,
        var_dir: Path,
        env: dict[str, str] | None = None,
        name: str = "reeltrack",
    ) -> None:
        super().__init__(redis_url)
        self.database_url = database_url
        self.var_dir = var_dir
        self.env = env or {}
        self.name = name
        #: the server's command after ``python`` (the heap probe wraps it)
        self.entry: tuple[str, ...] = ("-m", "quart_app.cli", "serve")
        if self.env.get("SOCKETIO_MANAGER") == "stock":
            self.wire = "stock"

    def server_env(self, port: int, ping_interval: float) -> dict[str, str]:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        return {
            "REELTRACK_ENV": "production",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "VAR_DIR": str(self.var_dir),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": BENCH_SECRET,
            "WEBSOCKET_PING_INTERVAL": str(ping_interval),
            "WEBSOCKET_TIMEOUT": str(max(20.0, ping_interval)),
            "LOG_LEVEL": "INFO",
            "RATE_LIMIT_PER_MINUTE": "0",
            **self.env,
        }

    def start(self, count: int = 1, ping_interval: float = 25.0) -> list[ServerProc]:
        for i in range(count):
            port = free_port()
            self.servers.append(
                ServerProc(
                    [sys.executable, *self.entry],
                    port,
                    env=self.server_env(port, ping_interval),
                    name=f"{self.name}-{i}",
                    log_path=self.var_dir / f"web-{port}.log",
                ).start(timeout=60)
            )
        return self.servers

    def specs(self, n: int) -> list[ClientSpec]:
        from quart_app.core.tokens import issue_token

        return [
            ClientSpec(user=u, token=issue_token(BENCH_SECRET, u), jobs=[j])
            for u, j in bench_users(n)
        ]


def describe(target: Target) -> dict[str, Any]:
    return {"target": target.name, "wire": target.wire}
