"""deploy/nginx.conf rendered for loopback, and nginx run as a non-daemon child.

The lines of deploy/nginx.conf marked ``# topology: <what>`` are replaced (pid, logs,
temp paths into a private directory; the listen address; the upstream servers; the TLS
lines dropped: loopback speaks plain HTTP), every
other line is used as deployed.  Debian's nginx (``make system-deps`` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.services import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_CONF = ROOT / "deploy" / "nginx.conf"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )


def render(
    upstreams: list[int],
    port: int,
    workdir: Path,
    workers: int = 1,
    api_upstreams: list[int] | None = None,
) -> str:
    """deploy/nginx.conf for socket servers ``upstreams`` and API servers
    ``api_upstreams`` (default: the same, i.e. ``--role all`` processes) on
    127.0.0.1:<port>, and nginx on ``port``."""
    out: list[str] = []
    lists = {"sockets_servers": upstreams, "api_servers": api_upstreams or upstreams}
    done: set[str] = set()
    for line in DEPLOY_CONF.read_text().splitlines():
        m = re.search(r"#\s*topology:\s*(\w+)", line)
        if m is None:
            if line.startswith("worker_processes"):
                line = f"worker_processes {workers};"
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        what = m.group(1)
        if what == "tls":
            continue  # loopback speaks plain HTTP: no certificate, no redirect server
        if what == "pid":
            out.append(f"pid {workdir / 'nginx.pid'};")
            if os.geteuid() == 0:  # workers stay root: the temp dirs are ours
                out.append("user root;")
        elif what == "error_log":
            out.append(f"error_log {workdir / 'error.log'} warn;")
        elif what == "access_log":
            out.append(f"{indent}access_log {workdir / 'access.log'};")
        elif what == "temp":
            key = line.split()[0]
            out.append(f"{indent}{key} {workdir / key.replace('_path', '')};")
        elif what == "listen":
            out.append(f"{indent}listen 127.0.0.1:{port};")
        elif what in lists and what not in done:
            done.add(what)
            for p in lists[what]:
                out.append(f"{indent}server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;")
        elif what in lists:
            continue
        else:
            raise ValueError(f"unknown topology marker {what!r}")
    return "\n".join(out) + "\n"


class Nginx:
    """nginx in the foreground (``daemon off``) with a rendered config on a free port."""

    def __init__(
        self, upstreams: list[int], workers: int = 1, api_upstreams: list[int] | None = None
    ) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (make system-deps installs it)")
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="rt-nginx-"))
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(render(upstreams, self.port, self.dir, workers, api_upstreams))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        subprocess.run(
            [self.binary, "-t", "-q", "-p", str(self.dir), "-c", str(self.conf)],
            check=True,
            capture_output=True,
        )
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.dir), "-c", str(self.conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def error_log(self) -> str:
        try:
            return (self.dir / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: fast shutdown of master and workers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
