"""Process-wide logging set-up: text or JSON lines, job/user context, no secrets.

Every long-running process (``reeltrack serve``, ``reeltrack worker`` and its
work-horses, ``reeltrack run``) calls :func:`configure_logging` once: one stderr
handler on the root logger at ``LOG_LEVEL``; with ``LOG_JSON=true`` each record is one
JSON object per line.

Context: :func:`log_context` (or :func:`bind_log_context`) puts ``job_id`` and
``user_id`` into context variables; every record logged inside carries them (JSON
keys, or ``job_id=... user_id=...`` at the end of a text line).  The worker binds the
job and its owner for a job's run, the REST layer binds the authenticated user for a
request, the socket layer the user of a connection.

Secrets: access tokens travel in ``?token=`` query strings (Socket.IO compatibility),
``Authorization`` headers and JSON bodies; passwords in JSON/form bodies.
:func:`redact` removes ``token=``/``access_token=``/``password=`` values, engine.io
session ids (``sid=``, ``session <sid>``) and thumbnail capabilities (``sig=``), bearer
credentials, JSON/dict ``"token"``/``"access_token"``/``"password"``/``"secret_key"``
values, anything shaped like one of our signed tokens and any password hash
(``$argon2...``, ``$2b$...`` bcrypt, ``pbkdf2_sha256$...``).  The formatters redact the
WHOLE formatted line (message, arguments, exception text, extras), and the
:class:`RedactingFilter` also cleans records reaching other handlers.

SQL: the database clients' DEBUG log (``tortoise.db_client``) prints each statement with
its parameters - password hashes, titles, URLs.  :class:`SqlParameterFilter`, installed
on that logger by :func:`configure_logging`, keeps the statement and drops every
parameter (and the connection parameters, which hold the DB password), whatever handler
the record reaches.

Kept free of Quart imports: the worker uses it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from quart_app.core.config import Config

REDACTED = "[redacted]"

# sid: an engine.io session id (enough to poll someone's session); sig: a thumbnail URL's
# capability
_SECRET_KEYS = (
    r"(?:access_token|refresh_token|token|password|passwd|secret_key|secret|api_key|sid|sig)"
)
# key=value in query strings, form bodies, "Authorization: x" style text
_KV_RE = re.compile(rf"(\b{_SECRET_KEYS}=)[^&\s\"';,]*", re.IGNORECASE)
# "key": "value" (JSON) and 'key': 'value' (Python reprs)
_JSON_RE = re.compile(
    rf"""(["']{_SECRET_KEYS}["']\s*:\s*)(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""",
    re.IGNORECASE,
)
_BEARER_RE = re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# the shape of our access tokens (itsdangerous: base64 JSON . timestamp . signature) and
# of JWTs: caught wherever they appear, even without a key in front
_TOKEN_SHAPE_RE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{16,}")
# password hashes in their modular-crypt / passlib forms, wherever they appear
_HASH_SHAPE_RE = re.compile(
    r"(?:\$(?:argon2(?:id|i|d)|2[abxy]?|scrypt|pbkdf2[-_a-z0-9]*)|pbkdf2_sha\d+)\$[^\s'\")\]}]+",
    re.IGNORECASE,
)
# python-engineio names the session in its own errors ("Invalid session <sid>")
_EIO_SESSION_RE = re.compile(r"(\bsession )[A-Za-z0-9_-]{16,}")
#: the loggers of the database clients that print statements with their parameters
SQL_LOGGERS = ("tortoise.db_client",)
SQL_PARAMETERS_DROPPED = "[parameters not logged]"

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("log_job_id", default=None)
_user_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("log_user_id", default=None)
CONTEXT_FIELDS = ("job_id", "user_id")


def redact(text: str) -> str:
    """``text`` without secret values (see the module docstring for what is caught)."""
    text = _TOKEN_SHAPE_RE.sub(REDACTED, text)
    text = _HASH_SHAPE_RE.sub(REDACTED, text)
    text = _KV_RE.sub(rf"\1{REDACTED}", text)
    text = _EIO_SESSION_RE.sub(rf"\1{REDACTED}", text)
    text = _JSON_RE.sub(rf'\1"{REDACTED}"', text)
    return _BEARER_RE.sub(rf"\1{REDACTED}", text)


def printable(text: object, limit: int = 64) -> str:
    """``text`` safe to put in a log line: every control or format character (C0, C1,
    line separators, bidi overrides) replaced by ``?``, cut to ``limit`` characters
    (``...`` marks a cut).  For user input such as a login's username."""
    value = str(text)
    cut = len(value) > limit
    cleaned = "".join("?" if unicodedata.category(c)[0] == "C" else c for c in value[:limit])
    return cleaned + ("..." if cut else "")


# --- context --------------------------------------------------------------------------


def bind_log_context(*, job_id: object = None, user_id: object = None) -> None:
    """Set job_id / user_id for the rest of the current task (or context); None leaves
    a field as it is.  Asyncio tasks (each request, each socket event) copy the context,
    so a binding never leaks into other tasks."""
    if job_id is not None:
        _job_id.set(str(job_id))
    if user_id is not None:
        _user_id.set(str(user_id))


@contextlib.contextmanager
def log_context(*, job_id: object = None, user_id: object = None) -> Iterator[None]:
    """Within the block, records carry ``job_id`` / ``user_id``; on exit both fields
    are restored, including anything :func:`bind_log_context` set inside."""
    saved = (_job_id.set(_job_id.get()), _user_id.set(_user_id.get()))
    bind_log_context(job_id=job_id, user_id=user_id)
    try:
        yield
    finally:
        _user_id.reset(saved[1])
        _job_id.reset(saved[0])


def current_log_context() -> dict[str, str]:
    """The bound fields (only those that are set)."""
    found = {"job_id": _job_id.get(), "user_id": _user_id.get()}
    return {k: v for k, v in found.items() if v is not None}


class ContextFilter(logging.Filter):
    """Adds ``job_id`` / ``user_id`` from the context to each record (an explicit
    ``extra={"job_id": ...}`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current_log_context().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


# --- redaction and formatting ---------------------------------------------------------


class RedactingFilter(logging.Filter):
    """Rewrites a record's final message through :func:`redact` (never drops it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record; the formatter reports it
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class SqlParameterFilter(logging.Filter):
    """Keeps a database client's record but never its parameters: a statement logged
    as ``("%s: %s", query, values)`` keeps the query text only; any other record with
    arguments (pool set-up with its connection parameters, which hold the password)
    keeps only the words of its format before the first placeholder."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not args:
            return True
        if record.msg == "%s: %s" and isinstance(args, tuple) and len(args) == 2:
            record.msg, record.args = "%s: " + SQL_PARAMETERS_DROPPED, (args[0],)
        else:
            words = str(record.msg).split("%", 1)[0].strip()
            record.msg, record.args = f"{words} {SQL_PARAMETERS_DROPPED}".strip(), None
        return True


def install_sql_filters() -> None:
    """Put :class:`SqlParameterFilter` on every logger of :data:`SQL_LOGGERS` (once)."""
    for name in SQL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, SqlParameterFilter) for f in logger.filters):
            logger.addFilter(SqlParameterFilter())


def _context_suffix(record: logging.LogRecord) -> str:
    parts = [
        f"{name}={getattr(record, name)}"
        for name in CONTEXT_FIELDS
        if getattr(record, name, None) is not None
    ]
    return (" " + " ".join(parts)) if parts else ""


class TextFormatter(logging.Formatter):
    """``time LEVEL [pid] logger: message job_id=... user_id=...``, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record) + _context_suffix(record))


#: LogRecord attributes that are not "extra" fields
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, pid, message, job_id, user_id,
    any ``extra`` fields, exc; every string redacted."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD_ATTRS or key.startswith("_") or key in data:
                continue
            data[key] = value if isinstance(value, int | float | bool | type(None)) else str(value)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exc"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return redact(json.dumps(data, default=str, ensure_ascii=False))


def make_handler(config: Config, stream: Any = None) -> logging.Handler:
    """A stream handler (stderr by default) with context, redaction and the format of
    ``config``."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if config.log_json else TextFormatter())
    return handler


def configure_logging(config: Config) -> None:
    """One stderr handler on the root logger at ``LOG_LEVEL``, with context and
    redaction (idempotent: it replaces the root's handlers)."""
    root = logging.getLogger()
    root.handlers = [make_handler(config)]
    root.setLevel(config.log_level)
    install_sql_filters()
    # their DEBUG output echoes request URLs and packets (which may hold a ?token=)
    for noisy in ("engineio", "socketio", "hpack", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
