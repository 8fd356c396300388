"""What the browser tests do on the dashboard and check on it (shared by the modules)."""

from __future__ import annotations

import json
import re

from playwright.async_api import BrowserContext, Locator, Page, expect

from tests.e2e.support import GREEN, Account, Stack


async def wait_connected(page: Page) -> None:
    """Until the page's connection status says the live connection is up."""
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-connected", "true"
    )


async def login(page: Page, stack: Stack, account: Account, path: str) -> None:
    """Log in through the login page and land on ``path`` (which may carry a query)."""
    target, _, query = path.partition("?")
    extra = f"&{query}" if query else ""
    await page.goto(f"{stack.url}/login?next={target}{extra}")
    await page.get_by_label("Username").fill(account.username)
    await page.get_by_label("Password").fill(account.password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(re.compile(re.escape(target) + r"(\?.*)?$"))


async def open_logged_in(
    browser: BrowserContext,
    stack: Stack,
    account: Account,
    path: str,
    websockets: list[str] | None = None,
    errors: list[str] | None = None,
) -> Page:
    """A new tab on ``path`` with ``account``'s session already stored (what the login
    page stores; the login form itself is exercised by the first test).  The URLs of
    the WebSockets the tab opens are appended to ``websockets``."""
    user = json.dumps({"id": account.user_id, "username": account.username})
    await browser.add_init_script(
        # about:blank (a new tab before its first load) has no localStorage: skip it there
        "try { if (!localStorage.getItem('reeltrack.token')) {"
        f"localStorage.setItem('reeltrack.token', {json.dumps(account.token)});"
        f"localStorage.setItem('reeltrack.user', {json.dumps(user)});"
        "} } catch (e) {}"
    )
    page = await browser.new_page()
    if errors is not None:
        watch_errors(page, errors)
    if websockets is not None:
        page.on("websocket", lambda ws: websockets.append(ws.url))
    await page.goto(f"{stack.url}{path}")
    return page


def watch_errors(page: Page, errors: list[str]) -> None:
    """Append every console error (a failed resource load included) and uncaught
    exception of ``page`` to ``errors``."""
    page.on(
        "console",
        lambda m: errors.append(f"{m.text} @ {m.location}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))


async def assert_no_horizontal_scroll(page: Page) -> None:
    widths = await page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"page is {widths[0]} px wide in a {widths[1]} px window"


def job_card(page: Page, job_id: str) -> Locator:
    return page.locator(f'[data-testid="job-card"][data-job-id="{job_id}"]')


async def import_csv(stack: Stack, account: Account, list_id: str, names: list[str]) -> str:
    """Start an import over REST (the UI path is covered by the first test)."""
    r = await stack.client.post(
        f"/api/lists/{list_id}/videos/bulk",
        content=stack.csv(names),
        headers={"Authorization": f"Bearer {account.token}", "Content-Type": "text/csv"},
    )
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


def card_of(page: Page) -> Locator:
    cards = page.get_by_test_id("job-card")
    return cards.first


async def expect_bar(card: Locator, status: str, color: str) -> None:
    """Until ``card``'s bar is in ``status`` and painted ``color``.  Retried like every
    expect: a card re-rendered (moved to the finished jobs, refreshed from the API) is
    a new element, and the style of the one it replaced reads as ''."""
    await expect(card.locator(".progress")).to_have_attribute("data-status", status)
    await expect(card.locator(".progress-fill")).to_have_css("background-color", color)


async def expect_completed(card: Locator, total: int) -> None:
    await expect(card.locator(".progress")).to_have_attribute("data-status", "completed")
    await expect(card.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    noun = "video" if total == 1 else "videos"
    await expect(card.get_by_test_id("progress-count")).to_have_text(f"{total}/{total} {noun}")
    await expect(card.get_by_test_id("status-badge")).to_have_text("Completed")
    await expect_bar(card, "completed", GREEN)


async def expect_video_rows(page: Page, total: int, ready: int) -> None:
    rows = page.get_by_test_id("video-row")
    await expect(rows).to_have_count(total)
    await expect(page.locator('[data-testid="video-row"][data-status="ready"]')).to_have_count(
        ready
    )
