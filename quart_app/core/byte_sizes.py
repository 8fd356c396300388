"""Sizes in bytes as people read them, for the messages users see ("2 GiB")."""

from __future__ import annotations

_UNITS = ("KiB", "MiB", "GiB", "TiB")


def byte_size(n: int) -> str:
    """``n`` bytes in the largest binary unit it reaches, to one decimal where that is not
    exact: ``byte_size(2 * 1024**3) == "2 GiB"``, ``byte_size(1_000_000) == "976.6 KiB"``,
    ``byte_size(1) == "1 byte"``."""
    if n < 1024:
        return "1 byte" if n == 1 else f"{n} bytes"
    value = n / 1024
    unit = 0
    # a value that rounds to 1024 reads in the next unit: 1024**2 - 1 is "1 MiB"
    while round(value, 1) >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{f'{value:.1f}'.removesuffix('.0')} {_UNITS[unit]}"
