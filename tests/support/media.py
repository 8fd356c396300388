"""Media files for tests: the product's synthetic videos (the demo's
:func:`quart_app.sample_video.make_video`, milliseconds each), a corrupt one, and
incompressible noise MP4s (megabytes in a few seconds of video) for upload tests."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av

from quart_app.sample_video import make_video

__all__ = ["make_corrupt", "make_video", "noise_mp4"]


def make_corrupt(path: Path, size: int = 4096) -> Path:
    """A file with a video extension that no demuxer can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00not a video\xff" * (size // 14 + 1))
    return path


def noise_mp4(path: Path, *, seconds: float, width: int = 320, height: int = 240) -> Path:
    """A real H.264 MP4 of random noise (incompressible: megabytes in a second)."""
    fps = 25
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(fps * seconds)):
            frame = av.VideoFrame(width, height, "gray")
            plane = frame.planes[0]
            plane.update(os.urandom(plane.buffer_size))
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
