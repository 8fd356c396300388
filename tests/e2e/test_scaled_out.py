"""The dashboard in Chromium behind nginx (deploy/nginx.conf) in front of two web
processes: when the one serving the page crashes, the page carries on through the other
and ends with the complete state (the topology test proves the same for Python clients;
this is what a user sees, with socket.io-client)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.e2e.pages import (
    card_of,
    expect_completed,
    expect_video_rows,
    import_csv,
    open_logged_in,
)
from tests.e2e.support import Stack, running_stack
from tests.topology.nginx import nginx_binary

pytestmark = pytest.mark.skipif(
    nginx_binary() is None, reason="nginx not installed (make system-deps)"
)


@pytest.fixture(scope="module")
async def stack(
    pg_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """Overrides conftest's ``stack`` for this module: two web processes behind nginx."""
    async with running_stack(
        pg_database_url, tmp_path_factory.mktemp("e2e-scaled"), web_processes=2
    ) as the_stack:
        yield the_stack


async def _page_upstream(page: Page) -> str:
    """The web process nginx sends the PAGE to, asked by the page itself: a fetch with
    its cookies, so nginx hashes its rt_lb cookie as it does for the page's Socket.IO
    requests (both upstreams list the same processes: one browser reaches one process
    for both).  Not this test's REST client: that one returns no cookies and is hashed
    on its address, which picks the other process about half of the time."""
    status, upstream = await page.evaluate(
        """async () => {
            const r = await fetch("/api/health");
            return [r.status, r.headers.get("x-reeltrack-upstream")];
        }"""
    )
    assert status == 200 and upstream, (status, upstream)
    return str(upstream)


async def test_crash_of_the_pages_web_process_the_page_moves_to_the_other_and_completes(
    stack: Stack, browser: BrowserContext
) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "Scaled out")
    websockets: list[str] = []
    page = await open_logged_in(browser, stack, account, f"/lists/{list_id}", websockets)
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-connected", "true"
    )
    upstream = await _page_upstream(page)
    victim = next(w for w in stack.webs if upstream.endswith(f":{w.port}"))
    names = stack.add_videos("scaled", 10)
    stack.media.hold(*names[5:])
    await import_csv(stack, account, list_id, names)
    card = card_of(page)
    await expect(card.get_by_test_id("progress-count")).to_have_text("5/10 videos")
    assert len(websockets) == 1

    await asyncio.to_thread(victim.kill)
    # videos 6 and 7 finish while the page is finding the other process
    stack.media.release(names[5], names[6])
    await expect(card.get_by_test_id("progress-count")).to_have_text("7/10 videos", timeout=45_000)
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-connected", "true"
    )
    # a new session, through nginx, on the survivor, upgraded from long-polling to a
    # websocket as the first one was
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-transport", "websocket"
    )
    assert len(websockets) >= 2, websockets
    assert await _page_upstream(page) != upstream
    stack.media.release(*names[7:])
    await expect_completed(card, 10)
    await expect_video_rows(page, 10, 10)
    # a reload is served by the survivor and shows the same complete state at once
    await page.reload()
    await expect_completed(card_of(page), 10)
