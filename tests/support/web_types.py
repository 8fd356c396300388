"""The browser's REST types, generated from the app's own OpenAPI document.

``python -m tests.support.web_types`` (``make web-types``) writes
:data:`WEB_TYPES_PATH`; ``tests/test_wire_contract.py`` regenerates into a temporary
file and requires the checked-in one to be byte-identical.

The document is the one ``GET /openapi.json`` serves, built from ``create_app`` without
serving it: no database and no Redis are opened (``before_serving`` never runs).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from quart import Quart

from quart_app.app import create_app
from quart_app.core.config import Config

REPO = Path(__file__).resolve().parents[2]
WEB_DIR = REPO / "web"
WEB_TYPES_PATH = WEB_DIR / "src" / "generated" / "openapi.ts"
OPENAPI_TYPESCRIPT = WEB_DIR / "node_modules" / ".bin" / "openapi-typescript"
REGENERATE_HINT = "run `make web-types` and commit web/src/generated/openapi.ts"


def document_app() -> Quart:
    """An app built only to describe itself: its settings let ``create_app`` build it and
    none of them appears in the document."""
    return create_app(Config(env="test", secret_key="openapi-document-" + "x" * 32))


def openapi_document(app: Quart | None = None) -> dict[str, Any]:
    """The OpenAPI document of the REST API, as ``/openapi.json`` serves it."""
    app = app or document_app()
    document: dict[str, Any] = app.extensions["QUART_SCHEMA"].openapi_provider.schema()
    return document


def write_web_types(out: Path) -> None:
    """Generate the TypeScript types of :func:`openapi_document` into ``out``.

    Raises FileNotFoundError when web/node_modules lacks openapi-typescript (``npm ci``
    in web/), RuntimeError with its output when it fails.
    """
    if not OPENAPI_TYPESCRIPT.exists():
        raise FileNotFoundError(f"{OPENAPI_TYPESCRIPT} is missing: run `npm ci` in web/")
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "openapi.json"
        spec.write_text(json.dumps(openapi_document(), indent=2) + "\n", encoding="utf-8")
        run = subprocess.run(
            [str(OPENAPI_TYPESCRIPT), str(spec), "--output", str(out)],
            cwd=WEB_DIR,
            capture_output=True,
            text=True,
        )
    if run.returncode != 0:
        raise RuntimeError(f"openapi-typescript failed:\n{run.stdout}{run.stderr}")


def main() -> None:
    """Regenerate :data:`WEB_TYPES_PATH`."""
    WEB_TYPES_PATH.parent.mkdir(parents=True, exist_ok=True)
    write_web_types(WEB_TYPES_PATH)
    print(f"wrote {WEB_TYPES_PATH.relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    main()
