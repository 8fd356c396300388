"""Fixtures of the browser end-to-end tests: one real stack per module (web process +
RQ worker + a private Redis + the session's PostgreSQL database) and a fresh headless
Chromium profile per test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from playwright.async_api import BrowserContext, ConsoleMessage, Page, Playwright, async_playwright
from playwright.async_api import expect as pw_expect

from tests.e2e.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Stack,
    fresh_profile_dir,
    remove_dir,
    running_stack,
)

pw_expect.set_options(timeout=20_000)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[Any]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="module")
async def stack(
    pg_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """One web process, one worker, a private Redis, the session's database."""
    async with running_stack(pg_database_url, tmp_path_factory.mktemp("e2e")) as the_stack:
        yield the_stack


@pytest.fixture(autouse=True)
async def _release_media(stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Never leave the worker stuck on a held download; print the processes' output when
    a test failed."""
    yield
    stack.media.release_all()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("---- web output ----\n" + stack.web.output()[-6000:])
        print("---- worker output ----\n" + stack.worker.output()[-6000:])


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as p:
        yield p


@pytest.fixture
async def browser(
    playwright: Playwright, request: pytest.FixtureRequest
) -> AsyncIterator[BrowserContext]:
    """Debian's Chromium, headless, with a fresh profile (never a downloaded browser).
    The browser console is printed when the test fails."""
    profile = fresh_profile_dir()
    context = await playwright.chromium.launch_persistent_context(
        profile,
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900},
    )
    console: list[str] = []

    def watch(page: Page) -> None:
        def log(msg: ConsoleMessage) -> None:
            console.append(f"[{msg.type}] {msg.text}")

        page.on("console", log)
        page.on("pageerror", lambda exc: console.append(f"[pageerror] {exc}"))

    context.on("page", watch)
    for page in context.pages:
        watch(page)
    try:
        yield context
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print("---- browser console ----\n" + "\n".join(console[-200:]))
        with contextlib.suppress(Exception):
            await context.close()
        remove_dir(profile)
