"""Keyset pagination, newest first, with an opaque cursor.

A page is ordered by ``(created_at DESC, id DESC)``; its cursor is that key of its last
row, and the next page holds the rows strictly after it in that order.  Rows created
while a client pages are newer than every cursor it holds, so they never shift a later
page: no row is returned twice or skipped (unlike ``OFFSET``).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any, Protocol, TypeVar

from tortoise.expressions import Q
from tortoise.models import Model
from tortoise.queryset import QuerySet

MAX_CURSOR_LENGTH = 200


class BadCursor(ValueError):
    """The cursor was not made by :func:`encode_cursor` (malformed or tampered)."""


class _Keyed(Protocol):
    id: Any
    created_at: datetime


M = TypeVar("M", bound=Model)


def encode_cursor(row: _Keyed) -> str:
    """The opaque cursor after ``row`` (URL-safe base64, no padding)."""
    raw = json.dumps([row.created_at.isoformat(), str(row.id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) key a cursor holds; raises :class:`BadCursor`."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise BadCursor("cursor too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, row_id = json.loads(raw)
        key = datetime.fromisoformat(created), uuid.UUID(row_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadCursor("malformed cursor") from exc
    if key[0].tzinfo is None:
        raise BadCursor("malformed cursor")
    return key


async def newest_first(
    query: QuerySet[M], *, limit: int, cursor: str | None
) -> tuple[list[M], str | None]:
    """One page of ``query`` (rows with ``created_at`` and ``id``), newest first: at most
    ``limit`` rows after ``cursor`` (None: from the newest), and the cursor of the next
    page (None on the last page).  Raises :class:`BadCursor`."""
    if cursor is not None:
        created, row_id = decode_cursor(cursor)
        query = query.filter(Q(created_at__lt=created) | Q(created_at=created, id__lt=row_id))
    rows = await query.order_by("-created_at", "-id").limit(limit + 1)
    page = list(rows[:limit])
    more = len(rows) > limit
    return page, encode_cursor(page[-1]) if more and page else None  # type: ignore[arg-type]
