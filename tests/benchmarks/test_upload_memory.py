"""The web process's memory during one 500 MB upload through a real ``reeltrack serve``:
the file streams to disk, so RSS stays flat (the figure is printed; run with ``-s``)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from quart_app.core.tokens import issue_token
from tests.benchmarks.common import rss_bytes
from tests.conftest import TEST_SECRET
from tests.support.builders import make_list, make_user
from tests.support.live import LiveServer

UPLOAD_BYTES = 500 * 1024 * 1024
#: what the web process may grow by while it takes the upload
RSS_GROWTH_LIMIT = 64 * 1024 * 1024


async def _body(boundary: str, size: int) -> AsyncIterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    block = os.urandom(1024 * 1024)
    for _ in range(size // len(block)):
        yield block
    yield f"\r\n--{boundary}--\r\n".encode()


async def test_a_500_mb_upload_keeps_the_web_process_small(
    db: str, start_live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    server = await start_live_server()
    assert server.proc is not None
    user = await make_user()
    vlist = await make_list(user)
    before = rss_bytes(server.proc.pid)
    peak = before
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            assert server.proc is not None
            peak = max(peak, rss_bytes(server.proc.pid))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    boundary = uuid.uuid4().hex
    headers = {
        "Authorization": f"Bearer {issue_token(TEST_SECRET, user.id)}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    async with httpx.AsyncClient(base_url=server.url, timeout=300) as http:
        r = await http.post(
            f"/api/lists/{vlist.id}/videos/upload",
            content=_body(boundary, UPLOAD_BYTES),
            headers=headers,
        )
    done.set()
    await sampler
    growth = peak - before
    print(
        f"\n500 MB upload: web RSS {before / 2**20:.1f} MB before, peak {peak / 2**20:.1f} MB "
        f"(+{growth / 2**20:.1f} MB)"
    )
    assert r.status_code == 202, r.text
    stored = list((server.config.media_root / "uploads").rglob("*big.mp4"))
    assert len(stored) == 1 and stored[0].stat().st_size == UPLOAD_BYTES
    assert growth < RSS_GROWTH_LIMIT
