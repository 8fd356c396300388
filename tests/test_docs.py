"""The README and .env.example stay true to the config module."""

from __future__ import annotations

from pathlib import Path

from quart_app.core.config import ENV_VARS

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented_in_readme_and_env_example() -> None:
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    missing_readme = [name for name in ENV_VARS if f"`{name}`" not in readme]
    missing_example = [name for name in ENV_VARS if f"# {name}=" not in example]
    assert not missing_readme, f"README.md lacks {missing_readme}"
    assert not missing_example, f".env.example lacks {missing_example}"


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make run" in (ROOT / "README.md").read_text()
