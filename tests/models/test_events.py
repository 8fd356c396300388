"""The progress event schema: one pydantic model for DB, socket and REST."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from models.events import ProgressEvent


def event(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "job_id": str(uuid.uuid4()),
        "seq": 1,
        "status": "processing",
        "progress": 50,
        "current_video": 5,
        "total_videos": 10,
        "processed_videos": 5,
        "failed_videos": 1,
        "message": "Processing video 5/10",
        "video_id": None,
        "video_title": None,
        "error": None,
        "created_at": "2026-11-29T10:01:00.123456Z",
    }
    base.update(changes)
    return base


def test_round_trip_keeps_every_field_and_z_timestamp() -> None:
    data = event()
    parsed = ProgressEvent.from_wire(data)
    assert parsed.to_wire() == data


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        ProgressEvent.from_wire(event(colour="red"))


@pytest.mark.parametrize(
    "changes",
    [
        {"seq": 0},
        {"progress": 101},
        {"status": "done"},
        {"processed_videos": 11},
        {"failed_videos": 6},
        {"status": "completed", "progress": 99},
        {"job_id": "not-a-uuid"},
    ],
)
def test_inconsistent_events_are_rejected(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ProgressEvent.from_wire(event(**changes))


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(ValidationError):
        ProgressEvent(**{**event(), "created_at": datetime(2026, 1, 1)})  # type: ignore[arg-type]


def test_aware_timestamps_serialise_in_utc() -> None:
    ev = ProgressEvent.from_wire(event(created_at=datetime(2026, 1, 1, 12, tzinfo=UTC).isoformat()))
    assert ev.to_wire()["created_at"] == "2026-01-01T12:00:00.000000Z"
