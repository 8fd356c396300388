"""The browser's copy of the wire contract equals the server's.

REST: web/src/generated/openapi.ts is what openapi-typescript makes of the app's
/openapi.json today. Socket.IO: every name and limit in web/src/progress/protocol.ts has
the value of socket_layer/protocol.py (and the resume limit the server's default), and no
other browser source spells one of them out. The progress event and the status values
in web/src/types.ts match models/.
"""

from __future__ import annotations

import difflib
import json
import re
import typing
import uuid
from pathlib import Path
from typing import Any

import pytest

from models.entities import VideoStatus
from models.events import EventStatus, ProgressEvent
from quart_app.core.config import Config
from socket_layer import protocol
from tests.support.web_types import (
    REGENERATE_HINT,
    WEB_TYPES_PATH,
    document_app,
    openapi_document,
    write_web_types,
)

WEB_SRC = Path(__file__).resolve().parents[1] / "web" / "src"
PROTOCOL_TS = WEB_SRC / "progress" / "protocol.ts"
TYPES_TS = WEB_SRC / "types.ts"
#: the names of socket_layer/protocol.py a client must know
CLIENT_NAME = re.compile(r"^(SOCKETIO_PATH|EVENT_\w+|REASON_\w+|ERROR_\w+|\w+_CODE)$")
#: protocol.ts's limit whose server value is a setting's default, not a protocol constant
SETTING_LIMITS = {"RESUME_MAX_JOBS": "resume_max_jobs"}


async def test_the_document_is_what_the_app_serves() -> None:
    app = document_app()
    response = await app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert json.loads(await response.get_data()) == json.loads(json.dumps(openapi_document(app)))


def test_generated_rest_types_are_current(tmp_path: Path) -> None:
    fresh = tmp_path / "openapi.ts"
    write_web_types(fresh)
    if fresh.read_bytes() != WEB_TYPES_PATH.read_bytes():
        diff = difflib.unified_diff(
            WEB_TYPES_PATH.read_text(encoding="utf-8").splitlines(),
            fresh.read_text(encoding="utf-8").splitlines(),
            "checked in",
            "from /openapi.json",
            lineterm="",
        )
        shown = "\n".join(list(diff)[:60])
        pytest.fail(f"web/src/generated/openapi.ts is out of date: {REGENERATE_HINT}\n{shown}")


def ts_constants(source: str) -> dict[str, Any]:
    """``export const NAME = <JSON literal>;`` of a TypeScript module, by name."""
    found: dict[str, Any] = {}
    for name, literal in re.findall(r"^export const ([A-Z][A-Z0-9_]*) = (.+?);$", source, re.M):
        if literal.startswith("{") or literal.endswith("{"):
            continue  # an object built from the constants (REFUSAL_CODES), checked below
        try:
            found[name] = json.loads(literal)
        except json.JSONDecodeError:
            pytest.fail(f"protocol.ts: {name} = {literal} is not a plain literal")
    return found


def ts_block(source: str, start: str) -> str:
    """The text from the line starting with ``start`` to the next line that is ``};``."""
    match = re.search(rf"^{re.escape(start)}.*?^\}};?$", source, re.M | re.S)
    assert match, f"no `{start}` in the TypeScript source"
    return match.group(0)


def ts_union(source: str, type_name: str) -> set[str]:
    """The string members of ``export type <type_name> = "a" | "b" ...;``."""
    match = re.search(rf"^export type {type_name} = ([^;]+);", source, re.M)
    assert match, f"no `export type {type_name}`"
    return set(re.findall(r'"([^"]+)"', match.group(1)))


def server_default(setting: str) -> Any:
    """A setting's default (``Config(...)`` with keywords reads no environment)."""
    return getattr(Config(env="test", secret_key="wire-contract-" + "x" * 32), setting)


def test_protocol_ts_has_the_servers_values() -> None:
    source = PROTOCOL_TS.read_text(encoding="utf-8")
    client = ts_constants(source)
    server = {name: getattr(protocol, name) for name in dir(protocol) if CLIENT_NAME.match(name)}
    assert server, "socket_layer/protocol.py exports none of the names a client needs"

    missing = sorted(set(server) - set(client))
    assert not missing, f"protocol.ts lacks {missing} of socket_layer/protocol.py"
    for name, value in client.items():
        if name in SETTING_LIMITS:
            expected = getattr(protocol, name, None) or server_default(SETTING_LIMITS[name])
            assert value == expected, f"protocol.ts {name} = {value}, the server's is {expected}"
            continue
        assert name in server, f"protocol.ts {name} is not in socket_layer/protocol.py"
        assert value == server[name], f"protocol.ts {name} = {value!r}, server {server[name]!r}"
    assert set(SETTING_LIMITS) <= set(client), f"protocol.ts lacks {sorted(SETTING_LIMITS)}"


def test_protocol_ts_refusal_codes_are_the_servers() -> None:
    source = PROTOCOL_TS.read_text(encoding="utf-8")
    constants = ts_constants(source)
    block = ts_block(source, "export const REFUSAL_CODES")
    pairs = dict(re.findall(r"\[(REASON_\w+)\]: (\w+),", block))
    reasons = {name for name in dir(protocol) if name.startswith("REASON_")}
    assert set(pairs) == reasons, f"REFUSAL_CODES has {sorted(pairs)}, the server {reasons}"
    for reason_name, code_name in pairs.items():
        reason = getattr(protocol, reason_name)
        assert constants[code_name] == protocol.refusal(reason)["code"], reason
    assert {f"typeof {name}" for name in reasons} == set(
        re.findall(r"typeof REASON_\w+", ts_block(source, "export type RefusalReason"))
    )


def test_a_full_resume_fits_the_servers_message_limit() -> None:
    """The largest `resume` the client sends (RESUME_MAX_JOBS ids, 32-bit seqs, an ack id)
    as a Socket.IO packet stays under the server's default WS_MAX_MESSAGE_BYTES."""
    most = ts_constants(PROTOCOL_TS.read_text(encoding="utf-8"))["RESUME_MAX_JOBS"]
    jobs = {str(uuid.UUID(int=i)): 2**31 - 1 for i in range(most)}
    packet = "4299999" + json.dumps([protocol.EVENT_RESUME, {"jobs": jobs}], separators=(",", ":"))
    assert len(packet.encode()) < server_default("ws_max_message_bytes")


def test_no_wire_literal_outside_protocol_ts() -> None:
    """Path, event names, reasons and codes are imported from protocol.ts, never retyped."""
    constants = ts_constants(PROTOCOL_TS.read_text(encoding="utf-8"))
    quoted = [
        value
        for name, value in constants.items()
        if name == "SOCKETIO_PATH" or name.startswith("REASON_")
    ]
    events = {value for name, value in constants.items() if name.startswith("EVENT_")}
    codes = [value for name, value in constants.items() if name.endswith("_CODE")]
    offenders: list[str] = []
    for path in sorted(WEB_SRC.rglob("*.ts*")):
        if path == PROTOCOL_TS or "generated" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(WEB_SRC)
        offenders += [f"{where}: {v!r}" for v in quoted if re.search(rf"[\"'`]{v}[\"'`]", text)]
        offenders += [f"{where}: {code}" for code in codes if re.search(rf"\b{code}\b", text)]
        for event in re.findall(r"\.(?:on|once|off|emit)\(\s*[\"'`](\w+)[\"'`]", text):
            if event in events:
                offenders.append(f"{where}: event {event!r}")
    assert not offenders, "use the constants of progress/protocol.ts: " + ", ".join(offenders)


def test_progress_event_and_statuses_match_the_models() -> None:
    source = TYPES_TS.read_text(encoding="utf-8")
    body = ts_block(source, "export interface ProgressEvent")
    fields = dict(re.findall(r"^\s+(\w+): ([^;]+);$", body, re.M))
    assert list(fields) == list(ProgressEvent.model_fields)
    nullable = {name for name, ts_type in fields.items() if ts_type.endswith("| null")}
    optional = {name for name, f in ProgressEvent.model_fields.items() if not f.is_required()}
    assert nullable == optional
    assert ts_union(source, "JobStatus") == set(typing.get_args(EventStatus))
    assert ts_union(source, "VideoStatus") == {status.value for status in VideoStatus}
