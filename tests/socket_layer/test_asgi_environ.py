"""socket_layer.asgi_environ.translate_request builds the environ python-engineio's own
ASGI ``translate_request`` builds, without defining a class per call.

Each case feeds the same ASGI scope and events to both functions and compares the
environs key by key, except ``wsgi.input`` (an object of a different class), whose
``read()`` results are compared instead for several read patterns.  A websocket's
environ is engine.io's with the keys the module drops for websockets taken out (the
WSGI constants but REMOTE_ADDR and SCRIPT_NAME, headers outside WEBSOCKET_HEADERS);
every key engine.io and the socket layer read from it stays.
"""

from __future__ import annotations

import gc
import io
import sys
from dataclasses import dataclass, field
from typing import Any

import engineio
import pytest
from engineio.async_drivers import asgi as eio_asgi

from socket_layer import asgi_environ
from socket_layer.asgi_environ import WEBSOCKET_HEADERS, translate_request

Event = dict[str, Any]


class Feed:
    """An ASGI ``receive`` over a fixed list of events; reading past the end is a
    test failure (the reader must not ask for more than the request has)."""

    def __init__(self, events: list[Event]) -> None:
        self.events = list(events)
        self.taken = 0

    async def __call__(self) -> Event:
        assert self.events, "receive() called after the request's last event"
        self.taken += 1
        return self.events.pop(0)


async def _send(message: Event) -> None:  # pragma: no cover - never called
    raise AssertionError("translate_request must not send")


def http_scope(
    method: str = "GET",
    path: str = "/api/ws/progress/",
    query: bytes | None = b"EIO=4&transport=polling&t=Pq1",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "headers": headers
        if headers is not None
        else [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"python-engineio")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    if query is not None:
        scope["query_string"] = query
    return scope


def websocket_scope(headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    scope = http_scope(query=b"EIO=4&transport=websocket", headers=headers)
    scope["type"] = "websocket"
    del scope["method"]  # an ASGI websocket scope has none: REQUEST_METHOD defaults
    scope["subprotocols"] = []
    return scope


def body_events(*chunks: bytes) -> list[Event]:
    return [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]


@dataclass
class Case:
    scope: dict[str, Any]
    events: list[Event]
    #: read patterns: each a list of read(length) arguments, applied in order
    reads: list[list[int | None]] = field(default_factory=lambda: [[None]])


CASES: dict[str, Case] = {
    "get-with-query": Case(
        http_scope(query=b"EIO=4&transport=polling&sid=abc%20def&t=x"),
        body_events(b""),
        [[None], [10]],
    ),
    "get-without-query-string-key": Case(http_scope(query=None), body_events(b"")),
    "get-empty-query-string": Case(http_scope(query=b""), body_events(b"")),
    "undecodable-query-string": Case(http_scope(query=b"sid=\xff\xfe"), body_events(b"")),
    "post-body-in-several-events": Case(
        http_scope(
            "POST",
            headers=[
                (b"host", b"h"),
                (b"content-type", b"text/plain;charset=UTF-8"),
                (b"content-length", b"27"),
            ],
        ),
        body_events(b'11:40{"tok', b'en":"x"}', b"", b"3:2probe", b"X"),
        # no length; exactly the length; smaller than the first event (engine.io then
        # drops what later events carry); larger than the body; repeated small reads
        [[None], [27], [3, None], [1000], [5, 5, 5, None, None], [0, None]],
    ),
    "post-body-in-one-event": Case(
        http_scope("POST", headers=[(b"content-length", b"5")]),
        [{"type": "http.request", "body": b"hello"}],  # no more_body key at all
        [[None], [5], [2, 2, 2]],
    ),
    "post-without-body-key": Case(
        http_scope("POST"),
        [{"type": "http.request", "more_body": True}, {"type": "http.request", "body": b"z"}],
        [[None], [1]],
    ),
    "post-cut-by-a-disconnect": Case(
        http_scope("POST", headers=[(b"content-length", b"100")]),
        [
            {"type": "http.request", "body": b"part", "more_body": True},
            {"type": "http.disconnect"},
        ],
        [[None], [100], [2, None]],
    ),
    "websocket-connect": Case(
        websocket_scope(
            headers=[
                (b"host", b"h"),
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
                (b"sec-websocket-version", b"13"),
                (b"origin", b"http://app.example"),
            ]
        ),
        [{"type": "websocket.connect"}],
        [],  # engine.io never reads a websocket's wsgi.input (see the test below)
    ),
    "websocket-behind-a-proxy": Case(
        websocket_scope(
            headers=[
                (b"Host", b"app.example"),
                (b"upgrade", b"websocket"),
                (b"connection", b"keep-alive, Upgrade"),
                (b"origin", b"https://app.example"),
                (b"x-forwarded-proto", b"https"),
                (b"x-forwarded-for", b"203.0.113.7"),
                (b"x-forwarded-for", b"10.0.0.2"),
                (b"cookie", b"a=1"),
                (b"cookie", b"b=2"),
                (b"authorization", b"Bearer t"),
                (b"user-agent", b"Mozilla/5.0"),
                (b"content-type", b"text/plain"),
                (b"accept-language", b"en"),
                (b"sec-websocket-extensions", b"permessage-deflate"),
                (b"x-forwarded-host", b"\xff"),
            ]
        ),
        [{"type": "websocket.connect"}],
        [],
    ),
    "duplicate-headers": Case(
        http_scope(
            headers=[
                (b"x-forwarded-for", b"203.0.113.7"),
                (b"Cookie", b"a=1"),
                (b"x-forwarded-for", b"198.51.100.9"),
                (b"cookie", b"b=2"),
                (b"X-Forwarded-For", b"10.0.0.1"),
            ]
        ),
        body_events(b""),
    ),
    "undecodable-header": Case(
        http_scope(
            headers=[
                (b"x-good", b"yes"),
                (b"x-bad-value", b"\xff\xfe"),
                (b"x-bad-\xffname", b"v"),
                (b"content-type", b"\xc3\x28"),
                (b"x-good", b"again"),
            ]
        ),
        body_events(b""),
    ),
    "content-type-and-length": Case(
        http_scope(
            "POST",
            headers=[
                (b"Content-Type", b"application/octet-stream"),
                (b"Content-Length", b"3"),
                (b"content-type", b"text/plain"),  # a second one replaces, not joins
            ],
        ),
        body_events(b"abc"),
        [[None], [3]],
    ),
    "x-forwarded-proto": Case(
        http_scope(headers=[(b"x-forwarded-proto", b"https")]), body_events(b"")
    ),
    "x-forwarded-proto-twice": Case(
        http_scope(headers=[(b"x-forwarded-proto", b"https"), (b"x-forwarded-proto", b"http")]),
        body_events(b""),
    ),
    "first-event-http-disconnect": Case(http_scope("POST"), [{"type": "http.disconnect"}], []),
    "first-event-websocket-disconnect": Case(
        websocket_scope(), [{"type": "websocket.disconnect", "code": 1006}], []
    ),
}

#: the environ values that hold the call's own receive/send (compared by identity)
CALL_KEYS = ("wsgi.input", "asgi.receive", "asgi.send")

#: engine.io's constant keys a websocket's environ does without
WEBSOCKET_DROPS = frozenset(
    {
        "wsgi.errors",
        "wsgi.version",
        "wsgi.async",
        "wsgi.multithread",
        "wsgi.multiprocess",
        "wsgi.run_once",
        "SERVER_SOFTWARE",
        "SERVER_PROTOCOL",
        "REMOTE_PORT",
        "SERVER_NAME",
        "SERVER_PORT",
    }
)
#: what is read from a websocket's environ for the life of the connection: by
#: python-engineio (origin check, upgrade, method, query) and by the socket layer
#: (its origin check against the host, the token in the query)
READ_FROM_A_WEBSOCKET = (
    "REQUEST_METHOD",
    "QUERY_STRING",
    "HTTP_ORIGIN",
    "HTTP_HOST",
    "HTTP_UPGRADE",
    "HTTP_CONNECTION",
    "wsgi.url_scheme",
)


def engineio_expected(scope: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """engine.io's environ as ours must be: the same for HTTP; for a websocket without
    WEBSOCKET_DROPS and the headers outside WEBSOCKET_HEADERS."""
    if scope["type"] != "websocket":
        return theirs
    kept = {"HTTP_" + name.replace("-", "_") for name in WEBSOCKET_HEADERS}
    return {
        key: value
        for key, value in theirs.items()
        if key not in WEBSOCKET_DROPS
        and key not in ("CONTENT_TYPE", "CONTENT_LENGTH")
        and (not key.startswith("HTTP_") or key in kept)
    }


async def environ_and_reads(
    translate: Any, case: Case, reads: list[int | None]
) -> tuple[dict[str, Any], list[Any], Feed]:
    feed = Feed(case.events)
    environ = await translate(case.scope, feed, _send)
    results: list[Any] = []
    if environ:
        assert environ["asgi.receive"] is feed and environ["asgi.send"] is _send
        assert environ["asgi.scope"] is case.scope
        for length in reads:
            results.append(await environ["wsgi.input"].read(length))
    return environ, results, feed


@pytest.mark.parametrize("name", CASES)
async def test_the_environ_is_engineios(name: str) -> None:
    case = CASES[name]
    for reads in case.reads or [[]]:
        theirs, their_reads, their_feed = await environ_and_reads(
            eio_asgi.translate_request, case, reads
        )
        ours, our_reads, our_feed = await environ_and_reads(translate_request, case, reads)
        if not theirs:
            assert ours == {}
            return
        strip = lambda env: {k: v for k, v in env.items() if k not in CALL_KEYS}  # noqa: E731
        expected = engineio_expected(case.scope, theirs)
        assert strip(ours) == strip(expected)
        assert set(ours) == set(expected)
        assert our_reads == their_reads, f"read({reads})"
        assert our_feed.taken == their_feed.taken, "a different number of receive() calls"


async def test_the_cases_cover_what_they_claim() -> None:
    """The comparison above is not vacuous: the cases produce the keys they are about."""
    env, reads, _ = await environ_and_reads(
        translate_request, CASES["post-body-in-several-events"], [None]
    )
    assert reads == [b'11:40{"token":"x"}3:2probeX']
    assert (env["CONTENT_TYPE"], env["CONTENT_LENGTH"]) == ("text/plain;charset=UTF-8", "27")
    assert "HTTP_CONTENT_TYPE" not in env
    env, _, _ = await environ_and_reads(translate_request, CASES["duplicate-headers"], [])
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7,198.51.100.9,10.0.0.1"
    assert env["HTTP_COOKIE"] == "a=1,b=2"
    env, _, _ = await environ_and_reads(translate_request, CASES["undecodable-header"], [])
    assert env["HTTP_X_GOOD"] == "yes,again"
    assert not any(k.startswith("HTTP_X_BAD") for k in env) and "CONTENT_TYPE" not in env
    env, _, _ = await environ_and_reads(translate_request, CASES["x-forwarded-proto"], [])
    assert env["wsgi.url_scheme"] == "https"
    env, _, _ = await environ_and_reads(translate_request, CASES["get-with-query"], [])
    assert env["QUERY_STRING"] == "EIO=4&transport=polling&sid=abc%20def&t=x"
    assert env["RAW_URI"] == "/api/ws/progress/?EIO=4&transport=polling&sid=abc%20def&t=x"
    env, _, _ = await environ_and_reads(translate_request, CASES["undecodable-query-string"], [])
    assert (env["QUERY_STRING"], env["RAW_URI"]) == ("", "/api/ws/progress/")
    env, _, _ = await environ_and_reads(translate_request, CASES["websocket-connect"], [])
    assert env["REQUEST_METHOD"] == "GET" and env["HTTP_UPGRADE"] == "websocket"


@pytest.mark.parametrize("name", ["websocket-connect", "websocket-behind-a-proxy"])
async def test_a_websocket_keeps_what_is_read_from_it(name: str) -> None:
    """Every key read for a websocket stays, with engine.io's value (the comparison
    above alone would pass for an environ trimmed too far along with WEBSOCKET_HEADERS)."""
    case = CASES[name]
    theirs = await eio_asgi.translate_request(case.scope, Feed(case.events), _send)
    ours = await translate_request(case.scope, Feed(case.events), _send)
    for key in READ_FROM_A_WEBSOCKET:
        assert ours[key] == theirs[key], key
    assert ours["REMOTE_ADDR"] == "127.0.0.1" and ours["SCRIPT_NAME"] == ""
    assert WEBSOCKET_DROPS <= set(theirs) - set(ours)


async def test_a_websocket_behind_a_proxy_keeps_its_forwarded_and_auth_headers() -> None:
    case = CASES["websocket-behind-a-proxy"]
    theirs = await eio_asgi.translate_request(case.scope, Feed(case.events), _send)
    ours = await translate_request(case.scope, Feed(case.events), _send)
    assert ours["wsgi.url_scheme"] == "https"
    assert ours["HTTP_X_FORWARDED_FOR"] == "203.0.113.7,10.0.0.2"
    assert ours["HTTP_COOKIE"] == "a=1,b=2" and ours["HTTP_AUTHORIZATION"] == "Bearer t"
    dropped = set(theirs) - set(ours)
    assert {"HTTP_ACCEPT_LANGUAGE", "HTTP_SEC_WEBSOCKET_EXTENSIONS", "CONTENT_TYPE"} <= dropped


async def test_a_websockets_input_reads_empty() -> None:
    """The one difference, where engine.io never reads: a websocket request has no body;
    engine.io's reader answers read() with None (read(n) raises TypeError), ours b""."""
    case = CASES["websocket-connect"]
    theirs = await eio_asgi.translate_request(case.scope, Feed(case.events), _send)
    ours = await translate_request(case.scope, Feed(case.events), _send)
    assert await theirs["wsgi.input"].read() is None
    assert await ours["wsgi.input"].read() == b""
    assert await ours["wsgi.input"].read(10) == b""


async def test_wsgi_errors_is_the_current_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """engine.io puts the sys.stderr of the moment in the environ (pytest's capture and
    logging redirects replace it after our module was imported)."""
    replaced = io.StringIO()  # any stream other than the stderr of import time
    monkeypatch.setattr(sys, "stderr", replaced)
    case = CASES["get-with-query"]
    theirs = await eio_asgi.translate_request(case.scope, Feed(case.events), _send)
    ours = await translate_request(case.scope, Feed(case.events), _send)
    assert theirs["wsgi.errors"] is replaced
    assert ours["wsgi.errors"] is replaced


def _types_alive() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, type))


@pytest.mark.parametrize("reader", ["ours", "engine.io"])
async def test_no_class_per_call(reader: str) -> None:
    translate = translate_request if reader == "ours" else eio_asgi.translate_request
    case = CASES["post-body-in-several-events"]
    before = _types_alive()
    environs = [await translate(case.scope, Feed(case.events), _send) for _ in range(100)]
    created = _types_alive() - before
    classes = {type(e["wsgi.input"]) for e in environs}
    if reader == "ours":
        assert created == 0, f"{created} classes created by 100 calls"
        assert classes == {asgi_environ.RequestBody}
    else:  # what is measured against: engine.io defines one per call
        assert created >= 100 and len(classes) == 100


async def test_install_swaps_only_that_servers_translate_request() -> None:
    mine = engineio.AsyncServer(async_mode="asgi")
    other = engineio.AsyncServer(async_mode="asgi")
    asgi_environ.install(mine)
    assert mine._async["translate_request"] is translate_request
    assert other._async["translate_request"] is eio_asgi.translate_request
    assert eio_asgi._async["translate_request"] is eio_asgi.translate_request
    assert mine._async["make_response"] is eio_asgi.make_response
