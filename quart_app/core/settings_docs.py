"""The settings reference, rendered from the declarations in :mod:`quart_app.core.config`.

``python -m quart_app.core.settings_docs --markdown`` prints the README's configuration
table, ``--env-example`` prints ``.env.example``; ``tests/test_docs.py`` checks that both
files hold exactly this text.
"""

from __future__ import annotations

import argparse
import sys

from quart_app.core.config import DEFAULT_ENV_FILE, ENV_FILE_VAR, ENV_VARS

ENV_EXAMPLE_HEADER = f"""\
# reeltrack configuration. Every variable is optional in development; defaults shown.
# Set them in the environment of `reeltrack run|serve|worker`, or copy this file to
# {DEFAULT_ENV_FILE} in the working directory (or point {ENV_FILE_VAR} at it) and uncomment.
# The environment wins over the file; a name in the file that is not a setting is an error.
"""


def markdown_table() -> str:
    """The README table: one row per setting, in declaration order."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | {shown} | {doc} |" for name, (shown, doc) in ENV_VARS.items()]
    return "\n".join(rows) + "\n"


def env_example() -> str:
    """``.env.example``: every setting commented out at its default, with its meaning."""
    blocks = [f"# {doc}\n# {name}={shown}\n" for name, (shown, doc) in ENV_VARS.items()]
    return ENV_EXAMPLE_HEADER + "\n" + "\n".join(blocks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quart_app.core.settings_docs")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--markdown", action="store_true", help="the README table")
    which.add_argument("--env-example", action="store_true", help="the .env.example file")
    args = parser.parse_args(argv)
    sys.stdout.write(markdown_table() if args.markdown else env_example())
    return 0


if __name__ == "__main__":
    sys.exit(main())
