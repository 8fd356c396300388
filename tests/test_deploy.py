"""deploy/ stays true to the code: there is no Docker engine in CI, so what can drift
between the compose file, the Dockerfile, nginx.conf and the code is checked here."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from quart_app import cli
from quart_app.core.config import ENV_VARS
from tests.topology.nginx import Nginx, nginx_binary

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
IMAGE = "reeltrack:local"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def _reeltrack_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _compose()["services"].items() if s.get("image") == IMAGE}


def test_compose_runs_the_reeltrack_image_for_web_workers_and_migrate() -> None:
    commands = {tuple(s["command"][:2]) for s in _reeltrack_services().values()}
    assert {("reeltrack", "serve"), ("reeltrack", "worker"), ("reeltrack", "migrate")} <= commands


@pytest.mark.parametrize("name", sorted(_reeltrack_services()))
def test_compose_commands_are_valid_reeltrack_invocations(name: str) -> None:
    command = _reeltrack_services()[name]["command"]
    assert command[0] == "reeltrack"
    cli.build_parser().parse_args(command[1:])  # SystemExit (usage error) fails the test


def test_compose_sets_only_settings_the_config_reads() -> None:
    for name, service in _reeltrack_services().items():
        unknown = set(service["environment"]) - set(ENV_VARS)
        assert not unknown, f"{name} sets {unknown}, which quart_app/core/config.py does not read"


def _role(command: list[str]) -> str:
    return command[command.index("--role") + 1] if "--role" in command else "all"


def test_nginx_upstreams_list_exactly_the_compose_web_services_of_their_role() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    for upstream, role in (("reeltrack_sockets", "sockets"), ("reeltrack_api", "api")):
        block = conf.split(f"upstream {upstream} {{", 1)[1].split("}", 1)[0]
        listed = set(re.findall(r"^\s*server\s+([\w-]+):8000\b", block, re.M))
        serving = {
            n
            for n, s in _reeltrack_services().items()
            if s["command"][1:2] == ["serve"] and _role(s["command"]) in (role, "all")
        }
        assert listed == serving, upstream
    assert "location /api/ws/progress/ {\n            proxy_pass http://reeltrack_sockets;" in conf
    assert "location / {\n            proxy_pass http://reeltrack_api;" in conf
    nginx = _compose()["services"]["nginx"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]


def test_image_holds_every_package_and_the_files_found_next_to_them() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (?:--from=\S+ )?(\S+) \./", dockerfile, re.M))
    packages = {"quart_app", "socket_layer", "tasks", "models"}
    assert packages | {"migrations"} <= copied
    assert "/src/web/dist" in copied  # the SPA, served from web/dist next to quart_app
    # the code finds web/dist and migrations/ next to its packages: only an editable
    # install runs the packages from /app, where those are
    assert re.search(r"^RUN pip install -e \.$", dockerfile, re.M)


# --- TLS, stickiness and Prometheus (nginx and promtool are Debian's: make system-deps) --

NGINX_CONF = DEPLOY / "nginx.conf"
PROMETHEUS = DEPLOY / "prometheus"


def _web_services() -> set[str]:
    return {n for n, s in _reeltrack_services().items() if s["command"][1:2] == ["serve"]}


def test_compose_serves_tls_and_runs_prometheus_on_the_rules() -> None:
    services = _compose()["services"]
    nginx = services["nginx"]
    assert {"80:80", "443:443"} <= set(nginx["ports"])
    assert "./tls:/etc/nginx/tls:ro" in nginx["volumes"]
    conf = NGINX_CONF.read_text()
    for path in re.findall(r"^\s*ssl_certificate(?:_key)?\s+(\S+);", conf, re.M):
        assert path.startswith("/etc/nginx/tls/"), path  # inside the mounted ./tls
    prometheus = services["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert not any(p.split(":")[0] != "127.0.0.1" for p in prometheus.get("ports", []))


def test_prometheus_scrapes_every_web_process_and_loads_the_alerts() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {
        name: {t for group in job["static_configs"] for t in group["targets"]}
        for name, job in jobs.items()
    }
    # the installation's totals from one web process; every one for its process_* and up
    assert len(targets["reeltrack"]) == 1 and targets["reeltrack"] <= targets["reeltrack-processes"]
    assert targets["reeltrack-processes"] == {f"{n}:8000" for n in _web_services()}
    assert all(job["metrics_path"] == "/metrics" for job in jobs.values())


def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make system-deps)")
    run = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout and "10 rules found" in run.stdout


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_nginx_accepts_the_deployed_config_with_a_certificate(tmp_path: Path) -> None:
    """``nginx -t`` on deploy/nginx.conf as deployed (TLS server and redirect included);
    only what needs this machine changes: the certificate (a self-signed one), the pid,
    log and temp paths, and the upstream host names (compose's, unresolvable here)."""
    nginx = nginx_binary()
    if nginx is None or shutil.which("openssl") is None:
        pytest.skip("nginx or openssl not installed (make system-deps)")
    cert, key = _self_signed(tmp_path)
    conf = NGINX_CONF.read_text()
    conf = conf.replace("/etc/nginx/tls/fullchain.pem", str(cert))
    conf = conf.replace("/etc/nginx/tls/privkey.pem", str(key))
    conf = re.sub(r"^pid .*$", f"pid {tmp_path / 'nginx.pid'};", conf, flags=re.M)
    conf = re.sub(r"^error_log .*$", f"error_log {tmp_path / 'error.log'};", conf, flags=re.M)
    conf = re.sub(r"(\w+_temp_path) \S+;", rf"\1 {tmp_path}/\1;", conf)
    conf = re.sub(r"server [\w-]+:8000", "server 127.0.0.1:8000", conf)
    assert "listen 443 ssl;" in conf and "return 301 https://$host$request_uri;" in conf
    (tmp_path / "nginx.conf").write_text(conf)
    run = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    # the websocket upgrade survives on the TLS server's Socket.IO location
    tls_server = conf.split("listen 443 ssl;", 1)[1]
    socketio = tls_server.split("location /api/ws/progress/ {", 1)[1].split("}", 1)[0]
    assert "proxy_set_header Upgrade $http_upgrade;" in socketio
    assert "proxy_set_header Connection $connection_upgrade;" in socketio


class _Named(BaseHTTPRequestHandler):
    """Answers every GET with the port it listens on: which upstream nginx chose."""

    def do_GET(self) -> None:
        body = str(self.server.server_address[1]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def named_upstreams() -> Iterator[list[int]]:
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Named) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        yield [s.server_address[1] for s in servers]
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def test_sticky_key_spreads_browsers_behind_one_address_and_keeps_each_on_one_process(
    named_upstreams: list[int],
) -> None:
    """The rule of docs/scaling.md "Sticky sessions", on the deployed nginx.conf: a
    browser's first request (no cookie) gets the rt_lb cookie and the process its next
    requests reach; browsers from ONE address spread over both processes; a client that
    returns no cookies stays on one process by its address."""
    if nginx_binary() is None:
        pytest.skip("nginx not installed (make system-deps)")
    nginx = Nginx(named_upstreams).start()
    path = "/api/ws/progress/?EIO=4&transport=polling"
    browser = {"Sec-Fetch-Site": "same-origin"}
    try:
        chosen: set[str] = set()
        for _ in range(12):  # 12 browsers behind one NAT (all from 127.0.0.1)
            with httpx.Client(base_url=nginx.url, timeout=10) as http:
                first = http.get(path, headers=browser)  # the handshake: no cookie yet
                assert first.status_code == 200
                assert re.fullmatch(r"[0-9a-f]{32}", http.cookies["rt_lb"])
                later = {http.get(f"{path}&sid=x", headers=browser).text for _ in range(5)}
                assert later == {first.text}, "a browser's polls left its process"
                assert "rt_lb" not in http.get(path, headers=browser).headers.get("set-cookie", "")
                chosen.add(first.text)
        assert chosen == {str(p) for p in named_upstreams}, "one address pinned every browser"
        # no Sec-Fetch-Site and no cookie: an API client; its address is the key
        with httpx.Client(base_url=nginx.url, timeout=10) as http:
            answers = {http.get(path).text for _ in range(8)}
            assert len(answers) == 1 and "rt_lb" not in http.cookies
    finally:
        nginx.stop()
