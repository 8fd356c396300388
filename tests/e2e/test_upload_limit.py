"""A video over MAX_UPLOAD_BYTES chosen in the browser: the user reads why, nothing of
the selection is kept, and a smaller one still goes through."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, expect

from tests.e2e.pages import card_of, expect_completed, expect_video_rows, open_logged_in
from tests.e2e.support import Stack, running_stack

LIMIT = 1024**2


@pytest.fixture(scope="module")
async def stack(
    pg_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """The e2e stack with a 1 MiB upload limit."""
    async with running_stack(
        pg_database_url, tmp_path_factory.mktemp("e2e-limit"), max_upload_bytes=LIMIT
    ) as the_stack:
        yield the_stack


async def test_a_video_over_the_upload_limit_is_refused_with_the_reason_and_nothing_is_kept(
    stack: Stack, browser: BrowserContext, tmp_path: Path
) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "Big files")
    page = await open_logged_in(browser, stack, account, f"/lists/{list_id}")
    small = tmp_path / "small.mp4"
    small.write_bytes(stack.sample)
    big = tmp_path / "big.mp4"  # 25 times the limit: the browser is still sending when refused
    big.write_bytes(stack.sample + os.urandom(25 * LIMIT))

    await page.get_by_role("tab", name="Upload videos").click()
    await page.get_by_label("Video files").set_input_files([str(small), str(big)])
    await page.get_by_role("button", name="Upload").click()
    await expect(page.get_by_text("larger than the upload limit of 1 MiB")).to_be_visible()
    assert await stack.videos(account, list_id) == []
    assert await stack.jobs(account) == []
    await expect(page.get_by_test_id("job-card")).to_have_count(0)

    await page.get_by_label("Video files").set_input_files(str(small))
    await page.get_by_role("button", name="Upload").click()
    await expect_completed(card_of(page), 1)
    await expect_video_rows(page, 1, 1)
