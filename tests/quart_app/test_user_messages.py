"""Errors a user reads name no server setting (they read "the import folder", not the
variable an operator sets)."""

from __future__ import annotations

import json

from quart_app.core.config import Config
from tests.quart_app.conftest import ApiFactory
from tests.support.builders import make_list, make_user, multipart


async def test_import_and_upload_errors_name_no_setting(
    pg_database_url: str, api_factory: ApiFactory
) -> None:
    settings = [field.alias or name.upper() for name, field in Config.model_fields.items()]
    settings = [s for s in settings if "_" in s]  # the variable names, e.g. IMPORT_ROOT
    assert "IMPORT_ROOT" in settings and "MAX_VIDEOS_PER_JOB" in settings
    async with api_factory(pg_database_url, max_videos_per_job=2) as api:
        user = await make_user()
        vlist = await make_list(user)
        bad_rows = {"videos": [{"url": "/etc/passwd"}, {"url": "missing.mp4"}]}
        too_many = {"videos": [{"url": f"https://example.com/{i}.mp4"} for i in range(3)]}
        answers = [
            await api.call("POST", f"/api/lists/{vlist.id}/videos/bulk", user, json=bad_rows),
            await api.call("POST", f"/api/lists/{vlist.id}/videos/bulk", user, json=too_many),
            await api.call(
                "POST",
                f"/api/lists/{vlist.id}/videos/bulk",
                user,
                data=b"url,title\n" + b"".join(b"https://e.com/%d.mp4,t\n" % i for i in range(3)),
                headers={"Content-Type": "text/csv"},
            ),
        ]
        body, headers = multipart([("file", f"{i}.mp4", b"x") for i in range(3)])
        answers.append(
            await api.call(
                "POST", f"/api/lists/{vlist.id}/videos/upload", user, data=body, headers=headers
            )
        )
    assert [status for status, _ in answers] == [400, 400, 400, 400], answers
    rows = answers[0][1]["rows"]
    assert [r["error"] for r in rows] == [
        "absolute path outside the import folder",
        "no such file in the import folder",
    ]
    text = json.dumps([body for _, body in answers])
    leaked = [s for s in settings if s in text]
    assert not leaked, (leaked, text)
