"""The private-address check of URL imports refuses every IPv6 spelling of a private,
loopback or otherwise non-global IPv4 address, and still allows public ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from quart_app.core.config import Config
from tasks.media import MediaError, address_allowed, download

EMBEDS_PRIVATE_IPV4 = [
    "::127.0.0.1",  # IPv4-compatible
    "::10.0.0.1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:192.168.1.1",
    "::ffff:0:127.0.0.1",  # IPv4-translated (SIIT)
    "64:ff9b::7f00:1",  # NAT64 well-known prefix -> 127.0.0.1
    "64:ff9b::10.1.2.3",
    "64:ff9b::169.254.169.254",  # cloud metadata through NAT64
    "64:ff9b:1::a00:1",  # NAT64 local-use prefix: never judged, refused
    "64:ff9b:1:ffff::8.8.8.8",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "2001:0:7f00:1::1",  # Teredo (server 127.0.0.1)
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo, client 192.0.2.45
]
PUBLIC = ["8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8"]


@pytest.mark.parametrize("address", EMBEDS_PRIVATE_IPV4)
def test_ipv6_forms_of_private_ipv4_are_refused(address: str) -> None:
    assert not address_allowed(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_stay_allowed(address: str) -> None:
    assert address_allowed(address)


@pytest.mark.parametrize("host", ["[::127.0.0.1]", "[64:ff9b::7f00:1]", "[::ffff:0:7f00:1]"])
async def test_download_refuses_the_literal_before_connecting(host: str, tmp_path: Path) -> None:
    config = Config(media_root=tmp_path, import_allow_private_hosts=False, fetch_timeout=5)
    with pytest.raises(MediaError, match="refused"):
        await download(f"http://{host}:9/video.mp4", config)
    assert not any((tmp_path / "tmp").iterdir())  # nothing left behind
