"""RQ jobs: video processing, the progress publisher, retention. Must not import quart.

``tasks.process_video_list`` is the RQ job function (loaded lazily so that importing
:mod:`tasks.queue` from the API does not pull in PyAV).
"""

from __future__ import annotations

from typing import Any

__all__ = ["process_video_list"]


def __getattr__(name: str) -> Any:
    if name == "process_video_list":
        from tasks.processing import process_video_list

        return process_video_list
    raise AttributeError(f"module 'tasks' has no attribute {name!r}")
