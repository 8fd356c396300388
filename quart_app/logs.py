"""Process-wide logging set-up: text or JSON lines, and no secrets in any line.

Access tokens travel in ``?token=`` query strings (Socket.IO compatibility) and in
``Authorization`` headers; :func:`redact` removes both from any text, and the
:class:`RedactingFilter` installed by :func:`configure_logging` applies it to every
record that reaches a handler.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from quart_app.config import Config

REDACTED = "[redacted]"
# token=... up to the next separator, in query strings, URLs or "Authorization: Bearer x"
_TOKEN_RE = re.compile(r"((?:^|[?&;\s\"'])(?:access_)?token=)[^&\s\"';]*", re.IGNORECASE)
_BEARER_RE = re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every ``token=`` value and bearer credential replaced."""
    return _BEARER_RE.sub(rf"\1{REDACTED}", _TOKEN_RE.sub(rf"\1{REDACTED}", text))


class RedactingFilter(logging.Filter):
    """Rewrites a record's final message through :func:`redact` (never drops it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)


def configure_logging(config: Config) -> None:
    """One stderr handler on the root logger at ``LOG_LEVEL``, redacting secrets."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if config.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(config.log_level)
