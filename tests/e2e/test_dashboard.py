"""The dashboard in a real browser against the real stack (the seed's manual checklist).

Every "mid-job" moment is created by holding a video's download at the media origin,
so the job is provably between two videos while the test reloads, opens a second tab,
or restarts the web server.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, Route, expect

from tests.e2e.pages import (
    card_of,
    expect_bar,
    expect_completed,
    expect_video_rows,
    import_csv,
    login,
    open_logged_in,
    wait_connected,
)
from tests.e2e.support import AMBER, BLUE, SCREENSHOTS, Account, Stack
from tests.support.waiting import wait_for


async def test_import_ten_videos_updates_the_bar_per_video_and_ends_green(
    stack: Stack, browser: BrowserContext
) -> None:
    account = await stack.account()
    page = browser.pages[0] if browser.pages else await browser.new_page()
    await login(page, stack, account, "/lists")

    # create a list and import through the UI (pasted CSV)
    await page.get_by_label("List name").fill("Ten videos")
    await page.get_by_role("button", name="Create list").click()
    await page.wait_for_url(re.compile(r"/lists/[0-9a-f-]{36}$"))
    names = stack.add_videos("ten", 10)
    stack.media.hold(*names)
    await page.get_by_label("CSV text").fill(stack.csv(names))
    await page.get_by_role("button", name="Import").click()
    await expect(page.get_by_role("status").filter(has_text="Started a job")).to_be_visible()

    card = card_of(page)
    await expect(page.get_by_test_id("job-card")).to_have_count(1)
    await expect(card.get_by_test_id("progress-count")).to_have_text("0/10 videos")
    await expect_video_rows(page, 10, 0)

    # one video at a time: the bar must show each step
    for i, name in enumerate(names, start=1):
        stack.media.release(name)
        await expect(card.get_by_test_id("progress-count")).to_have_text(f"{i}/10 videos")
        if i < 10:
            await expect(card.get_by_role("progressbar")).to_have_attribute(
                "aria-valuenow", str(i * 10)
            )
            await expect_bar(card, "processing", BLUE)
            await expect(card.get_by_test_id("progress-percent")).to_have_text(f"{i * 10}%")
        if i == 5:
            await expect_video_rows(page, 10, 5)
            await page.screenshot(path=str(SCREENSHOTS / "dashboard-mid-job.png"), full_page=True)

    await expect_completed(card, 10)
    await expect_video_rows(page, 10, 10)
    first = page.get_by_test_id("video-row").first
    await expect(first).to_contain_text("64×48")
    await expect(first).to_contain_text("h264")
    await expect(first).to_contain_text("0:01")
    thumb = first.locator("img")
    await expect(thumb).to_be_visible()

    async def thumbnail_loaded() -> bool:
        return bool(await thumb.evaluate("img => img.complete && img.naturalWidth > 0"))

    await wait_for(thumbnail_loaded, 10, what="the thumbnail JPEG to load")
    await page.screenshot(path=str(SCREENSHOTS / "dashboard-completed.png"), full_page=True)

    # the job page: the full timeline from the history API, every seq once, in order
    await card.get_by_role("link").click()
    await page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    job = (await stack.jobs(account))[0]
    rows = page.get_by_test_id("timeline").locator("tbody tr")
    await expect(rows).to_have_count(job["last_seq"])
    seqs = [int(s) for s in await rows.evaluate_all("rs => rs.map(r => r.dataset.seq)")]
    assert seqs == list(range(1, job["last_seq"] + 1))
    assert job["last_seq"] == 12  # pending + one per video + completed


async def test_reload_mid_job_shows_the_state_at_once_and_continues(
    stack: Stack, browser: BrowserContext
) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "Reload")
    page = await open_logged_in(browser, stack, account, f"/lists/{list_id}")
    names = stack.add_videos("reload", 10)
    stack.media.hold(*names[4:])
    await import_csv(stack, account, list_id, names)
    card = card_of(page)
    await expect(card.get_by_test_id("progress-count")).to_have_text("4/10 videos")
    await stack.media.wait_requested(names[4])

    started = time.monotonic()
    await page.reload()
    # back at once: from the snapshot sent on connect, before anything else moves
    await expect(card.get_by_test_id("progress-count")).to_have_text("4/10 videos", timeout=5000)
    await expect(card.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "40")
    assert time.monotonic() - started < 5

    stack.media.release(*names[4:])
    await expect_completed(card, 10)
    await expect_video_rows(page, 10, 10)


async def test_two_tabs_share_one_socket_connection(stack: Stack, browser: BrowserContext) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "Two tabs")
    first_ws: list[str] = []
    first = await open_logged_in(browser, stack, account, f"/lists/{list_id}", first_ws)
    status1 = first.get_by_test_id("connection-status")
    await expect(status1).to_have_attribute("data-role", "leader")
    await expect(status1).to_have_attribute("data-connected", "true")

    second_ws: list[str] = []
    second = await open_logged_in(browser, stack, account, f"/lists/{list_id}", second_ws)
    status2 = second.get_by_test_id("connection-status")
    await expect(status2).to_have_attribute("data-role", "follower")
    await expect(status2).to_have_attribute("data-connected", "true")  # the leader's state

    names = stack.add_videos("tabs", 10)
    stack.media.hold(*names[3:])
    await import_csv(stack, account, list_id, names)
    for page in (first, second):
        await expect(card_of(page).get_by_test_id("progress-count")).to_have_text("3/10 videos")
        await expect(card_of(page).get_by_role("progressbar")).to_have_attribute(
            "aria-valuenow", "30"
        )
    # ONE connection for the browser: counted by the server and by the browser
    assert await stack.live_connections(account.user_id) == 1
    assert len(first_ws) <= 1 and second_ws == [], (first_ws, second_ws)

    stack.media.release(names[3])
    for page in (first, second):
        await expect(card_of(page).get_by_test_id("progress-count")).to_have_text("4/10 videos")

    # the leader tab closes: the other takes over the connection and misses nothing
    await first.close()
    await expect(status2).to_have_attribute("data-role", "leader")
    await expect(status2).to_have_attribute("data-connected", "true")
    stack.media.release(*names[4:])
    await expect_completed(card_of(second), 10)

    async def one_connection() -> bool:
        return await stack.live_connections(account.user_id) == 1

    await wait_for(one_connection, 10, what="exactly one live connection")
    assert len(second_ws) <= 1


async def test_a_failed_video_shows_its_error(stack: Stack, browser: BrowserContext) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "With a broken file")
    page = await open_logged_in(browser, stack, account, f"/lists/{list_id}")
    await wait_connected(page)
    names = stack.add_videos("broken", 4, broken={2})
    stack.media.hold(names[2])
    await import_csv(stack, account, list_id, names)
    card = card_of(page)
    # live: the failure event itself carries the error
    await expect(card.get_by_test_id("progress-count")).to_have_text("2/4 videos")
    await expect(card.get_by_test_id("progress-error")).to_contain_text("broken-02")
    stack.media.release(names[2])
    await expect_completed(card, 4)
    await expect(card.get_by_test_id("progress-failed")).to_have_text("1 failed")

    failed = [v for v in await stack.videos(account, list_id) if v["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"], failed
    error = failed[0]["error"]
    await expect(card.get_by_test_id("progress-error")).to_contain_text(error)
    await expect(card.get_by_test_id("progress-error")).to_contain_text("broken-02")
    row = page.locator('[data-testid="video-row"][data-status="failed"]')
    await expect(row).to_have_count(1)
    await expect(row.get_by_test_id("video-error")).to_have_text(error)
    await expect_video_rows(page, 4, 3)
    await page.screenshot(path=str(SCREENSHOTS / "dashboard-failed-video.png"), full_page=True)

    # after a reload only the final event arrives (snapshot): the error is still shown
    await page.reload()
    await expect_completed(card, 4)
    await expect(card.get_by_test_id("progress-error")).to_contain_text(error)


async def test_forced_long_polling_works_end_to_end(stack: Stack, browser: BrowserContext) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "Long-polling only")
    opened: list[str] = []
    page = await open_logged_in(
        browser, stack, account, f"/lists/{list_id}?transport=polling", websockets=opened
    )
    status = page.get_by_test_id("connection-status")
    await expect(status).to_have_attribute("data-connected", "true")
    await expect(status).to_have_attribute("data-transport", "polling")

    names = stack.add_videos("polling", 5)
    stack.media.hold(*names[2:])
    await import_csv(stack, account, list_id, names)
    card = card_of(page)
    await expect(card.get_by_test_id("progress-count")).to_have_text("2/5 videos")
    await stack.media.wait_requested(names[2])
    await page.reload()  # the override is in the URL: still polling after a reload
    await expect(card.get_by_test_id("progress-count")).to_have_text("2/5 videos")
    stack.media.release(*names[2:])
    await expect_completed(card, 5)
    await expect(status).to_have_attribute("data-transport", "polling")
    assert opened == [], opened


async def test_web_server_restart_mid_job_shows_the_banner_then_the_complete_state(
    stack: Stack, browser: BrowserContext
) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "Server restart")
    page = await open_logged_in(browser, stack, account, f"/lists/{list_id}")
    await wait_connected(page)
    names = stack.add_videos("restart", 10)
    stack.media.hold(*names[5:])
    await import_csv(stack, account, list_id, names)
    card = card_of(page)
    await expect(card.get_by_test_id("progress-count")).to_have_text("5/10 videos")
    banner = page.get_by_test_id("reconnect-banner")
    await expect(banner).to_be_hidden()

    async def while_down() -> None:
        await expect(banner).to_be_visible()
        await expect(banner).to_contain_text("Reconnecting...")
        await expect(banner.get_by_test_id("last-update")).to_contain_text("Last update at")
        await page.screenshot(path=str(SCREENSHOTS / "dashboard-reconnecting.png"))
        # videos 6 and 7 finish while no web process runs: their events reach nobody live
        stack.media.release(names[5], names[6])
        await stack.media.wait_requested(names[7])
        with pytest.raises(httpx.TransportError):
            await stack.client.get("/api/health")
        assert (await card.get_by_test_id("progress-count").text_content()) == "5/10 videos"

    await stack.restart_web(down=while_down)
    # reconnected and resumed: the missed events arrive, the banner goes
    await expect(card.get_by_test_id("progress-count")).to_have_text("7/10 videos", timeout=45_000)
    await expect(banner).to_be_hidden()
    stack.media.release(*names[7:])
    await expect_completed(card, 10)
    await expect_video_rows(page, 10, 10)


async def test_cancel_from_the_dashboard(stack: Stack, browser: BrowserContext) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "Cancel me")
    page = await open_logged_in(browser, stack, account, f"/lists/{list_id}")
    names = stack.add_videos("cancel", 6)
    stack.media.hold(names[2])
    await import_csv(stack, account, list_id, names)
    card = card_of(page)
    await expect(card.get_by_test_id("progress-count")).to_have_text("2/6 videos")
    # the cancel must have reached the server before the held video is let go, or the
    # worker (not yet told) goes on to the next video
    async with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/cancel")
    ) as answered:
        await card.get_by_role("button", name="Cancel").click()
    assert (await answered.value).ok
    stack.media.release(names[2])  # the worker stops before the next video
    await expect(card.locator(".progress")).to_have_attribute("data-status", "cancelled")
    await expect(card.get_by_test_id("status-badge")).to_have_text("Cancelled")
    await expect_bar(card, "cancelled", AMBER)
    await expect(card.get_by_role("button", name="Cancel")).to_have_count(0)
    assert names[3] not in stack.media.requested


async def test_import_a_csv_file_and_upload_video_files(
    stack: Stack, browser: BrowserContext, tmp_path: Path
) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "Files")
    page = await open_logged_in(browser, stack, account, f"/lists/{list_id}")

    # a CSV file through the file picker
    names = stack.add_videos("csvfile", 2)
    csv_file = tmp_path / "videos.csv"
    csv_file.write_text(stack.csv(names))
    await page.get_by_role("tab", name="CSV file").click()
    await page.get_by_label("Choose a CSV file").set_input_files(str(csv_file))
    await page.get_by_role("button", name="Import").click()
    await expect(page.get_by_role("status").filter(has_text="2 videos")).to_be_visible()
    await expect_completed(card_of(page), 2)

    # video files uploaded from the browser
    uploads = []
    for i in (1, 2, 3):
        path = tmp_path / f"upload-{i}.mp4"
        path.write_bytes(stack.sample)
        uploads.append(str(path))
    await page.get_by_role("tab", name="Upload videos").click()
    await page.get_by_label("Video files").set_input_files(uploads)
    await page.get_by_role("button", name="Upload").click()
    await expect(page.get_by_role("status").filter(has_text="3 videos")).to_be_visible()
    cards = page.get_by_test_id("job-card")
    await expect(cards).to_have_count(2)
    await expect_completed(cards.first, 3)  # newest first
    await expect_video_rows(page, 5, 5)


async def test_a_refused_token_sends_the_user_to_the_login_page(
    stack: Stack, browser: BrowserContext
) -> None:
    account = await stack.account()
    forged = Account(account.username, account.password, account.user_id, "not-a-valid-token")
    page = await open_logged_in(browser, stack, forged, "/lists")
    await page.wait_for_url(re.compile(r"/login\?next=%2Flists"))
    await expect(page.get_by_text("Your session has expired")).to_be_visible()
    # and logging in again brings the user back where they were
    await page.get_by_label("Username").fill(account.username)
    await page.get_by_label("Password").fill(account.password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(re.compile(r"/lists$"))
    await wait_connected(page)


async def open_refused_with_its_401_held(
    stack: Stack, browser: BrowserContext
) -> tuple[Account, Page, Callable[[], Awaitable[None]]]:
    """A tab opened on /lists with a forged token, sent to the login page by the socket's
    refusal while the REST call's 401 is held back; and the call that lets it through
    and waits until the page has handled it."""
    account = await stack.account()
    forged = Account(account.username, account.password, account.user_id, "not-a-valid-token")
    held: list[Route] = []

    async def hold_the_forged_tokens_calls(route: Route) -> None:
        if route.request.headers.get("authorization") == f"Bearer {forged.token}":
            held.append(route)
        else:
            await route.continue_()

    await browser.route(re.compile(r"/api/"), hold_the_forged_tokens_calls)
    page = await open_logged_in(browser, stack, forged, "/lists")
    await page.wait_for_url(re.compile(r"/login\?next=%2Flists"))
    assert held, "the list request was never made"

    async def release() -> None:
        async with page.expect_response(re.compile(r"/api/lists")) as answer:
            for route in held:
                await route.continue_()
        response = await answer.value
        assert response.status == 401
        await response.finished()
        # let the page's handlers of that answer run (two frames)
        await page.evaluate(
            "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
        )

    return account, page, release


async def log_in_on_the_login_page(page: Page, account: Account) -> None:
    await page.get_by_label("Username").fill(account.username)
    await page.get_by_label("Password").fill(account.password)
    await page.get_by_role("button", name="Log in").click()


async def test_a_second_refusal_on_the_login_page_keeps_the_way_back(
    stack: Stack, browser: BrowserContext
) -> None:
    account, page, release_the_401 = await open_refused_with_its_401_held(stack, browser)
    await release_the_401()
    assert re.search(r"/login\?next=%2Flists$", page.url), page.url
    await log_in_on_the_login_page(page, account)
    await page.wait_for_url(re.compile(r"/lists$"), timeout=5_000)
    await wait_connected(page)


async def test_a_late_refusal_of_the_old_token_does_not_log_the_new_session_out(
    stack: Stack, browser: BrowserContext
) -> None:
    account, page, release_the_401 = await open_refused_with_its_401_held(stack, browser)
    await log_in_on_the_login_page(page, account)
    await page.wait_for_url(re.compile(r"/lists$"), timeout=5_000)
    await wait_connected(page)
    new_token = await page.evaluate("() => localStorage.getItem('reeltrack.token')")
    assert new_token

    await release_the_401()
    assert page.url.endswith("/lists")
    assert await page.evaluate("() => localStorage.getItem('reeltrack.token')") == new_token
    await expect(page.get_by_text("Your session has expired")).to_have_count(0)
    await wait_connected(page)
