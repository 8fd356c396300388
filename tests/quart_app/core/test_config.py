"""Settings: read once at start, from the environment and a .env file, refused when wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from quart_app.core.config import ENV_FILE_VAR, ENV_VARS, Config, ConfigError

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def base(tmp_path: Path) -> dict[str, str]:
    """A development environment in a private VAR_DIR, reading no .env file."""
    return {"VAR_DIR": str(tmp_path / "var"), ENV_FILE_VAR: ""}


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("WS_MAX_CONNECTIONS_PER_USER", "abc", "valid integer"),
        ("WS_MAX_CONNECTIONS_PER_USER", "0", "greater than or equal to 1"),
        ("PORT", "65536", "less than or equal to 65535"),
        ("WEBSOCKET_PING_INTERVAL", "soon", "valid number"),
        ("WEBSOCKET_TIMEOUT", "0", "greater than 0"),
        ("LOG_JSON", "maybe", "true or false"),
        ("SOCKETIO_MANAGER", "redis", "'user-channels' or 'stock'"),
        ("LOG_LEVEL", "LOUD", "'DEBUG'"),
        ("RATE_LIMIT_PER_MINUTE", "-1", "greater than or equal to 0"),
    ],
)
def test_a_malformed_or_out_of_bounds_value_is_refused_naming_the_variable(
    base: dict[str, str], name: str, value: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env({**base, name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}: "), message
    assert says in message and repr(value) in message


def test_a_short_secret_is_refused_without_echoing_it(base: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="^SECRET_KEY: .*16 characters") as caught:
        Config.from_env({**base, "SECRET_KEY": "hunter2-hunter2"})
    assert "hunter2" not in str(caught.value)


def test_values_are_parsed_and_normalised(base: dict[str, str]) -> None:
    config = Config.from_env(
        {
            **base,
            "REELTRACK_ENV": " Production ",
            "SECRET_KEY": "k" * 20,
            "PORT": "8123",
            "CORS_ORIGINS": "https://a.example/, ,https://b.example",
            "WS_PERMESSAGE_DEFLATE": "YES",
            "ALLOW_REGISTRATION": "off",
            "LOG_LEVEL": "debug",
            "SOCKETIO_MANAGER": "Stock",
            "THROTTLE_INTERVAL": "0.5",
        }
    )
    assert config.is_production and config.port == 8123
    assert config.cors_origins == ("https://a.example", "https://b.example")
    assert config.ws_permessage_deflate is True and config.allow_registration is False
    assert (config.log_level, config.socketio_manager) == ("DEBUG", "stock")
    assert config.throttle_interval == 0.5


def test_defaults_derived_from_var_dir(base: dict[str, str], tmp_path: Path) -> None:
    config = Config.from_env(base)
    var = (tmp_path / "var").resolve()
    assert config.var_dir == var
    assert config.database_url == f"sqlite://{var / 'reeltrack.sqlite3'}"
    assert (config.media_root, config.import_root) == (var / "media", var / "import")
    assert config.redis_url is None and config.cors_origins == ()
    assert (var / "secret_key").read_text() == config.secret_key
    given = Config.from_env({**base, "MEDIA_ROOT": str(tmp_path / "m"), "IMPORT_ROOT": ""})
    assert (given.media_root, given.import_root) == ((tmp_path / "m").resolve(), var / "import")


def test_dot_env_file_is_read_and_the_environment_wins(
    base: dict[str, str], tmp_path: Path
) -> None:
    env_file = tmp_path / "settings.env"
    env_file.write_text("# a comment\nPORT=9001\nLOG_JSON=true\nRESUME_MAX_JOBS=7\n")
    config = Config.from_env({**base, ENV_FILE_VAR: str(env_file), "RESUME_MAX_JOBS": "9"})
    assert (config.port, config.log_json, config.resume_max_jobs) == (9001, True, 9)


def test_dot_env_file_in_the_working_directory_is_read_unless_disabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(f"VAR_DIR={tmp_path / 'var'}\nLOGIN_WINDOW=42\n")
    monkeypatch.chdir(tmp_path)
    assert Config.from_env({}).login_window == 42
    assert Config.from_env({ENV_FILE_VAR: "", "VAR_DIR": "v"}).login_window == 300


def test_dot_env_file_with_a_name_that_is_not_a_setting_is_refused(
    base: dict[str, str], tmp_path: Path
) -> None:
    env_file = tmp_path / "settings.env"
    env_file.write_text("PORT=9001\nWS_MAX_CONNECTIONS=3\n")
    with pytest.raises(ConfigError, match=r"^WS_MAX_CONNECTIONS \(in .*settings.env\): not a"):
        Config.from_env({**base, ENV_FILE_VAR: str(env_file)})
    with pytest.raises(ConfigError, match=f"^{ENV_FILE_VAR}: no such file"):
        Config.from_env({**base, ENV_FILE_VAR: str(tmp_path / "missing.env")})
    # a malformed value in the file names its variable too
    env_file.write_text("PORT=eighty\n")
    with pytest.raises(ConfigError, match="^PORT: "):
        Config.from_env({**base, ENV_FILE_VAR: str(env_file)})


def test_a_reeltrack_variable_that_is_not_a_setting_is_refused(base: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="^REELTRACK_ENVIRONMENT: not a reeltrack setting"):
        Config.from_env({**base, "REELTRACK_ENVIRONMENT": "production"})
    # the rest of a process environment is none of reeltrack's business
    Config.from_env({**base, "PATH": "/bin", "HOME": "/root", "LANG": "C", "TERM": "xterm"})


def test_config_is_immutable_hashable_and_overrides_are_validated(tmp_path: Path) -> None:
    config = Config(env="test", var_dir=tmp_path, ws_ping_interval=1.0)
    with pytest.raises(ValueError, match="frozen"):
        config.port = 1  # type: ignore[misc]
    assert hash(config) == hash(Config(env="test", var_dir=tmp_path, ws_ping_interval=1.0))
    changed = config.with_overrides(port=0, login_max_attempts=2)
    assert (changed.port, changed.login_max_attempts, changed.env) == (0, 2, "test")
    assert (changed.ws_ping_interval, changed.var_dir) == (1.0, tmp_path)
    assert config.port == 8000  # the original is unchanged
    with pytest.raises(ConfigError, match="^WS_MAX_CONNECTIONS_PER_USER: "):
        config.with_overrides(ws_max_connections_per_user=0)
    with pytest.raises(ConfigError, match="^no_such_field: not a reeltrack setting"):
        config.with_overrides(no_such_field=1)


def test_keyword_construction_never_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "1234")
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    assert (Config().port, Config().log_level) == (8000, "INFO")


def test_the_cli_refuses_to_start_with_a_malformed_setting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(VAR_DIR=str(tmp_path), WS_MAX_CONNECTIONS_PER_USER="abc")
    done = subprocess.run(
        [sys.executable, "-m", "quart_app.cli", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "configuration error: WS_MAX_CONNECTIONS_PER_USER: " in done.stderr
