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

from tests.conftest import live_config
from tests.e2e.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MediaOrigin,
    Stack,
    check_prerequisites,
    fresh_profile_dir,
    remove_dir,
)
from tests.support.live import LiveServer
from tests.support.media import make_video
from tests.support.services import RedisServer
from tests.support.workers import WorkerProcess

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
    """Web + worker on a PRIVATE Redis (so the worker takes no other test's jobs) and the
    session PostgreSQL database; the worker may fetch from loopback (the media origin)."""
    check_prerequisites()
    base = tmp_path_factory.mktemp("e2e")
    redis = RedisServer().start()
    media = await MediaOrigin().start()
    config = live_config(base, pg_database_url, redis.url, import_allow_private_hosts=True)
    web = LiveServer(config, name="e2e-web")
    worker: WorkerProcess | None = None
    try:
        await web.astart()
        worker = WorkerProcess(web.config, name="e2e-worker")
        sample = make_video(base / "sample.mp4", width=64, height=48, fps=10, seconds=1.0)
        the_stack = Stack(
            web=web, worker=worker, redis_url=redis.url, media=media, sample=sample.read_bytes()
        )
        yield the_stack
        await the_stack.client.aclose()
    finally:
        await media.stop()
        if worker is not None:
            worker.close()
        web.close()
        redis.stop()


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
