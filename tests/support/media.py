"""Tiny media files for tests: the product's synthetic videos (the demo's
:func:`quart_app.sample_video.make_video`, milliseconds each) and a corrupt one."""

from __future__ import annotations

from pathlib import Path

from quart_app.sample_video import make_video

__all__ = ["make_corrupt", "make_video"]


def make_corrupt(path: Path, size: int = 4096) -> Path:
    """A file with a video extension that no demuxer can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00not a video\xff" * (size // 14 + 1))
    return path
