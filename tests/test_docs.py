"""The README and .env.example stay true to the settings declared in the config module."""

from __future__ import annotations

import re
from pathlib import Path

from quart_app.core import settings_docs
from quart_app.core.config import ENV_VARS, FIELD_ENV, Config

ROOT = Path(__file__).resolve().parent.parent


def _readme_table() -> str:
    """The table of the README's Configuration section, as text."""
    section = (ROOT / "README.md").read_text().split("## Configuration\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return "\n".join(rows) + "\n"


def test_readme_table_is_exactly_the_declared_settings() -> None:
    # same names, defaults and meanings, in declaration order, nothing extra
    assert _readme_table() == settings_docs.markdown_table(), (
        "README.md's Configuration table differs from quart_app/core/config.py: "
        "paste `python -m quart_app.core.settings_docs --markdown`"
    )


def test_env_example_is_exactly_the_declared_settings() -> None:
    assert (ROOT / ".env.example").read_text() == settings_docs.env_example(), (
        ".env.example differs from quart_app/core/config.py: "
        "write `python -m quart_app.core.settings_docs --env-example > .env.example`"
    )


def test_env_example_names_each_setting_once_and_nothing_else() -> None:
    names = re.findall(r"^# ([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    assert names == list(ENV_VARS)


def _derived(shown: str) -> bool:
    """A default computed at start: in parentheses or relative to VAR_DIR."""
    return shown.startswith("(") or "VAR_DIR" in shown


def test_each_documented_default_is_the_default_the_code_uses(tmp_path: Path) -> None:
    base = {"VAR_DIR": str(tmp_path), "SECRET_KEY": "x" * 16}
    defaults = Config.from_env(base).model_dump()
    for field, name in FIELD_ENV.items():
        shown, doc = ENV_VARS[name]
        assert doc, f"{name} has no meaning"
        if _derived(shown):
            continue  # computed by from_env; tests/quart_app/core/test_config.py
        # the default as documented, read back, gives the value used when it is unset
        expected = Path(shown).resolve() if field == "var_dir" else defaults[field]
        assert Config.from_env({**base, name: shown}).model_dump()[field] == expected, name


def test_an_empty_value_means_the_default_where_the_default_is_derived(tmp_path: Path) -> None:
    # what the README says about NAME=
    base = {"VAR_DIR": str(tmp_path)}
    unset = Config.from_env(base)
    for name, (shown, _) in ENV_VARS.items():
        if _derived(shown):
            assert Config.from_env({**base, name: ""}) == unset, name


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make run" in (ROOT / "README.md").read_text()
