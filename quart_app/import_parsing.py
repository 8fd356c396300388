"""Parsing and validating bulk imports (CSV or JSON) into video sources.

Rules (DESIGN section 6): a CSV header with ``url`` and optional ``title``;
UTF-8 with or without BOM; at most ``MAX_VIDEOS_PER_JOB`` rows; each url is an http(s)
URL or a path inside ``IMPORT_ROOT`` — relative, or absolute but inside it; no ``..``
component; no symlink leading outside; the file must exist.  Any bad row rejects the
whole import (:class:`ImportRejected` naming every bad row), so nothing is created.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from models.jobs import NewVideo
from quart_app.core.text import CONTROL_RE, MAX_TITLE_LENGTH, clean_title

MAX_URL_LENGTH = 2048
#: bytes allowed per import row (url + title + separators), to bound the body size
BYTES_PER_ROW = 3 * 1024
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass
class RowError:
    row: int
    error: str
    field: str = "url"
    value: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"row": self.row, "field": self.field, "error": self.error}
        if self.value is not None:
            out["value"] = self.value[:200]
        return out


@dataclass
class ImportRejected(Exception):
    """The import is refused; nothing may be created.  ``code`` is file-level
    (``invalid_encoding``, ``missing_url_column``, ``too_many_rows``, ``empty``,
    ``invalid_rows``) and ``rows`` names each bad row when the problem is per row."""

    code: str
    message: str
    rows: list[RowError] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


def max_import_bytes(max_rows: int) -> int:
    """Largest CSV/JSON body accepted for ``max_rows`` rows."""
    return 64 * 1024 + max_rows * BYTES_PER_ROW


def _title_from(source_text: str) -> str:
    tail = PurePosixPath(urlsplit(source_text).path).name or source_text
    return (PurePosixPath(tail).stem or tail)[:MAX_TITLE_LENGTH]


def check_url(value: str, import_root: Path) -> str:
    """Return the Video.source for a url cell, or raise ValueError saying why not.

    http(s) URLs are kept as they are; paths become ``import:<relative path>``.
    """
    if not value:
        raise ValueError("url is empty")
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"url longer than {MAX_URL_LENGTH} characters")
    if CONTROL_RE.search(value):
        raise ValueError("url contains control characters")
    if _SCHEME_RE.match(value):
        parts = urlsplit(value)
        if parts.scheme.lower() not in {"http", "https"}:
            raise ValueError(f"unsupported scheme {parts.scheme!r} (only http and https)")
        if not parts.hostname:
            raise ValueError("url has no host")
        if any(c.isspace() for c in value):
            raise ValueError("url contains whitespace")
        return value
    return "import:" + _check_import_path(value, import_root)


def _check_import_path(value: str, import_root: Path) -> str:
    if "\\" in value:
        raise ValueError("backslashes are not allowed in paths")
    path = PurePosixPath(value)
    if ".." in path.parts:
        raise ValueError("'..' is not allowed in paths")
    root = import_root.resolve()
    if path.is_absolute():
        try:
            path = PurePosixPath(Path(path).relative_to(root).as_posix())
        except ValueError:
            raise ValueError("absolute path outside the import folder") from None
    if str(path) in {"", "."}:
        raise ValueError("path names no file")
    # resolve() follows symlinks: a link inside the root pointing outside is refused
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError("path leads outside the import folder (symlink)")
    if not resolved.is_file():
        raise ValueError("no such file in the import folder")
    if not os.access(resolved, os.R_OK):
        raise ValueError("the file in the import folder is not readable")
    return path.as_posix()


def _check_rows(rows: list[tuple[int, str, str | None]], import_root: Path) -> list[NewVideo]:
    items: list[NewVideo] = []
    errors: list[RowError] = []
    for number, url, title in rows:
        try:
            source = check_url(url, import_root)
        except ValueError as exc:
            errors.append(RowError(number, str(exc), "url", url))
            continue
        if title is not None and len(title) > MAX_TITLE_LENGTH:
            too_long = f"title longer than {MAX_TITLE_LENGTH} characters"
            errors.append(RowError(number, too_long, "title"))
            continue
        if title is not None and CONTROL_RE.search(title):
            errors.append(RowError(number, "title contains control characters", "title"))
            continue
        items.append(NewVideo(source, clean_title(title or "") or _title_from(url)))
    if errors:
        raise ImportRejected(
            "invalid_rows",
            f"{len(errors)} bad row(s); nothing was imported",
            errors,
        )
    if not items:
        raise ImportRejected("empty", "the import holds no videos")
    return items


def parse_csv(data: bytes, *, import_root: Path, max_rows: int) -> list[NewVideo]:
    """Parse a CSV import; rows are numbered from 1 for the first data row (the header is
    row 0).  Raises :class:`ImportRejected`."""
    try:
        text = data.decode("utf-8-sig")  # strips one leading BOM if present
    except UnicodeDecodeError as exc:
        raise ImportRejected(
            "invalid_encoding", f"the file is not UTF-8 (byte {exc.start} is invalid)"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ImportRejected("empty", "the file is empty") from None
    except csv.Error as exc:
        raise ImportRejected("invalid_csv", f"malformed CSV header: {exc}") from None
    names = [h.strip().lower() for h in header]
    if names.count("url") != 1:
        raise ImportRejected(
            "missing_url_column",
            "the header must name exactly one 'url' column (and optionally 'title')",
        )
    if names.count("title") > 1:
        raise ImportRejected("invalid_header", "the header names 'title' more than once")
    url_i = names.index("url")
    title_i = names.index("title") if "title" in names else None
    rows: list[tuple[int, str, str | None]] = []
    number = 0
    try:
        for record in reader:
            if not record or all(not cell.strip() for cell in record):
                continue  # blank lines are not rows
            number += 1
            if number > max_rows:
                raise ImportRejected("too_many_rows", f"more than {max_rows} rows in one import")
            url = record[url_i].strip() if url_i < len(record) else ""
            title = None
            if title_i is not None and title_i < len(record):
                title = record[title_i].strip() or None
            rows.append((number, url, title))
    except csv.Error as exc:
        raise ImportRejected("invalid_csv", f"malformed CSV after row {number}: {exc}") from None
    return _check_rows(rows, import_root)


def parse_json(data: Any, *, import_root: Path, max_rows: int) -> list[NewVideo]:
    """Validate ``{"videos": [{"url": ..., "title": ...}, ...]}`` (rows numbered from 1).
    Raises :class:`ImportRejected`."""
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise ImportRejected("invalid_request", 'expected {"videos": [{"url": ..., "title": ...}]}')
    extra = set(data) - {"videos"}
    if extra:
        raise ImportRejected("invalid_request", f"unknown keys: {sorted(extra)}")
    videos = data["videos"]
    if len(videos) > max_rows:
        raise ImportRejected("too_many_rows", f"more than {max_rows} videos in one import")
    rows: list[tuple[int, str, str | None]] = []
    shape_errors: list[RowError] = []
    for number, item in enumerate(videos, start=1):
        if not isinstance(item, dict) or set(item) - {"url", "title"}:
            shape_errors.append(RowError(number, "expected an object with url and title", "row"))
            continue
        url, title = item.get("url", ""), item.get("title")
        if not isinstance(url, str) or not (title is None or isinstance(title, str)):
            shape_errors.append(RowError(number, "url and title must be strings", "row"))
            continue
        rows.append((number, url.strip(), title.strip() if title else None))
    items: list[NewVideo] = []
    if rows:
        try:
            items = _check_rows(rows, import_root)
        except ImportRejected as exc:
            if exc.code != "invalid_rows":
                raise
            shape_errors.extend(exc.rows)
    if shape_errors:
        shape_errors.sort(key=lambda e: e.row)
        raise ImportRejected(
            "invalid_rows", f"{len(shape_errors)} bad row(s); nothing was imported", shape_errors
        )
    if not items:
        raise ImportRejected("empty", "the import holds no videos")
    return items
