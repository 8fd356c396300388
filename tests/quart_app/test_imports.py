"""Bulk import rules: every bad row is named, and a bad import creates nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models.entities import ProcessingJob, Video
from quart_app.import_parsing import ImportRejected, parse_csv, parse_json
from tests.quart_app.conftest import Api, ApiFactory
from tests.support.builders import make_list, make_user, multipart

GOOD = "https://example.com/good.mp4"


@pytest.fixture
def import_root(tmp_path: Path) -> Path:
    """IMPORT_ROOT with a.mp4, sub/b.mp4, an inside link and a link escaping it."""
    root = tmp_path / "import"
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "a.mp4").write_bytes(b"video a")
    (root / "sub" / "b.mp4").write_bytes(b"video b")
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"secret")
    os.symlink(outside, root / "escape.mp4")
    os.symlink(root / "a.mp4", root / "link.mp4")
    os.symlink(tmp_path, root / "outdir")
    return root


def csv_bytes(*rows: str, header: str = "url,title") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


# --- parsing rules (no database) ------------------------------------------------------


def test_good_csv_with_urls_and_paths(import_root: Path) -> None:
    data = csv_bytes(
        f"{GOOD},Good one",
        "a.mp4,",
        "sub/b.mp4,B",
        "link.mp4,inside link",
        f"{import_root}/sub/b.mp4,absolute inside",
        "http://example.org/path/clip.webm?x=1,",
    )
    items = parse_csv(data, import_root=import_root, max_rows=10)
    assert [(i.source, i.title) for i in items] == [
        (GOOD, "Good one"),
        ("import:a.mp4", "a"),
        ("import:sub/b.mp4", "B"),
        ("import:link.mp4", "inside link"),
        ("import:sub/b.mp4", "absolute inside"),
        ("http://example.org/path/clip.webm?x=1", "clip"),
    ]


def test_bom_and_crlf_and_title_only_header_order(import_root: Path) -> None:
    data = "\ufefftitle,URL\r\nFirst,a.mp4\r\n\r\nSecond,https://example.com/x.mp4\r\n"
    items = parse_csv(data.encode(), import_root=import_root, max_rows=10)
    assert [(i.source, i.title) for i in items] == [
        ("import:a.mp4", "First"),
        ("https://example.com/x.mp4", "Second"),
    ]


BAD_URLS = {
    "ftp scheme": ("ftp://example.com/a.mp4", "unsupported scheme"),
    "file scheme": ("file:///etc/passwd", "unsupported scheme"),
    "javascript": ("javascript:alert(1)", "unsupported scheme"),
    "no host": ("http:///a.mp4", "no host"),
    "dotdot": ("../outside.mp4", "'..'"),
    "dotdot inside": ("sub/../a.mp4", "'..'"),
    "absolute outside": ("/etc/passwd", "absolute path outside the import folder"),
    "symlink escape": ("escape.mp4", "outside the import folder"),
    "symlinked dir escape": ("outdir/outside.mp4", "outside the import folder"),
    "missing file": ("nope.mp4", "no such file"),
    "directory": ("sub", "no such file"),
    "backslash": ("sub\\b.mp4", "backslash"),
    "empty": ("", "empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_URLS))
def test_each_bad_url_rule_names_the_row(import_root: Path, case: str) -> None:
    url, reason = BAD_URLS[case]
    data = csv_bytes(f"{GOOD},ok", f"{url},bad", "a.mp4,ok too")
    with pytest.raises(ImportRejected) as caught:
        parse_csv(data, import_root=import_root, max_rows=10)
    assert caught.value.code == "invalid_rows"
    assert [(r.row, r.field) for r in caught.value.rows] == [(2, "url")]
    assert reason in caught.value.rows[0].error


def test_every_bad_row_is_reported(import_root: Path) -> None:
    data = csv_bytes("ftp://x/a,1", f"{GOOD},2", "../x,3", "/etc/passwd,4", ",5")
    with pytest.raises(ImportRejected) as caught:
        parse_csv(data, import_root=import_root, max_rows=10)
    assert [r.row for r in caught.value.rows] == [1, 3, 4, 5]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (csv_bytes(GOOD, header="link,title"), "missing_url_column"),
        (csv_bytes(GOOD, header="url,url"), "missing_url_column"),
        (b"", "empty"),
        (b"url,title\n", "empty"),
        (
            "url,title\nhttps://example.com/caf\xe9.mp4,caf\xe9\n".encode("latin-1"),
            "invalid_encoding",
        ),
        (b"\xff\xfeu\x00r\x00l\x00\n\x00", "invalid_encoding"),  # UTF-16 is not UTF-8
        (csv_bytes(*[f"{GOOD},{i}" for i in range(4)]), "too_many_rows"),
    ],
)
def test_file_level_rules(import_root: Path, data: bytes, code: str) -> None:
    with pytest.raises(ImportRejected) as caught:
        parse_csv(data, import_root=import_root, max_rows=3)
    assert caught.value.code == code


def test_exactly_max_rows_is_accepted(import_root: Path) -> None:
    data = csv_bytes(*[f"{GOOD},{i}" for i in range(3)])
    assert len(parse_csv(data, import_root=import_root, max_rows=3)) == 3


def test_json_rules(import_root: Path) -> None:
    items = parse_json(
        {"videos": [{"url": GOOD}, {"url": "a.mp4", "title": "A"}]},
        import_root=import_root,
        max_rows=5,
    )
    assert [i.source for i in items] == [GOOD, "import:a.mp4"]
    with pytest.raises(ImportRejected) as caught:
        parse_json(
            {"videos": [{"url": GOOD}, {"url": 5}, {"link": GOOD}, {"url": "../x"}]},
            import_root=import_root,
            max_rows=5,
        )
    assert [r.row for r in caught.value.rows] == [2, 3, 4]
    for bad in ({}, {"videos": "x"}, [GOOD], {"videos": [], "extra": 1}):
        with pytest.raises(ImportRejected):
            parse_json(bad, import_root=import_root, max_rows=5)
    with pytest.raises(ImportRejected) as caught:
        parse_json({"videos": [{"url": GOOD}] * 6}, import_root=import_root, max_rows=5)
    assert caught.value.code == "too_many_rows"


# --- through the API: 400 naming rows, nothing created ---------------------------------

HTTP_CASES: dict[str, tuple[bytes, str, list[int]]] = {
    "bad scheme": (csv_bytes(f"{GOOD},a", "ftp://example.com/v.mp4,b"), "invalid_rows", [2]),
    "dotdot": (csv_bytes("../outside.mp4,a", f"{GOOD},b"), "invalid_rows", [1]),
    "absolute outside": (csv_bytes(f"{GOOD},a", "/etc/passwd,b"), "invalid_rows", [2]),
    "symlink escape": (csv_bytes("escape.mp4,a"), "invalid_rows", [1]),
    "missing url header": (csv_bytes(GOOD, header="video,title"), "missing_url_column", []),
    "empty url": (csv_bytes(f"{GOOD},a", ",no url"), "invalid_rows", [2]),
    "too many rows": (csv_bytes(*[f"{GOOD},{i}" for i in range(4)]), "too_many_rows", []),
    "non utf-8": (csv_bytes("a.mp4,caf\xe9").decode().encode("latin-1"), "invalid_encoding", []),
}


async def _counts(list_id: object) -> tuple[int, int]:
    return (
        await Video.filter(list_id=list_id).count(),
        await ProcessingJob.filter(list_id=list_id).count(),
    )


@pytest.mark.parametrize("case", sorted(HTTP_CASES))
async def test_bad_import_is_400_and_creates_nothing(
    any_database_url: str, api_factory: ApiFactory, import_root: Path, case: str
) -> None:
    data, code, rows = HTTP_CASES[case]
    async with api_factory(any_database_url, max_videos_per_job=3) as api:
        user = await make_user()
        vlist = await make_list(user)
        status, body = await api.call(
            "POST",
            f"/api/lists/{vlist.id}/videos/bulk",
            user,
            data=data,
            headers={"Content-Type": "text/csv"},
        )
        assert status == 400, body
        assert body["code"] == code and body["message"]
        assert [r["row"] for r in body.get("rows", [])] == rows
        assert await _counts(vlist.id) == (0, 0)


async def test_bom_csv_as_multipart_file_is_accepted(api: Api, import_root: Path) -> None:
    user = await make_user()
    vlist = await make_list(user)
    data = "\ufeffurl,title\na.mp4,Alpha\nhttps://example.com/b.mp4,Beta\n".encode()
    body, headers = multipart([("file", "videos.csv", data)])
    status, answer = await api.call(
        "POST", f"/api/lists/{vlist.id}/videos/bulk", user, data=body, headers=headers
    )
    assert status == 202, answer
    assert answer["total_videos"] == 2
    videos = await Video.filter(job_id=answer["job_id"]).order_by("position")
    assert [(v.source, v.title) for v in videos] == [
        ("import:a.mp4", "Alpha"),
        ("https://example.com/b.mp4", "Beta"),
    ]


async def test_json_import_with_bad_rows_names_them(pg_api: Api, import_root: Path) -> None:
    user = await make_user()
    vlist = await make_list(user)
    status, body = await pg_api.call(
        "POST",
        f"/api/lists/{vlist.id}/videos/bulk",
        user,
        json={"videos": [{"url": GOOD}, {"url": "escape.mp4"}, {"url": "ftp://x/y"}]},
    )
    assert status == 400 and body["code"] == "invalid_rows"
    assert [(r["row"], r["field"]) for r in body["rows"]] == [(2, "url"), (3, "url")]
    assert await _counts(vlist.id) == (0, 0)


async def test_import_edge_cases_over_http(pg_api: Api) -> None:
    user, stranger = await make_user(), await make_user()
    vlist = await make_list(user)
    path = f"/api/lists/{vlist.id}/videos/bulk"
    status, body = await pg_api.call(
        "POST", path, user, data=b"<xml/>", headers={"Content-Type": "application/xml"}
    )
    assert status == 415
    status, body = await pg_api.call(
        "POST", path, user, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and body["code"] == "invalid_json"
    status, body = await pg_api.call("POST", path, stranger, json={"videos": [{"url": GOOD}]})
    assert status == 404
    huge = b"url\n" + b"https://example.com/" + b"x" * 4_000_000 + b"\n"
    status, body = await pg_api.call(
        "POST", path, user, data=huge, headers={"Content-Type": "text/csv"}
    )
    assert status == 413
    assert await _counts(vlist.id) == (0, 0)
