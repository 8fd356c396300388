"""The rules for text users give reeltrack to show back (video titles).

One rule wherever a title comes from (a CSV or JSON import, an uploaded file's name):
Unicode NFC, surrounding whitespace removed, no control characters (U+0000-U+001F,
U+007F: PostgreSQL cannot store NUL, and the others break the lines they are shown
on), at most :data:`MAX_TITLE_LENGTH` characters.
"""

from __future__ import annotations

import re
import unicodedata

MAX_TITLE_LENGTH = 500
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def clean_title(text: str) -> str:
    """``text`` as a title: NFC, stripped, cut to MAX_TITLE_LENGTH (may be empty).

    Raises ValueError ("contains control characters") when it holds one.
    """
    if CONTROL_RE.search(text):
        raise ValueError("contains control characters")
    return unicodedata.normalize("NFC", text).strip()[:MAX_TITLE_LENGTH]
