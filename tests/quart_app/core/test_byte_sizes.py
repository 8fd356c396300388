import pytest

from quart_app.core.byte_sizes import byte_size


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1023, "1023 bytes"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (1_000_000, "976.6 KiB"),
        (1024**2 - 1, "1 MiB"),
        (16 * 1024**2, "16 MiB"),
        (2 * 1024**3, "2 GiB"),
        (5 * 1024**5, "5120 TiB"),
    ],
)
def test_sizes_read_in_the_largest_binary_unit_they_reach(n: int, text: str) -> None:
    assert byte_size(n) == text
