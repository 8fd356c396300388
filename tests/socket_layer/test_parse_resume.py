"""``resume`` payload validation without a server: a last seq the history cannot hold
is a request error (before, it reached the DB, failed there, and the client was told
``unavailable`` as if the database were down)."""

from __future__ import annotations

import uuid

import pytest

from models.events import MAX_SEQ
from socket_layer.server import ResumeRequestError, parse_resume

JOB = str(uuid.UUID(int=1))


@pytest.mark.parametrize("seq", [MAX_SEQ + 1, 10**30, -1])
def test_out_of_range_last_seq_is_a_request_error(seq: int) -> None:
    with pytest.raises(ResumeRequestError):
        parse_resume({"jobs": {JOB: seq}}, max_jobs=10)


def test_largest_seq_is_accepted() -> None:
    assert parse_resume({"jobs": {JOB: MAX_SEQ}}, max_jobs=10) == {uuid.UUID(JOB): MAX_SEQ}
