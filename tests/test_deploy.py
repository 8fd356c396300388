"""deploy/ stays true to the code: there is no Docker engine in CI, so what can drift
between the compose file, the Dockerfile, nginx.conf and the code is checked here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from quart_app import cli
from quart_app.core.config import ENV_VARS

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
