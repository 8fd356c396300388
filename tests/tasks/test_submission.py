"""Submitting a job: the per-user limit on ``high`` jobs holds against submissions that
race each other, on both databases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from models.entities import JobPriority, JobSource, ProcessingJob
from models.jobs import JobSpec, NewVideo
from tasks.submission import submit_job
from tests.conftest import tortoise_open
from tests.support.builders import make_list, make_user


@pytest.fixture
async def db(any_database_url: str) -> AsyncIterator[str]:
    """Tortoise open on each supported database in turn (overrides the PostgreSQL-only
    ``db`` of tests/conftest.py)."""
    async with tortoise_open(any_database_url) as url:
        yield url


async def _submit_high(owner: uuid.UUID, list_id: uuid.UUID, limit: int) -> ProcessingJob:
    return await submit_job(
        owner,
        list_id,
        [NewVideo(source="import:none.mp4", title="x")],
        emitter=None,
        redis=None,
        enqueue=False,
        spec=JobSpec(source=JobSource.JSON, priority=JobPriority.HIGH),
        high_priority_max_active=limit,
    )


async def test_high_submissions_racing_each_other_never_pass_the_limit_together(db: str) -> None:
    """Eight ``high`` submissions of one user at the same instant (parallel requests):
    exactly the limit's worth are stored ``high``, the rest ``normal``, and each caller
    is told what its job got; another user's count is their own."""
    user, other = await make_user(), await make_user()
    vlist, other_list = await make_list(user, "race"), await make_list(other, "race")
    jobs = await asyncio.gather(
        *(_submit_high(user.id, vlist.id, 2) for _ in range(8)),
        _submit_high(other.id, other_list.id, 2),
    )
    stored = [(await ProcessingJob.get(id=j.id)).priority for j in jobs]
    assert sorted(stored[:8]) == ["high"] * 2 + ["normal"] * 6
    assert [j.priority for j in jobs] == stored
    assert stored[8] == "high"


async def test_a_finished_high_job_frees_its_place(db: str) -> None:
    user = await make_user()
    vlist = await make_list(user, "freed")
    first = await _submit_high(user.id, vlist.id, 1)
    assert (await _submit_high(user.id, vlist.id, 1)).priority == "normal"
    await ProcessingJob.filter(id=first.id).update(status="completed")
    assert (await _submit_high(user.id, vlist.id, 1)).priority == "high"
