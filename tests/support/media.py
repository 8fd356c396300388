"""Tiny synthetic videos for tests and the demo's look-alikes (PyAV, milliseconds each)."""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from pathlib import Path

import av


def make_video(
    path: Path,
    *,
    width: int = 64,
    height: int = 48,
    fps: int = 10,
    seconds: float = 1.0,
    codec: str = "libx264",
    audio: bool = False,
    container: str | None = None,
) -> Path:
    """Write a small video with moving colour bars (and optionally a sine tone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = max(1, round(fps * seconds))
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        astream = None
        if audio:
            astream = out.add_stream("aac", rate=8000)
            astream.layout = "mono"
        for i in range(frames):
            frame = _bars_frame(width, height, i)
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
        if astream is not None:
            samples = int(8000 * seconds)
            chunk = 1024
            for start in range(0, samples, chunk):
                n = min(chunk, samples - start)
                aframe = av.AudioFrame(format="fltp", layout="mono", samples=n)
                tone = [0.2 * math.sin(2 * math.pi * 440 * (start + k) / 8000) for k in range(n)]
                data = struct.pack(f"<{n}f", *tone)
                plane = aframe.planes[0]
                plane.update(data + b"\0" * (plane.buffer_size - len(data)))
                aframe.sample_rate = 8000
                aframe.pts = start
                for packet in astream.encode(aframe):
                    out.mux(packet)
            for packet in astream.encode(None):
                out.mux(packet)
    return path


def _bars_frame(width: int, height: int, i: int) -> av.VideoFrame:
    """Moving colour bars, built without numpy (plane by plane, honouring line padding)."""
    frame = av.VideoFrame(width, height, "rgb24")
    plane = frame.planes[0]
    pad = b"\0" * (plane.line_size - width * 3)
    rows = []
    for y in range(height):
        g = (y * 5) % 256
        b = (i * 20) % 256
        row = bytes(v for x in range(width) for v in ((x * 4 + i * 8) % 256, g, b))
        rows.append(row + pad)
    plane.update(b"".join(rows))
    return frame


def make_corrupt(path: Path, size: int = 4096) -> Path:
    """A file with a video extension that no demuxer can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00not a video\xff" * (size // 14 + 1))
    return path
