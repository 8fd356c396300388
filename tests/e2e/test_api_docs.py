"""/docs in Chromium with every other host unreachable: Swagger UI renders the API."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.async_api import BrowserContext, Route, expect

from tests.e2e.support import Stack


async def test_docs_render_the_operations_offline(stack: Stack, browser: BrowserContext) -> None:
    origin = stack.web.url
    refused: list[str] = []

    async def offline(route: Route) -> None:
        url = route.request.url
        if url.startswith(origin + "/") or urlsplit(url).scheme in ("data", "blob"):
            await route.continue_()
        else:  # what a machine without internet would do with a CDN
            refused.append(url)
            await route.abort("internetdisconnected")

    await browser.route("**/*", offline)
    page = await browser.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security" in msg.text else None,
    )
    await page.goto(origin + "/docs")
    # operations of every tag, the upload's multipart body among them
    await expect(
        page.locator(".opblock-summary-path", has_text="/api/lists/{list_id}/videos/upload")
    ).to_be_visible(timeout=15000)
    for path in ("/api/auth/login", "/api/jobs", "/api/videos/{video_id}/thumbnail"):
        await expect(page.locator(".opblock-summary-path", has_text=path).first).to_be_visible()
    await expect(page.locator(".errors-wrapper")).to_have_count(0)
    assert refused == [], refused
    assert violations == [], violations
