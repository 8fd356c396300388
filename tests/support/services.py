"""Real Redis and PostgreSQL for tests.

Redis: every test session starts its own ``redis-server`` on a free port (so tests may
restart or flush it).  PostgreSQL: the server at ``TEST_POSTGRES_ADMIN_URL`` (default
``postgres://postgres@127.0.0.1:5432/postgres``) when it answers, else a private cluster
started with Debian's ``initdb``; tests create and drop their own databases in it and
never touch others.  :class:`PostgresServer` also serves fault tests that must stop it.
:func:`start_app` serves a test's own aiohttp app (a media origin) on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import redis
from aiohttp import web

from quart_app.devserver import redis_server_binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_app(app: web.Application, **runner_options: Any) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on a free port of 127.0.0.1; returns its runner (``await
    runner.cleanup()`` stops it) and the port.  Nothing is left running when it raises."""
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, int(runner.addresses[0][1])
    except BaseException:
        await runner.cleanup()
        raise


def wait_for_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts TCP connections on ``port``; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class RedisServer:
    """A private redis-server on a fixed free port; restartable on the same port.
    ``args``: more server options (e.g. ``("--replicaof", "127.0.0.1", "6390")``)."""

    def __init__(self, port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="rt-redis-")
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--loglevel",
                "warning",
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class SentinelRig:
    """A Sentinel-managed Redis on free ports: a master, ``replicas`` replicas and
    ``sentinels`` Sentinels (quorum: a majority), failing over fast (the master is
    judged down after ``down_after_ms``).  :attr:`url` is the ``redis+sentinel://``
    URL reeltrack takes; :meth:`kill_master` SIGKILLs the current master and
    :meth:`wait_promoted` waits for the Sentinels to name another."""

    MASTER = "reeltrack"
    #: a Sentinel that took part in a failover that did not finish (a split vote, more
    #: likely on a loaded machine) tries again after twice this: 6 s, not Redis's 6 min
    FAILOVER_TIMEOUT_MS = 3000

    def __init__(self, *, replicas: int = 1, sentinels: int = 3, down_after_ms: int = 1000) -> None:
        self.master = RedisServer()
        self.replicas = [
            RedisServer(args=("--replicaof", "127.0.0.1", str(self.master.port)))
            for _ in range(replicas)
        ]
        self.servers = [self.master, *self.replicas]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.down_after_ms = down_after_ms
        self.dir = tempfile.mkdtemp(prefix="rt-sentinel-")
        self.sentinel_procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.MASTER}/0"

    def _master_of(self, sentinel_port: int) -> int | None:
        addr = ask_redis(sentinel_port, "SENTINEL", "get-master-addr-by-name", self.MASTER)
        return int(addr[1]) if addr else None

    def start(self, timeout: float = 30.0) -> SentinelRig:
        """Start everything; returns once every Sentinel knows the master, every replica
        and the other Sentinels, and every replica is in sync.  Raises TimeoutError."""
        for server in self.servers:
            server.start()
        quorum = len(self.sentinel_ports) // 2 + 1
        for port in self.sentinel_ports:
            conf = os.path.join(self.dir, f"sentinel-{port}.conf")
            with open(conf, "w", encoding="utf-8") as f:
                f.write(
                    f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                    f"sentinel monitor {self.MASTER} 127.0.0.1 {self.master.port} {quorum}\n"
                    f"sentinel down-after-milliseconds {self.MASTER} {self.down_after_ms}\n"
                    f"sentinel failover-timeout {self.MASTER} {self.FAILOVER_TIMEOUT_MS}\n"
                    f"sentinel parallel-syncs {self.MASTER} 1\n"
                )
            self.sentinel_procs.append(
                subprocess.Popen(
                    [redis_server_binary(), conf, "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.sentinel_ports:
            wait_for_port(port)
        deadline = time.monotonic() + timeout
        others = len(self.sentinel_ports) - 1
        while time.monotonic() < deadline:
            info = ask_redis(self.master.port, "INFO", "replication") or {}
            synced = sum(1 for k in info if k.startswith("slave")) == len(self.replicas) and all(
                v.get("state") == "online"
                for k, v in info.items()
                if k.startswith("slave") and isinstance(v, dict)
            )
            known = all(
                len(ask_redis(p, "SENTINEL", "replicas", self.MASTER) or []) >= len(self.replicas)
                and len(ask_redis(p, "SENTINEL", "sentinels", self.MASTER) or []) >= others
                for p in self.sentinel_ports
            )
            if synced and known:
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError("the Sentinel rig did not settle")

    def master_port(self) -> int | None:
        """The master's port as the first Sentinel that answers names it."""
        for port in self.sentinel_ports:
            master = self._master_of(port)
            if master is not None:
                return master
        return None

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master; returns it (not restarted)."""
        port = self.master_port()
        victim = next(s for s in self.servers if s.port == port)
        victim.stop(kill=True)
        return victim

    def wait_promoted(self, old_port: int, timeout: float = 30.0) -> int:
        """Block until every Sentinel names a master other than ``old_port`` that answers
        as master; returns its port.  Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = {self._master_of(p) for p in self.sentinel_ports}
            if len(ports) == 1 and (new := ports.pop()) not in (None, old_port):
                role = ask_redis(new, "ROLE")
                if role and role[0] in (b"master", "master"):
                    return new
            time.sleep(0.05)
        raise TimeoutError(f"no replica promoted within {timeout}s")

    def stop(self) -> None:
        for proc in self.sentinel_procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.sentinel_procs.clear()
        for server in self.servers:
            server.stop(kill=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def _pg_bin(name: str) -> str:
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if hits:
        return hits[-1]
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found


def ask_redis(port: int, *args: Any) -> Any:
    """One command to the Redis server (or Sentinel, or cluster node) on loopback
    ``port``, 2 s at most; None when it does not answer."""
    client = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)
    try:
        return client.execute_command(*args)
    except redis.RedisError:
        return None
    finally:
        client.close()


class PostgresServer:
    """A private PostgreSQL cluster (initdb) on a free port; stoppable and restartable."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="rt-pg-")
        self.data = os.path.join(self.dir, "data")
        self._initialised = False
        self.user = "postgres"

    @property
    def admin_url(self) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            subprocess.run(["chown", "-R", "postgres:postgres", self.dir], check=True)
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> PostgresServer:
        if not self._initialised:
            self._run(
                _pg_bin("initdb"), "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8"
            )
            self._initialised = True
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            self.data,
            "-w",
            "-l",
            os.path.join(self.dir, "log"),
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )
        wait_for_port(self.port)
        return self

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(_pg_bin("pg_ctl"), "-D", self.data, "-w", "-m", mode, "stop")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


async def postgres_answers(admin_url: str) -> bool:
    try:
        conn = await asyncio.wait_for(asyncpg.connect(admin_url), 3)
    except Exception:
        return False
    await conn.close()
    return True


@contextlib.asynccontextmanager
async def postgres_admin() -> AsyncIterator[str]:
    """The admin URL of the server at ``TEST_POSTGRES_ADMIN_URL`` (default the local
    one) when it answers, else of a private :class:`PostgresServer` started for the block
    and destroyed after it."""
    url = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if await postgres_answers(url):
        yield url
        return
    private = PostgresServer().start()
    try:
        yield private.admin_url
    finally:
        private.destroy()


async def create_database(admin_url: str, prefix: str = "reeltrack_test") -> str:
    """Create a uniquely named database; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_url.rsplit("/", 1)[0]
    return f"{base}/{name}"


async def drop_database(database_url: str) -> None:
    """Drop a database made by :func:`create_database` (its connections are ended first)."""
    base, name = database_url.rsplit("/", 1)
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await conn.close()
