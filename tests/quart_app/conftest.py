"""Fixtures for the REST API: an app per test over a real database and a real Redis
(its own db number, 2), with a client and builders bound to it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol
from rq.job import Job
from rq.job import JobStatus as RQStatus

from models.entities import JobStatus, ProcessingJob, User
from quart_app.app import create_app
from quart_app.core.config import Config
from socket_layer.protocol import user_room
from tasks.queue import JOB_FUNCTION, next_rq_job_id
from tests.support.builders import auth_headers, make_job, make_list, make_user

QUART_REDIS_DB = 2


@dataclass
class Api:
    """A serving app, its test client and helpers."""

    app: Quart
    client: TestClientProtocol
    config: Config

    def headers(self, user: User) -> dict[str, str]:
        return auth_headers(self.config, user)

    async def new_user(self) -> tuple[User, dict[str, str]]:
        user = await make_user()
        return user, self.headers(user)

    async def call(
        self, method: str, path: str, user: User | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        """Send a request; returns (status, parsed JSON or None)."""
        headers = dict(kwargs.pop("headers", {}) or {})
        if user is not None:
            headers.update(self.headers(user))
        response = await self.client.open(path, method=method, headers=headers, **kwargs)
        raw = await response.get_data()
        if response.mimetype == "application/json":
            return response.status_code, json.loads(raw)
        return response.status_code, raw

    async def import_videos(self, user: User, list_id: object, body: dict[str, Any]) -> Any:
        """POST ``body`` (``{"videos": [...]}``, optionally name/priority) as a JSON
        import into the list; asserts it is accepted (202) and returns the answer."""
        status, answer = await self.call(
            "POST", f"/api/lists/{list_id}/videos/bulk", user, json=body
        )
        assert status == 202, answer
        return answer

    async def assert_not_found(self, user: User, requests: Iterable[tuple[str, str]]) -> None:
        """Every ``(method, path)`` answers ``user`` with the JSON 404 ``not_found`` (what
        a stranger, an unknown id and a malformed id all get)."""
        for method, path in requests:
            status, body = await self.call(method, path, user)
            assert status == 404, (method, path)
            assert body["code"] == "not_found", (method, path)


ApiFactory = Callable[..., contextlib.AbstractAsyncContextManager[Api]]


@pytest.fixture(scope="session")
def quart_redis_url(redis_url: str) -> str:
    return redis_url.rsplit("/", 1)[0] + f"/{QUART_REDIS_DB}"


@pytest.fixture
def api_factory(make_config: Callable[..., Config], quart_redis_url: str) -> ApiFactory:
    """``async with api_factory(database_url, **config_overrides) as api: ...``"""

    @contextlib.asynccontextmanager
    async def build(database_url: str, **overrides: Any) -> AsyncIterator[Api]:
        overrides.setdefault("redis_url", quart_redis_url)
        config = make_config(database_url, **overrides)
        app = create_app(config)
        async with app.test_app() as test_app:
            yield Api(app, test_app.test_client(), config)

    return build


@pytest.fixture
async def api(any_database_url: str, api_factory: ApiFactory) -> AsyncIterator[Api]:
    """An app over PostgreSQL, then over SQLite."""
    async with api_factory(any_database_url) as built:
        yield built


@pytest.fixture
async def pg_api(pg_database_url: str, api_factory: ApiFactory) -> AsyncIterator[Api]:
    """An app over PostgreSQL only (for tests where the database does not matter)."""
    async with api_factory(pg_database_url) as built:
        yield built


class Published:
    """Records what the app publishes through its ProgressEmitter (the emitter's wire
    format and Redis delivery are the socket layer's tests; here: what, to whom)."""

    def __init__(self, api: Api) -> None:
        self.emitter = services_of(api).emitter
        self.seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def __aenter__(self) -> Published:
        real = self.emitter.publish_progress

        async def record(user_id: object, event: dict[str, Any]) -> None:
            await real(user_id, event)  # raises PublishError like the real one
            await self.seen.put({"room": user_room(user_id), "data": event})

        self.emitter.publish_progress = record  # type: ignore[method-assign]
        return self

    async def __aexit__(self, *exc: object) -> None:
        del self.emitter.publish_progress

    async def next(self, wait: float = 5) -> dict[str, Any]:
        async with asyncio.timeout(wait):
            return await self.seen.get()


def services_of(api: Api) -> Any:
    return api.app.extensions["reeltrack.services"]


async def processing_job_with_rq_job(api: Api, rq_status: RQStatus | None) -> ProcessingJob:
    """A ``processing`` job (3 events) whose row names an RQ job of ``rq_status`` (None:
    a slice id RQ does not have)."""
    job = await make_job(await make_list(await make_user()), status=JobStatus.PROCESSING, events=3)
    rq_id = next_rq_job_id(job.id)
    await ProcessingJob.filter(id=job.id).update(rq_job_id=rq_id)
    if rq_status is not None:
        connection = services_of(api).rq_redis
        rq_job = Job.create(JOB_FUNCTION, args=(str(job.id),), id=rq_id, connection=connection)
        rq_job.set_status(rq_status)  # saves the job with that status
    return await ProcessingJob.get(id=job.id)
