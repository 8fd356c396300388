"""Fetching (paths, URL policy, size cap, timeout), probing and thumbnails."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

import tasks.media as media
from models.entities import Video, VideoStatus
from models.jobs import NewVideo
from quart_app.core.config import Config
from tasks.media import BlockedAddress, MediaError, fetch, process_media
from tasks.processing import run_job
from tests.support.builders import seed_job
from tests.support.media import make_video
from tests.support.services import start_app


@pytest.fixture
async def origin(samples: Path) -> AsyncIterator[str]:
    """A local HTTP origin: /video (a sample), /big (10 KB), /chunked (10 KB, no
    Content-Length), /slow (2 s), /to/<host> (302 to http://<host>/video)."""
    body = (samples / "v0.mp4").read_bytes()

    async def video(_r: web.Request) -> web.Response:
        return web.Response(body=body, content_type="video/mp4")

    async def big(_r: web.Request) -> web.Response:
        return web.Response(body=b"x" * 10_000)

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(10):
            await resp.write(b"y" * 1000)
        await resp.write_eof()
        return resp

    async def slow(_r: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(body=body)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://{request.match_info['host']}/video")

    app = web.Application()
    app.router.add_get("/video", video)
    app.router.add_get("/big", big)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/slow", slow)
    app.router.add_get("/to/{host}", redirect)
    runner, port = await start_app(app)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_import_and_upload_paths_cannot_escape(
    config: Callable[..., Config], samples: Path, tmp_path: Path
) -> None:
    cfg = config()
    (cfg.import_root / "ok.mp4").write_bytes((samples / "v0.mp4").read_bytes())
    assert (await fetch("import:ok.mp4", cfg)).path.name == "ok.mp4"
    assert (await fetch("ok.mp4", cfg)).path.name == "ok.mp4"  # bare path = import
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"secret")
    os.symlink(outside, cfg.import_root / "link.mp4")
    for source in (
        "import:../secret.mp4",
        "import:link.mp4",  # a symlink leading out
        f"import:{outside}",
        "upload:../secret.mp4",
        "import:missing.mp4",
        "file:///etc/passwd",
        "ftp://example.com/a.mp4",
    ):
        with pytest.raises(MediaError):
            await fetch(source, cfg)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x.mp4",
        "http://localhost:9/x.mp4",
        "http://[::1]:9/x.mp4",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/x.mp4",
        "http://[::ffff:127.0.0.1]/x.mp4",
    ],
)
async def test_private_targets_are_refused_by_default(
    config: Callable[..., Config], url: str
) -> None:
    with pytest.raises(MediaError, match="refused"):
        await fetch(url, config())


async def test_resolver_refuses_names_resolving_to_private_addresses() -> None:
    with pytest.raises(BlockedAddress):
        await media._GuardedResolver().resolve("localhost", 80)


async def test_redirect_to_a_refused_address_is_refused(
    config: Callable[..., Config], origin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 127.0.0.1 plays the public origin; 127.0.0.2 the internal target
    monkeypatch.setattr(media, "address_allowed", lambda a: a == "127.0.0.1")
    cfg = config()
    port = origin.split(":")[1]
    with pytest.raises(MediaError, match="refused: 127.0.0.2"):
        await fetch(f"http://{origin}/to/127.0.0.2:{port}", cfg)


async def test_size_cap_and_timeout(config: Callable[..., Config], origin: str) -> None:
    cfg = config(import_allow_private_hosts=True, max_upload_bytes=5000, fetch_timeout=0.5)
    with pytest.raises(MediaError, match=r"^too large: 9.8 KiB, over 4.9 KiB$"):
        await fetch(f"http://{origin}/big", cfg)
    with pytest.raises(MediaError, match=r"^too large: over 4.9 KiB$"):
        await fetch(f"http://{origin}/chunked", cfg)
    with pytest.raises(MediaError, match="timed out"):
        await fetch(f"http://{origin}/slow", cfg)
    assert not list((cfg.media_root / "tmp").iterdir())  # partial downloads removed


async def test_url_processing_writes_thumbnail_and_removes_download(
    config: Callable[..., Config], origin: str
) -> None:
    cfg = config(import_allow_private_hosts=True)
    vid = uuid.uuid4()
    result = await process_media(f"http://{origin}/video", vid, cfg)
    assert result.info.video_codec == "h264" and result.info.audio_codec == "aac"
    assert result.thumbnail == f"thumbnails/{vid}.jpg"
    assert (cfg.media_root / result.thumbnail).read_bytes()[:2] == b"\xff\xd8"
    assert not list((cfg.media_root / "tmp").iterdir())


# -- containers that would open further inputs -----------------------------------------------
def _hls(entry: str) -> str:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1,\n{entry}\n#EXT-X-ENDLIST\n"


async def test_playlists_and_concat_lists_end_failed_and_single_files_process(
    db: str, config: Callable[..., Config], samples: Path, tmp_path: Path
) -> None:
    """A row names ONE file: a playlist or concat list in it that points at a real video
    elsewhere (outside every root, by path or file://, or beside it) must not be read."""
    cfg = config()
    # MPEG-TS: what HLS segments are, so an unrestricted FFmpeg decodes it fully
    outside = make_video(tmp_path / "outside" / "secret.ts", container="mpegts")
    uploads = cfg.media_root / "uploads" / "u1"
    uploads.mkdir(parents=True)
    (uploads / "abs.m3u8").write_text(_hls(str(outside)))
    (uploads / "url.m3u8").write_text(_hls(f"file://{outside}"))
    (cfg.import_root / "list.m3u8").write_text(_hls(str(outside)))
    # ffconcat's own "safe" mode refuses absolute paths, but not a file beside the list
    (cfg.import_root / "inner").mkdir()
    (cfg.import_root / "inner" / "other.mp4").write_bytes((samples / "v1.webm").read_bytes())
    (cfg.import_root / "list.ffconcat").write_text("ffconcat version 1.0\nfile 'inner/other.mp4'\n")
    (cfg.import_root / "abs.mp4").write_text(f"ffconcat version 1.0\nfile '{outside}'\n")
    bad = {
        "HLS absolute": "upload:uploads/u1/abs.m3u8",
        "HLS file url": "upload:uploads/u1/url.m3u8",
        "HLS import": "import:list.m3u8",
        "concat beside": "import:list.ffconcat",
        "concat absolute": "import:abs.mp4",
    }
    good = {}
    for name in ("v0.mp4", "v1.webm", "v3.mkv", "v2.mp4"):
        (cfg.import_root / name).write_bytes((samples / name).read_bytes())
        good[name] = f"import:{name}"
    items = [NewVideo(source=src, title=title) for title, src in {**bad, **good}.items()]
    _user, job = await seed_job(items)
    assert await run_job(job.id, cfg) == "completed"
    videos = {v.title: v for v in await Video.filter(job_id=job.id)}
    for title in bad:
        v = videos[title]
        assert v.status == VideoStatus.FAILED, (title, v.status, v.video_codec)
        assert v.error == media.UNSUPPORTED_CONTAINER, (title, v.error)
        assert v.thumbnail_path is None
    for title in good:
        v = videos[title]
        assert v.status == VideoStatus.READY, (title, v.error)
        assert v.video_codec and v.width and v.thumbnail_path
    assert "playlists" in media.UNSUPPORTED_CONTAINER and str(tmp_path) not in str(
        [v.error for v in videos.values()]
    )
