"""``reeltrack --help`` and each command's help: plain text, options explained, the
settings that matter named (and real), ``--version``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from quart_app.cli import COMMAND_SETTINGS, build_parser, main
from quart_app.core.config import ENV_VARS
from tasks.retention import days_text

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
COMMANDS = ("run", "serve", "worker", "migrate", "create-user", "demo", "purge-history")


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_is_plain_text_and_lists_every_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help(capsys)
    assert "``" not in text, "no reST markup"
    assert text.splitlines()[2].startswith("reeltrack: import video lists")
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\b", text, re.M), command
    assert "--version" in text and ".env.example" in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert re.fullmatch(r"reeltrack \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_names_its_settings_and_explains_its_options(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help(capsys, command)
    assert "``" not in text
    assert "environment:" in text and ".env.example" in text
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]  # type: ignore[union-attr]
    for action in sub._actions:
        assert action.help, (command, action.dest)
    if command in ("run", "serve", "worker", "migrate"):
        assert "DATABASE_URL" in text
    if command in ("run", "serve", "worker"):
        assert "REDIS_URL" in text and "LOG_LEVEL" in text


def test_named_settings_exist() -> None:
    known = set(re.findall(r"^#? ?([A-Z][A-Z_0-9]+)=", ENV_EXAMPLE.read_text(), re.M))
    for command, text in COMMAND_SETTINGS.items():
        named = set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b|\b(?:HOST|PORT)\b", text))
        assert named, command
        assert named <= known, (command, named - known)


def test_every_setting_is_named_by_a_command() -> None:
    """Each setting in the declaration is named (or covered by a ``PREFIX_*``) in the
    help of at least one command, so a new setting cannot be left out of the help."""
    text = " ".join(COMMAND_SETTINGS.values())
    prefixes = re.findall(r"\b([A-Z][A-Z0-9_]*_)\*", text)
    named = set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", text))
    missing = [
        env for env in ENV_VARS if env not in named and not any(env.startswith(p) for p in prefixes)
    ]
    assert missing == []
    for prefix in prefixes:  # a wildcard stands for at least one real setting
        assert any(env.startswith(prefix) for env in ENV_VARS), prefix


def test_defaults_are_shown(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(_help(capsys, "demo").split())
    assert "(default: demo)" in text and "(default: 12)" in text
    assert "(default: None)" not in text
    text = " ".join(_help(capsys, "worker").split())
    assert "(default: maintenance," in text  # --queues


def test_days_pluralise() -> None:
    assert days_text(1) == "1 day"
    assert days_text(2) == "2 days"
