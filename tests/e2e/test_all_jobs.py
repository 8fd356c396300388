"""The all-jobs page, the job page and the list page in Chromium against the real stack:
live jobs of several lists at once, finished jobs found again long after the socket's
snapshot window, filters and search, retry, delete, cancel, narrow and wide layouts,
dark mode, and no console error anywhere.

"Later" is made by backdating the job's rows in the test database (its timestamps and
its events' times move 10 minutes into the past); no clock is faked.
"""

from __future__ import annotations

import re
import uuid

from playwright.async_api import BrowserContext, expect

from tests.e2e.pages import (
    assert_no_horizontal_scroll,
    expect_completed,
    import_csv,
    job_card,
    open_logged_in,
    wait_connected,
)
from tests.e2e.support import SCREENSHOTS, Account, Stack
from tests.support.waiting import wait_for

#: the page background of web/src/styles.css, light and dark
LIGHT_BG = "rgb(249, 250, 251)"
DARK_BG = "rgb(15, 23, 42)"


async def finished_job(stack: Stack, account: Account, list_id: str, names: list[str]) -> str:
    """Run an import to its end (over REST) and return its job id."""
    job_id = await import_csv(stack, account, list_id, names)

    async def done() -> bool:
        return (await stack.job(account, job_id))["status"] in {"completed", "failed"}

    await wait_for(done, 30, what=f"job {job_id} to finish")
    return job_id


async def test_all_jobs_page_shows_live_jobs_of_two_lists_at_once(
    stack: Stack, browser: BrowserContext
) -> None:
    account = await stack.account()
    alpha = await stack.create_list(account, "Alpha trip")
    beta = await stack.create_list(account, "Beta talks")
    errors: list[str] = []
    page = await open_logged_in(browser, stack, account, "/jobs", errors=errors)
    await wait_connected(page)
    a_names = stack.add_videos("alpha", 4)
    b_names = stack.add_videos("beta", 6)
    stack.media.hold(*a_names[2:], *b_names[3:])
    job_a = await import_csv(stack, account, alpha, a_names)
    job_b = await import_csv(stack, account, beta, b_names)

    # one worker: Alpha's job runs (held at its 3rd video) while Beta's waits its turn
    active = page.get_by_test_id("active-jobs")
    card_a = active.locator(f'[data-testid="job-card"][data-job-id="{job_a}"]')
    card_b = active.locator(f'[data-testid="job-card"][data-job-id="{job_b}"]')
    await expect(card_a.get_by_test_id("progress-count")).to_have_text("2/4 videos")
    await expect(card_b.get_by_test_id("status-badge")).to_have_text("Pending")
    await expect(card_b.get_by_test_id("progress-count")).to_have_text("0/6 videos")
    await expect(card_a).to_contain_text("CSV import · 4 videos")
    await expect(card_a.get_by_role("link", name="Alpha trip")).to_be_visible()
    await expect(card_b.get_by_role("link", name="Beta talks")).to_be_visible()
    await expect(card_a.get_by_role("button", name="Cancel")).to_be_visible()
    # newest first among the active jobs
    ids = await active.get_by_test_id("job-card").evaluate_all("cs => cs.map(c => c.dataset.jobId)")
    assert ids == [job_b, job_a], ids

    stack.media.release(*a_names[2:])
    finished = page.get_by_test_id("finished-jobs")
    done_a = finished.locator(f'[data-testid="job-card"][data-job-id="{job_a}"]')
    await expect_completed(done_a, 4)  # moved down to the finished ones, live
    await expect(done_a.get_by_test_id("job-finished")).to_be_visible()
    await expect(card_b.get_by_test_id("progress-count")).to_have_text("3/6 videos")
    await expect(card_b.get_by_test_id("status-badge")).to_have_text("Processing")
    stack.media.release(*b_names[3:])
    await expect_completed(finished.locator(f'[data-testid="job-card"][data-job-id="{job_b}"]'), 6)
    await expect(active).to_contain_text("No job is running.")
    await assert_no_horizontal_scroll(page)
    assert errors == [], errors


async def test_a_finished_job_is_still_listed_after_a_reload_long_after_it_ended(
    stack: Stack, browser: BrowserContext
) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "Old news")
    page = await open_logged_in(browser, stack, account, "/jobs")
    await wait_connected(page)
    names = stack.add_videos("old", 3)
    job_id = await import_csv(stack, account, list_id, names)
    await expect_completed(job_card(page, job_id), 3)

    # 10 minutes ago, as the database sees it: past the 5-minute snapshot window
    await stack.backdate_job(job_id, 600)
    await page.reload()
    await wait_connected(page)
    card = job_card(page, job_id)
    await expect_completed(card, 3)
    await expect(card).to_contain_text("Old news")
    await expect(card.get_by_test_id("job-finished")).to_be_visible()
    # and its page shows the same final state and the whole timeline
    await card.get_by_role("link", name=re.compile("CSV import")).click()
    await page.wait_for_url(re.compile(f"/jobs/{job_id}$"))
    await expect(page.get_by_test_id("status-badge")).to_have_text("Completed")
    await expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    await expect(page.get_by_test_id("timeline").locator("tbody tr")).to_have_count(5)


async def test_filter_by_status_and_list_and_search(stack: Stack, browser: BrowserContext) -> None:
    account = await stack.account()
    cats = await stack.create_list(account, "Cats")
    dogs = await stack.create_list(account, "Dogs")
    cat_ok = await finished_job(stack, account, cats, stack.add_videos("cat", 2))
    cat_bad = await finished_job(stack, account, cats, stack.add_videos("catbad", 2, broken={1, 2}))
    dog_ok = await finished_job(stack, account, dogs, stack.add_videos("dog", 1))
    page = await open_logged_in(browser, stack, account, "/jobs")
    finished = page.get_by_test_id("finished-jobs")
    cards = finished.get_by_test_id("job-card")

    async def shown() -> set[str]:
        return set(await cards.evaluate_all("cs => cs.map(c => c.dataset.jobId)"))

    await expect(cards).to_have_count(3)
    await page.get_by_label("List").select_option(label="Cats")
    await expect(cards).to_have_count(2)
    assert await shown() == {cat_ok, cat_bad}
    await page.get_by_label("Status").select_option(label="Failed")
    await expect(cards).to_have_count(1)
    assert await shown() == {cat_bad}
    await expect(cards.first.get_by_test_id("status-badge")).to_have_text("Failed")
    await expect(cards.first.get_by_test_id("progress-message")).to_have_text("All 2 videos failed")
    # the filters are in the address: a reload keeps them
    await page.reload()
    await expect(cards).to_have_count(1)
    await page.get_by_label("Status").select_option(label="All")
    await page.get_by_label("List").select_option(label="All lists")
    await page.get_by_label("Search").fill("dOgS")  # the list's name, any case
    await expect(cards).to_have_count(1)
    assert await shown() == {dog_ok}
    await page.get_by_label("Search").fill("no such thing")
    await expect(finished).to_contain_text("No job matches these filters.")


async def test_retry_of_a_failed_video_that_then_succeeds(
    stack: Stack, browser: BrowserContext
) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "Flaky origin")
    names = stack.add_videos("flaky", 3)
    flaky = stack.media.files.pop(names[1])  # the origin answers 404 for it at first
    job_id = await finished_job(stack, account, list_id, names)
    errors: list[str] = []
    page = await open_logged_in(browser, stack, account, f"/jobs/{job_id}", errors=errors)
    await expect(page.get_by_test_id("progress-message")).to_have_text(
        "2 of 3 videos ready, 1 failed"
    )
    failures = page.get_by_test_id("failures")
    await expect(failures).to_contain_text("flaky-02")
    retry = page.get_by_role("button", name="Retry failed (1)")
    await expect(retry).to_be_visible()
    await wait_connected(page)
    await page.screenshot(path=str(SCREENSHOTS / "job-retry.png"), full_page=True)

    stack.media.files[names[1]] = flaky  # the origin works now
    await retry.click()
    await page.wait_for_url(re.compile(r"/jobs/(?!" + job_id + r")[0-9a-f-]{36}$"))
    await expect(page.get_by_test_id("job-name")).to_contain_text("Retry of")
    await expect_completed(page.locator("main"), 1)
    videos = await stack.videos(account, list_id)
    assert sorted(v["status"] for v in videos) == ["ready", "ready", "ready"], videos
    # the old job has nothing left to retry
    await page.goto(f"{stack.url}/jobs/{job_id}")
    await expect(page.get_by_test_id("status-badge")).to_have_text("Completed")
    await expect(page.get_by_role("button", name=re.compile("Retry failed"))).to_have_count(0)
    assert [e for e in errors if "409" not in e] == [], errors


async def test_delete_a_job_after_confirming(stack: Stack, browser: BrowserContext) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "Throwaway")
    job_id = await finished_job(stack, account, list_id, stack.add_videos("gone", 1))
    page = await open_logged_in(browser, stack, account, "/jobs")
    card = job_card(page, job_id)
    await expect_completed(card, 1)

    page.once("dialog", lambda dialog: dialog.dismiss())
    await card.get_by_role("button", name="Delete").click()
    await expect(card).to_have_count(1)  # dismissed: still there
    page.once("dialog", lambda dialog: dialog.accept())
    await card.get_by_role("button", name="Delete").click()
    await expect(card).to_have_count(0)
    r = await stack.client.get(
        f"/api/jobs/{job_id}", headers={"Authorization": f"Bearer {account.token}"}
    )
    assert r.status_code == 404
    await page.reload()
    await expect(page.get_by_test_id("finished-jobs")).to_contain_text("No finished job yet.")
    # its page says so (no raw error)
    await page.goto(f"{stack.url}/jobs/{job_id}")
    await expect(page.get_by_role("heading", name="Job not found")).to_be_visible()


async def test_cancel_several_selected_jobs_at_once(stack: Stack, browser: BrowserContext) -> None:
    """POST /api/jobs/cancel from the page: tick two of three active jobs (one running,
    one pending), confirm, read what each got; the third goes on to the end."""
    account = await stack.account()
    list_id = await stack.create_list(account, "Too many")
    errors: list[str] = []
    page = await open_logged_in(browser, stack, account, "/jobs", errors=errors)
    await wait_connected(page)
    first = stack.add_videos("many-a", 4)
    stack.media.hold(first[1])
    running = await import_csv(stack, account, list_id, first)
    pending = await import_csv(stack, account, list_id, stack.add_videos("many-b", 2))
    other = await import_csv(stack, account, list_id, stack.add_videos("many-c", 2))
    active = page.get_by_test_id("active-jobs")
    for job_id in (running, pending, other):
        await expect(
            active.locator(f'[data-testid="job-card"][data-job-id="{job_id}"]')
        ).to_have_count(1)
    await expect(job_card(page, running).get_by_test_id("progress-count")).to_have_text(
        "1/4 videos"
    )
    bar = page.get_by_test_id("selection-bar")
    cancel = bar.get_by_role("button", name=re.compile(r"^Cancel selected"))
    await expect(cancel).to_have_text("Cancel selected (0)")
    await expect(cancel).to_be_disabled()
    await bar.get_by_label("Select all").check()
    await expect(cancel).to_have_text("Cancel selected (3)")
    await bar.get_by_label("Select all").uncheck()
    for job_id in (running, pending):
        await job_card(page, job_id).get_by_role("checkbox").check()
    await expect(cancel).to_have_text("Cancel selected (2)")

    page.once("dialog", lambda dialog: dialog.dismiss())
    await cancel.click()
    await expect(cancel).to_have_text("Cancel selected (2)")  # dismissed: nothing sent
    page.once("dialog", lambda dialog: dialog.accept())
    await cancel.click()
    await expect(bar.get_by_test_id("selection-outcome")).to_have_text(
        "1 job cancelled, 1 job stopping before its next video."
    )
    await expect(cancel).to_have_text("Cancel selected (0)")
    stack.media.release(first[1])
    finished = page.get_by_test_id("finished-jobs")
    for job_id in (running, pending):
        await expect(
            finished.locator(f'[data-testid="job-card"][data-job-id="{job_id}"]').get_by_test_id(
                "status-badge"
            )
        ).to_have_text("Cancelled")
    await expect_completed(finished.locator(f'[data-testid="job-card"][data-job-id="{other}"]'), 2)
    for job_id, status in ((running, "cancelled"), (pending, "cancelled"), (other, "completed")):
        assert (await stack.job(account, job_id))["status"] == status
    assert errors == []


async def test_cancel_leaves_no_pending_video(stack: Stack, browser: BrowserContext) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "Stop it")
    page = await open_logged_in(browser, stack, account, "/jobs")
    await wait_connected(page)
    names = stack.add_videos("stop", 6)
    stack.media.hold(names[2])
    job_id = await import_csv(stack, account, list_id, names)
    card = job_card(page, job_id)
    await expect(card.get_by_test_id("progress-count")).to_have_text("2/6 videos")
    await card.get_by_role("button", name="Cancel").click()
    stack.media.release(names[2])
    await expect(card.get_by_test_id("status-badge")).to_have_text("Cancelled")
    await expect(card.get_by_role("button", name="Cancel")).to_have_count(0)
    videos = await stack.videos(account, list_id)
    statuses = sorted(v["status"] for v in videos)
    assert "pending" not in statuses and "processing" not in statuses, statuses
    assert statuses.count("cancelled") >= 3, statuses
    # the list page shows them as cancelled, filterable
    await page.goto(f"{stack.url}/lists/{list_id}")
    await page.get_by_label("Video status").select_option(label="Cancelled")
    await expect(page.get_by_test_id("video-row")).to_have_count(statuses.count("cancelled"))


async def test_a_missing_list_shows_a_not_found_page(stack: Stack, browser: BrowserContext) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "Soon gone")
    r = await stack.client.delete(
        f"/api/lists/{list_id}", headers={"Authorization": f"Bearer {account.token}"}
    )
    assert r.status_code == 204, r.text
    page = await open_logged_in(browser, stack, account, f"/lists/{list_id}")
    await expect(page.get_by_role("heading", name="List not found")).to_be_visible()
    await expect(page.get_by_label("CSV text")).to_have_count(0)
    await expect(page.get_by_test_id("video-table")).to_have_count(0)
    await page.goto(f"{stack.url}/lists/{uuid.uuid4()}")
    await expect(page.get_by_role("heading", name="List not found")).to_be_visible()


async def test_every_page_fits_375_and_1280_px_in_light_and_dark_without_console_errors(
    stack: Stack, browser: BrowserContext
) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "A list with a rather long name, to wrap")
    job_id = await finished_job(stack, account, list_id, stack.add_videos("fit", 3, broken={2}))
    errors: list[str] = []
    page = await open_logged_in(browser, stack, account, "/jobs", errors=errors)
    await expect(job_card(page, job_id)).to_be_visible()
    paths = ["/jobs", "/lists", f"/lists/{list_id}", f"/jobs/{job_id}", "/no/such/page"]
    for width in (375, 1280):
        await page.set_viewport_size({"width": width, "height": 800})
        for scheme, background in (("light", LIGHT_BG), ("dark", DARK_BG)):
            await page.emulate_media(color_scheme=scheme)
            for path in paths:
                await page.goto(f"{stack.url}{path}")
                await expect(page.locator("main h1")).to_be_visible()
                await page.wait_for_load_state("networkidle")
                await assert_no_horizontal_scroll(page)
                got = await page.evaluate("() => getComputedStyle(document.body).backgroundColor")
                assert got == background, (width, scheme, path, got)
    # a favicon is served (no 404 in the console on any page load)
    r = await stack.client.get("/favicon.svg")
    assert r.status_code == 200 and b"<svg" in r.content
    assert errors == [], errors


async def test_keyboard_tabs_and_one_live_region(stack: Stack, browser: BrowserContext) -> None:
    account = await stack.account()
    list_id = await stack.create_list(account, "Keys")
    page = await open_logged_in(browser, stack, account, f"/lists/{list_id}")
    paste = page.get_by_role("tab", name="Paste CSV")
    await paste.focus()
    await page.keyboard.press("ArrowRight")
    csv_tab = page.get_by_role("tab", name="CSV file")
    await expect(csv_tab).to_be_focused()
    await expect(csv_tab).to_have_attribute("aria-selected", "true")
    panel_id = await csv_tab.get_attribute("aria-controls")
    await expect(page.locator(f"#{panel_id}")).to_have_attribute("role", "tabpanel")
    await expect(page.get_by_label("Choose a CSV file")).to_be_visible()
    await page.keyboard.press("End")
    await expect(page.get_by_role("tab", name="Upload videos")).to_be_focused()
    await page.keyboard.press("ArrowRight")  # wraps around
    await expect(paste).to_be_focused()
    await expect(page.locator("[aria-live]")).to_have_count(1)
    await expect(page.get_by_role("alert")).to_have_count(0)


async def test_screenshots_of_the_all_jobs_page_and_a_300_video_list(
    stack: Stack, browser: BrowserContext
) -> None:
    account = await stack.account()
    talks = await stack.create_list(account, "Conference talks")
    trips = await stack.create_list(account, "Holiday clips")
    big = await stack.create_list(account, "Archive (300 videos)")
    await finished_job(stack, account, trips, stack.add_videos("trip", 4, broken={3}))
    await finished_job(stack, account, talks, stack.add_videos("talk", 5))
    errors: list[str] = []
    page = await open_logged_in(browser, stack, account, "/jobs", errors=errors)
    await wait_connected(page)
    archive = stack.add_videos("archive", 300)
    big_job = await import_csv(stack, account, big, archive)
    await expect_completed(job_card(page, big_job), 300)
    live = stack.add_videos("live", 8)
    stack.media.hold(*live[3:])
    live_job = await import_csv(stack, account, talks, live)
    await expect(job_card(page, live_job).get_by_test_id("progress-count")).to_have_text(
        "3/8 videos"
    )
    for scheme in ("light", "dark"):
        await page.emulate_media(color_scheme=scheme)
        for width, suffix in ((1280, "wide"), (375, "375")):
            await page.set_viewport_size({"width": width, "height": 900})
            await assert_no_horizontal_scroll(page)
            await page.screenshot(
                path=str(SCREENSHOTS / f"all-jobs-{scheme}-{suffix}.png"), full_page=True
            )
    await page.emulate_media(color_scheme="light")
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.goto(f"{stack.url}/lists/{big}")
    rows = page.get_by_test_id("video-row")
    await expect(rows).to_have_count(50)  # one page, newest first
    first = await rows.first.text_content()
    assert first is not None and "archive-300" in first, first
    await wait_connected(page)
    thumbs = page.locator('[data-testid="video-row"] img')

    async def thumbnails_loaded() -> bool:
        return bool(
            await thumbs.evaluate_all(
                "is => is.slice(0, 8).every(i => i.complete && i.naturalWidth > 0)"
            )
        )

    await wait_for(thumbnails_loaded, 10, what="the first thumbnails to load")
    await page.screenshot(path=str(SCREENSHOTS / "list-300-videos.png"))
    await page.get_by_role("button", name="Load more videos").click()
    await expect(rows).to_have_count(100)
    height = await page.evaluate("() => document.scrollingElement.scrollHeight")
    assert height < 21_000, height
    await page.set_viewport_size({"width": 375, "height": 900})
    await assert_no_horizontal_scroll(page)
    stack.media.release(*live[3:])
    assert errors == [], errors
