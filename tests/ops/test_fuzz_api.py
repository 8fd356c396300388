"""Property-based fuzzing of the REST API from its own ``/openapi.json`` (schemathesis +
hypothesis) against a real ``reeltrack serve`` process: no input, valid or not, gets a
5xx.  Requests are authenticated as a user that owns a list, a video and a job, so the
generated ids and bodies reach the views, not only the 401.

Budget: ``FUZZ_EXAMPLES`` cases per operation (about 40 s in all on 2 cores).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.conftest import live_config
from tests.support.live import LiveServer
from tests.support.services import RedisServer

FUZZ_EXAMPLES = 10
PASSWORD = "fuzz-password-123"
CALLS: list[float] = []


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, pg_database_url: str
) -> Iterator[dict[str, Any]]:
    base: Path = tmp_path_factory.mktemp("fuzz")
    redis = RedisServer().start()
    config = live_config(
        base,
        pg_database_url,
        redis.url,
        log_level="INFO",  # the Traceback check reads this log
        rate_limit_per_minute=0,  # the fuzzer is one very busy user
        login_max_attempts=1000,
        max_request_bytes=1_000_000,
        max_upload_bytes=100_000,
        max_videos_per_job=50,
    )
    (config.import_root / "a.mp4").write_bytes(b"not really a video")
    server = LiveServer(config).start()
    try:
        with httpx.Client(base_url=server.url, timeout=20) as http:
            username = f"fuzz{uuid.uuid4().hex[:8]}"
            creds = {"username": username, "password": PASSWORD}
            assert http.post("/api/auth/register", json=creds).status_code == 201
            token = http.post("/api/auth/login", json=creds).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            list_id = http.post("/api/lists", json={"name": "fuzz"}, headers=headers).json()["id"]
            r = http.post(
                f"/api/lists/{list_id}/videos/bulk",
                json={"videos": [{"url": "a.mp4", "title": "A"}]},
                headers=headers,
            )
            assert r.status_code == 202, r.text
            job_id = r.json()["job_id"]
            videos = http.get(f"/api/lists/{list_id}/videos", headers=headers).json()
            video_id = videos["items"][0]["id"]
        ids = {"list_id": list_id, "job_id": job_id, "video_id": video_id}
        yield {"server": server, "headers": headers, "output": server.output, "ids": ids}
    finally:
        server.close()
        redis.stop()


def _fuzz_operation(
    operation: Any, mode: Any, path_parameters: dict[str, str] | None, headers: dict[str, str]
) -> list[str]:
    """Run FUZZ_EXAMPLES generated cases of one operation; returns the 5xx found."""
    failures: list[str] = []
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @given(case=strategy)
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same cases every run: a failure is reproducible
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report, move on
    )
    def run(case: Any) -> None:
        sent = dict(headers)
        if case.headers and any(k.lower() == "authorization" for k in case.headers):
            sent.pop("Authorization")  # let the generated header through
        response = case.call(headers=sent, timeout=15)
        CALLS.append(float(response.elapsed))
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} {case.query or ''} "
                f"body={str(case.body)[:200]!r} -> {response.status_code}"
            )
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except Exception:  # schemathesis' FailureGroup; recorded above with its request
            pass

    try:
        run()
    except Unsatisfiable:  # e.g. negative data for an operation without inputs
        pass
    return failures


def test_no_input_gets_a_server_error(fuzz_server: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server['server'].url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    # DELETEs last: the owned list and job survive until the other operations ran
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    real_ids = fuzz_server["ids"]
    failures: list[str] = []
    for operation in operations:
        names = {p.name for p in operation.path_parameters} if operation.path_parameters else set()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _fuzz_operation(operation, mode, None, fuzz_server["headers"])
        owned = {name: real_ids[name] for name in names if name in real_ids}
        if owned and len(owned) == len(names):
            failures += _fuzz_operation(
                operation, GenerationMode.POSITIVE, owned, fuzz_server["headers"]
            )
    print(f"fuzz: {len(CALLS)} requests, server time {sum(CALLS):.1f} s")
    assert not failures, "\n".join(failures[:20]) + "\n" + fuzz_server["output"]()[-3000:]


def test_the_server_survived_the_fuzzing(fuzz_server: dict[str, Any]) -> None:
    """Runs after the fuzz cases (file order): the process is alive and answers."""
    server = fuzz_server["server"]
    assert server.proc is not None and server.proc.poll() is None
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/api/health").status_code == 200
        assert http.get("/api/me", headers=fuzz_server["headers"]).status_code == 200
    assert "Traceback" not in fuzz_server["output"](), "an unhandled error was logged"
