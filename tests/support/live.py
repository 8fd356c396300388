"""A real web process (``reeltrack serve``: hypercorn + Socket.IO + Quart) for tests.

Usage::

    server = LiveServer(config)          # config.port 0 -> a free port is chosen
    await server.astart()                # returns once the process listens (lifespan done)
    server.url                           # "http://127.0.0.1:<port>"
    server.kill() / await server.astop() # SIGKILL / SIGTERM (graceful)
    server.output()                      # what it printed (access log + errors)

The child gets ONLY the settings of ``config`` (see :func:`config_env`), never the
developer's environment variables for reeltrack.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from quart_app.core.config import ENV_VARS, FIELD_ENV, Config
from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]
#: the SECRET_KEY of every test process (tokens the tests issue are signed with it)
TEST_SECRET = "test-secret-key-0123456789abcdef"

#: Config field -> environment variable read by Config.from_env
CONFIG_ENV: dict[str, str] = dict(FIELD_ENV)


def config_env(config: Config) -> dict[str, str]:
    """The environment that makes ``Config.from_env()`` rebuild ``config``."""
    env: dict[str, str] = {}
    for field, var in CONFIG_ENV.items():
        value = getattr(config, field, None)
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple):
            text = ",".join(value)
        else:
            text = str(value)
        env[var] = text
    return env


def child_environ(config: Config) -> dict[str, str]:
    """os.environ without any reeltrack variable, plus ``config``'s settings."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(config_env(config))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LiveServer:
    """One ``reeltrack serve`` subprocess on loopback."""

    def __init__(self, config: Config, *, name: str = "web") -> None:
        # port 0 (what tests.conftest.live_config sets) means: a free port
        port = config.port or free_port()
        self.config = config.with_overrides(host="127.0.0.1", port=port)
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix=f"rt-{name}-", suffix=".log", delete=False)

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LiveServer:
        """Spawn and block until the port accepts connections (the ASGI lifespan, DB
        open and Redis subscription included); raises RuntimeError with the output when
        the process exits or does not listen in time."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quart_app.cli", "serve"],
            cwd=ROOT,
            env=child_environ(self.config),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.output()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.name} did not listen within {timeout}s:\n{self.output()}")

    async def astart(self, wait_s: float = 30.0) -> LiveServer:
        return await asyncio.to_thread(self.start, wait_s)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    async def astop(self, wait_s: float = 15.0) -> int | None:
        return await asyncio.to_thread(self.stop, wait_s)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (simulates a crashed process)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def output(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def close(self) -> None:
        self.stop()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)


async def sign_up(http: httpx.AsyncClient, username: str, password: str) -> tuple[str, str]:
    """Register ``username`` and log in over REST (``http`` is a client of a live
    server); asserts both succeed and returns (the user's id, the access token)."""
    body = {"username": username, "password": password}
    r = await http.post("/api/auth/register", json=body)
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    r = await http.post("/api/auth/login", json=body)
    assert r.status_code == 200, r.text
    return user_id, r.json()["access_token"]


async def import_videos(
    http: httpx.AsyncClient, headers: dict[str, str], list_name: str, rows: list[dict[str, str]]
) -> str:
    """Create a list named ``list_name`` and bulk-import ``rows`` (``url``/``title``)
    into it over REST as the user of ``headers``; asserts both succeed and returns the
    import job's id."""
    r = await http.post("/api/lists", json={"name": list_name}, headers=headers)
    assert r.status_code == 201, r.text
    r = await http.post(
        f"/api/lists/{r.json()['id']}/videos/bulk", json={"videos": rows}, headers=headers
    )
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])
