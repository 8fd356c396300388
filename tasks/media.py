"""Fetching, probing and thumbnailing one video (DESIGN section 7).

* :func:`fetch` turns a Video.source into a local file: ``upload:<path under MEDIA_ROOT>``,
  ``import:<path under IMPORT_ROOT>`` (a bare relative path is an import path too) or an
  ``http(s)://`` URL downloaded with a size cap and a timeout.  Paths may not escape their
  root (``..`` or symlinks).  URLs whose host resolves to a private, loopback, link-local
  or otherwise non-global address are refused (also after each redirect) unless
  ``config.import_allow_private_hosts``.
* :func:`probe` reads the metadata with PyAV; :func:`make_thumbnail` writes a JPEG with
  PyAV's mjpeg encoder.  Both are blocking: call them through :func:`asyncio.to_thread`
  (:func:`process_media` does).  Both open the file through :func:`open_container`:
  FFmpeg may read only that one local file (protocol ``file``) with a demuxer of
  :data:`ALLOWED_DEMUXERS` - single-file containers.  Playlists and lists that open
  further inputs (HLS, DASH, concat, image sequences, SDP/RTSP ...) are refused, so a row
  can never make the worker read another file or URL than the one it names.

Every expected failure raises :class:`MediaError` with a message fit for the user.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import av
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from quart_app.core.byte_sizes import byte_size
from quart_app.core.config import Config

MAX_REDIRECTS = 5
THUMBNAIL_WIDTH = 320
CHUNK = 256 * 1024


class MediaError(Exception):
    """A video could not be fetched or decoded; ``str(exc)`` is the user-facing reason."""


class BlockedAddress(OSError):
    """A URL's host resolved to an address the config does not allow."""


@dataclass(frozen=True)
class FetchedFile:
    path: Path
    #: a temporary download that the caller deletes when done
    temporary: bool


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float | None
    width: int | None
    height: int | None
    fps: float | None
    video_codec: str | None
    audio_codec: str | None
    bitrate: int | None
    size_bytes: int

    def as_fields(self) -> dict[str, Any]:
        return asdict(self)


# -- addresses ----------------------------------------------------------------------------
#: IPv6 prefixes whose last 32 bits are an IPv4 address: NAT64's well-known prefix
#: and SIIT's IPv4-translated addresses (IPv4-mapped and -compatible are handled below)
_TRANSLATION_PREFIXES = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
)
#: NAT64's local-use prefix: where the IPv4 address sits depends on the operator's
#: prefix length, so it cannot be judged - always refused
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def _translated_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that an IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible
    (::a.b.c.d) or NAT64 (64:ff9b::/96, 64:ff9b:1::/48) address stands for."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.packed[:12] == bytes(12) or any(ip in net for net in _TRANSLATION_PREFIXES):
        return ipaddress.IPv4Address(ip.packed[12:])
    return None


def _ipv4_allowed(ip: ipaddress.IPv4Address) -> bool:
    return ip.is_global and not ip.is_multicast


def address_allowed(address: str) -> bool:
    """True for globally routable unicast addresses only.

    An IPv6 address that stands for an IPv4 address (mapped, compatible, translated,
    NAT64 64:ff9b::/96) is judged as that IPv4 address; NAT64's local-use prefix
    64:ff9b:1::/48 is refused; a tunnel address (6to4 2002::/16, Teredo 2001::/32)
    must be global and so must every IPv4 address inside it.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_allowed(ip)
    if ip in _LOCAL_NAT64:
        return False
    translated = _translated_ipv4(ip)
    if translated is not None:
        return _ipv4_allowed(translated)
    inner = [ip.sixtofour] if ip.sixtofour is not None else []
    inner += list(ip.teredo or ())
    return ip.is_global and not ip.is_multicast and all(_ipv4_allowed(v4) for v4 in inner)


class _GuardedResolver(ThreadedResolver):
    """Resolves like aiohttp's default and refuses when ANY address is not global (so a
    name that also resolves to an internal address cannot be used for rebinding)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        for r in results:
            if not address_allowed(r["host"]):
                raise BlockedAddress(f"{host} resolves to a non-public address ({r['host']})")
        return results


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _check_url(url: URL, allow_private: bool) -> None:
    if url.scheme not in {"http", "https"}:
        raise MediaError(f"unsupported URL scheme {url.scheme!r} (http or https only)")
    host = url.raw_host or ""
    if not host:
        raise MediaError("URL has no host")
    if allow_private:
        return
    # aiohttp skips the resolver for IP literals: check them here
    if _is_ip_literal(host) and not address_allowed(host.strip("[]")):
        raise MediaError(f"refused: {host} is not a public address")
    if host.lower() in {"localhost", "localhost.localdomain"} or host.lower().endswith(
        ".localhost"
    ):
        raise MediaError(f"refused: {host} is not a public address")


# -- fetching -----------------------------------------------------------------------------
def _inside(root: Path, relative: str) -> Path:
    """``root/relative`` resolved (symlinks followed); MediaError when it escapes root
    or is not a regular file."""
    root_resolved = root.resolve()
    candidate = Path(relative)
    if candidate.is_absolute():
        raise MediaError("absolute paths are not allowed")
    target = (root_resolved / candidate).resolve()
    if not target.is_relative_to(root_resolved):
        raise MediaError("path escapes its root directory")
    if not target.is_file():
        raise MediaError(f"file not found: {relative}")
    return target


async def fetch(source: str, config: Config) -> FetchedFile:
    """A local file for ``source``; raises :class:`MediaError` when it cannot be had."""
    if source.startswith("upload:"):
        return FetchedFile(_inside(config.media_root, source[len("upload:") :]), False)
    if source.startswith("import:"):
        return FetchedFile(_inside(config.import_root, source[len("import:") :]), False)
    lowered = source.lower()
    if lowered.startswith(("http://", "https://")):
        return FetchedFile(await download(source, config), True)
    if "://" in source:
        raise MediaError("unsupported source (http, https, upload or import path)")
    return FetchedFile(_inside(config.import_root, source), False)


async def download(url_text: str, config: Config) -> Path:
    """Download ``url_text`` into a temporary file under MEDIA_ROOT/tmp (caller deletes).

    Enforces ``max_upload_bytes`` (Content-Length and streamed size), ``fetch_timeout``
    (whole transfer), at most :data:`MAX_REDIRECTS` redirects, and the address policy
    on every hop.  Raises :class:`MediaError`.  (The video's time budget is enforced
    around it by :func:`process_media`.)
    """
    allow_private = config.import_allow_private_hosts
    try:
        url = URL(url_text)
    except ValueError as exc:
        raise MediaError(f"invalid URL: {exc}") from None
    tmp_dir = config.media_root / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # mkstemp files are 0600
    fd, name = tempfile.mkstemp(prefix="fetch-", suffix=".part", dir=tmp_dir)
    os.close(fd)
    path = Path(name)
    connector = aiohttp.TCPConnector(
        resolver=None if allow_private else _GuardedResolver(), limit=1, force_close=True
    )
    timeout = aiohttp.ClientTimeout(total=config.fetch_timeout)
    ok = False
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, trust_env=False
        ) as session:
            for _hop in range(MAX_REDIRECTS + 1):
                _check_url(url, allow_private)
                async with session.get(url, allow_redirects=False) as resp:
                    if resp.status in {301, 302, 303, 307, 308}:
                        location = resp.headers.get("Location")
                        if not location:
                            raise MediaError(f"HTTP {resp.status} without Location")
                        url = url.join(URL(location))
                        continue
                    if resp.status != 200:
                        raise MediaError(f"HTTP {resp.status} {resp.reason or ''}".strip())
                    length = resp.content_length
                    limit = config.max_upload_bytes
                    if length is not None and length > limit:
                        raise MediaError(f"too large: {byte_size(length)}, over {byte_size(limit)}")
                    size = 0
                    # local-disk writes of 256 KiB chunks: not worth a thread hop each
                    with path.open("wb") as out:  # noqa: ASYNC230
                        async for chunk in resp.content.iter_chunked(CHUNK):
                            size += len(chunk)
                            if size > limit:
                                raise MediaError(f"too large: over {byte_size(limit)}")
                            out.write(chunk)
                    ok = True
                    return path
            raise MediaError(f"too many redirects (more than {MAX_REDIRECTS})")
    except MediaError:
        raise
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, BlockedAddress) or isinstance(exc.__cause__, BlockedAddress):
            raise MediaError(f"refused: {exc.os_error}") from None
        raise MediaError(f"cannot connect to {url.host}: {exc.os_error}") from None
    except TimeoutError:
        raise MediaError(f"timed out after {config.fetch_timeout:g}s") from None
    except (aiohttp.ClientError, OSError) as exc:
        cause = exc.__cause__
        if isinstance(exc, BlockedAddress) or isinstance(cause, BlockedAddress):
            raise MediaError(f"refused: {cause or exc}") from None
        raise MediaError(f"download failed: {str(exc) or 'the connection broke off'}") from None
    finally:
        if not ok:
            with contextlib.suppress(OSError):
                path.unlink()  # noqa: ASYNC240


# -- PyAV -----------------------------------------------------------------------------------
#: FFmpeg demuxers (``AVInputFormat.name`` entries) that read one self-contained file.
#: Everything else is refused - above all those that open further inputs named inside
#: the file: hls, dash, concat, image2 (patterns), sdp/rtp/rtsp, tee, ...
ALLOWED_DEMUXERS: tuple[str, ...] = (
    "mov",  # mp4, m4v, mov, 3gp (external data references stay off: FFmpeg's default)
    "matroska",  # mkv, webm
    "avi",
    "flv",
    "mpegts",
    "mpeg",  # MPEG program stream (.mpg, .vob)
    "mpegvideo",
    "m4v",
    "h264",
    "hevc",
    "ogg",
    "asf",  # wmv
    "mxf",
    "nut",
    "ivf",
    "obu",
    "dv",
    "gif",
    "yuv4mpegpipe",
)
#: the worker opens downloaded URLs from a temporary file too: only local reads
ALLOWED_PROTOCOLS = "file"
UNSUPPORTED_CONTAINER = (
    "unsupported container format: only single-file videos (MP4/MOV, MKV/WebM, AVI, "
    "MPEG-TS, Ogg, ...) are accepted; playlists (HLS .m3u8, DASH), concat lists and "
    "image sequences are refused"
)


def open_container(path: Path) -> Any:
    """``av.open`` of ``path`` for reading, restricted to that one local file and to
    :data:`ALLOWED_DEMUXERS`.  Raises :class:`MediaError` (the user-facing reason) when
    the format is not allowed or the file cannot be opened."""
    options = {
        "protocol_whitelist": ALLOWED_PROTOCOLS,
        "format_whitelist": ",".join(ALLOWED_DEMUXERS),
    }
    try:
        # "file:" so that a name containing ':' is never taken for another protocol
        return av.open(f"file:{path}", mode="r", container_options=options)
    except av.error.ArgumentError:
        # EINVAL from avformat_open_input: the probed demuxer (or a protocol) is not on
        # the whitelist - the one way a readable file fails with it
        raise MediaError(UNSUPPORTED_CONTAINER) from None
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise _av_error(exc) from None


def _av_error(exc: Exception) -> MediaError:
    # FFmpegError's str() names the server-side path: keep only the reason
    text = getattr(exc, "strerror", None) or str(exc) or "unreadable data"
    return MediaError(f"cannot decode video: {text}")


def probe(path: Path) -> MediaInfo:
    """Metadata of ``path`` (blocking). Raises :class:`MediaError` for non-video files."""
    size = path.stat().st_size
    try:
        with open_container(path) as container:
            if not container.streams.video:
                raise MediaError("no video stream")
            vs = container.streams.video[0]
            audio = container.streams.audio[0] if container.streams.audio else None
            duration: float | None = None
            if container.duration is not None:
                duration = container.duration / av.time_base
            elif vs.duration is not None and vs.time_base is not None:
                duration = float(vs.duration * vs.time_base)
            rate = vs.average_rate or vs.guessed_rate or vs.base_rate
            fps = float(rate) if rate else None
            bitrate = container.bit_rate or None
            if not bitrate and duration:
                bitrate = int(size * 8 / duration)
            return MediaInfo(
                duration_s=round(duration, 3) if duration is not None else None,
                width=vs.codec_context.width or None,
                height=vs.codec_context.height or None,
                fps=round(fps, 3) if fps is not None else None,
                video_codec=vs.codec_context.name,
                audio_codec=audio.codec_context.name if audio is not None else None,
                bitrate=bitrate,
                size_bytes=size,
            )
    except MediaError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise _av_error(exc) from None


def _first_frame(container: Any, at_seconds: float | None) -> av.VideoFrame:
    stream = container.streams.video[0]
    if at_seconds and at_seconds > 0 and stream.time_base:
        with contextlib.suppress(av.error.FFmpegError):
            container.seek(int(at_seconds / stream.time_base), stream=stream, backward=True)
    fallback: av.VideoFrame | None = None
    for frame in container.decode(stream):
        if fallback is None:
            fallback = frame
        if at_seconds is None or frame.time is None or frame.time >= at_seconds:
            return frame
    if fallback is None:
        raise MediaError("no decodable frame")
    return fallback


def make_thumbnail(
    path: Path, dest: Path, duration_s: float | None = None, deadline: float | None = None
) -> Path:
    """Write a JPEG of a frame near 10% of the video to ``dest`` (atomically; blocking).

    Raises :class:`MediaError` when no frame can be decoded, or when ``deadline``
    (``time.monotonic()``) has passed before the file would be written.
    """
    at = duration_s * 0.1 if duration_s else None
    try:
        with open_container(path) as container:
            frame = _first_frame(container, at)
            width = min(THUMBNAIL_WIDTH, frame.width) // 2 * 2 or 2
            height = max(2, round(frame.height * width / frame.width) // 2 * 2)
            small = frame.reformat(width=width, height=height, format="yuvj420p")
            encoder = av.CodecContext.create("mjpeg", "w")
            encoder.width = width
            encoder.height = height
            encoder.pix_fmt = "yuvj420p"
            encoder.time_base = Fraction(1, 25)
            small.pts = 0
            data = b"".join(bytes(p) for p in encoder.encode(small))
            data += b"".join(bytes(p) for p in encoder.encode(None))
    except MediaError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, ZeroDivisionError) as exc:
        raise _av_error(exc) from None
    if not data:
        raise MediaError("thumbnail encoder produced nothing")
    if deadline is not None and time.monotonic() > deadline:
        raise MediaError("thumbnail not written: the video's time budget ran out")
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
    # 0600 whatever the umask: thumbnails are served to their owner only
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(dest)
    return dest


def thumbnail_path(config: Config, video_id: uuid.UUID | str) -> Path:
    return config.media_root / "thumbnails" / f"{video_id}.jpg"


@dataclass(frozen=True)
class ProcessedMedia:
    info: MediaInfo
    #: relative to MEDIA_ROOT
    thumbnail: str


def budget_message(config: Config) -> str:
    """The error of a video that ran out of ``VIDEO_TIME_BUDGET``."""
    return (
        f"video time budget exceeded: fetch, probe and thumbnail took more than "
        f"{config.video_time_budget:g}s"
    )


async def process_media(source: str, video_id: uuid.UUID, config: Config) -> ProcessedMedia:
    """fetch -> probe -> thumbnail for one video within ``config.video_time_budget``
    seconds in all; raises :class:`MediaError` (:func:`budget_message` when over it).

    Blocking PyAV work runs in a thread so the event loop (heartbeat, publishing) stays
    free.  A thread cannot be stopped: past the budget its result is dropped, and the
    thumbnail it would write late is not written.
    """
    deadline = time.monotonic() + config.video_time_budget
    try:
        async with asyncio.timeout(config.video_time_budget):
            return await _process(source, video_id, config, deadline)
    except TimeoutError:
        raise MediaError(budget_message(config)) from None


async def _process(
    source: str, video_id: uuid.UUID, config: Config, deadline: float
) -> ProcessedMedia:
    fetched = await fetch(source, config)
    try:
        info = await asyncio.to_thread(probe, fetched.path)
        dest = thumbnail_path(config, video_id)
        await asyncio.to_thread(make_thumbnail, fetched.path, dest, info.duration_s, deadline)
    finally:
        if fetched.temporary:
            with contextlib.suppress(OSError):
                fetched.path.unlink()
    return ProcessedMedia(info=info, thumbnail=str(dest.relative_to(config.media_root)))
