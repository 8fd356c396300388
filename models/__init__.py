"""Persistence and wire schema: Tortoise models, the progress event, DB config.

Must not import quart, socketio or rq.
"""

from models.db import close_db, open_db, tortoise_config
from models.entities import (
    JobProgressEvent,
    JobStatus,
    ProcessingJob,
    User,
    Video,
    VideoList,
    VideoStatus,
)
from models.events import ProgressEvent

__all__ = [
    "JobProgressEvent",
    "JobStatus",
    "ProcessingJob",
    "ProgressEvent",
    "User",
    "Video",
    "VideoList",
    "VideoStatus",
    "close_db",
    "open_db",
    "tortoise_config",
]
