"""Synthetic sample videos written with PyAV: sliding colour bars (and optionally a sine
tone), a fraction of a second to make.  ``reeltrack demo`` imports them; the tests build
their media with the same function."""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from pathlib import Path

import av

#: fastest settings: the demo must be ready within seconds on a small machine
ENCODER_OPTIONS = {
    "libx264": {"preset": "ultrafast"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8"},
}
PALETTE = [
    (235, 64, 52),
    (245, 166, 35),
    (248, 231, 28),
    (126, 211, 33),
    (74, 144, 226),
    (144, 19, 254),
    (255, 255, 255),
    (30, 30, 30),
]
#: the tone's sample rate and pitch (mono AAC)
AUDIO_RATE = 8000
TONE_HZ = 440


def _frame(width: int, height: int, index: int) -> av.VideoFrame:
    """Colour bars sliding one step per frame (cheap: one row built, repeated)."""
    band = max(1, width // len(PALETTE))
    row = b"".join(bytes(c) * band for c in PALETTE)
    row = (row * 2)[: width * 3] if len(row) >= width * 3 else (row * (width // band + 2))
    shift = (index * 3 % width) * 3
    row = (row[shift:] + row[:shift])[: width * 3]
    frame = av.VideoFrame(width, height, "rgb24")
    plane = frame.planes[0]
    line = row + b"\0" * (plane.line_size - width * 3)
    plane.update(line * height)
    return frame


def _encode_tone(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    samples = int(AUDIO_RATE * seconds)
    chunk = 1024
    for start in range(0, samples, chunk):
        n = min(chunk, samples - start)
        frame = av.AudioFrame(format="fltp", layout="mono", samples=n)
        tone = [0.2 * math.sin(2 * math.pi * TONE_HZ * (start + k) / AUDIO_RATE) for k in range(n)]
        data = struct.pack(f"<{n}f", *tone)
        plane = frame.planes[0]
        plane.update(data + b"\0" * (plane.buffer_size - len(data)))
        frame.sample_rate = AUDIO_RATE
        frame.pts = start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


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
    """Write a video of sliding colour bars to ``path`` (its parents are created) and
    return ``path``: ``fps * seconds`` frames (at least one) in ``codec``, with a mono
    AAC tone when ``audio``; ``container`` names the format when the suffix does not
    (``mpegts`` for a ``.ts``).  Blocking; raises PyAV's errors for an unknown codec."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=fps, options=ENCODER_OPTIONS.get(codec, {}))
        assert isinstance(stream, av.VideoStream)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        tone = None
        if audio:  # every stream is added before the first packet is muxed
            tone = out.add_stream("aac", rate=AUDIO_RATE)
            tone.layout = "mono"
        for i in range(max(1, round(fps * seconds))):
            frame = _frame(width, height, i)
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
        if tone is not None:
            _encode_tone(out, tone, seconds)
    return path
