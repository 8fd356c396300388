"""The journal of progress events that were published but are not yet in the database.

DESIGN section 4, rule 3 lets a worker publish an event whose DB write failed (the live
view keeps working while the DB is down) and keep it in an in-memory retry buffer.  If
the worker process dies before the DB answers, that buffer is gone, yet clients have
seen those events: the next run of the job would continue from the DB's ``last_seq``
and REUSE their seqs with different content.  So such an event is published only once
it is durable somewhere else: in this journal, in Redis.

Layout: one Redis hash per job, ``reeltrack:unpersisted:<job_id>``, field = the seq
(decimal text), value = the event's wire JSON (:meth:`ProgressEvent.to_wire`).  Every
write refreshes the key's TTL (:data:`JOURNAL_TTL_SECONDS`), so a journal nobody ever
recovers (a deleted job, a lost Redis key) cannot grow forever.

* :class:`RedisJournal` stores, lists and removes entries;
* :func:`recover` is what a worker does when it (re)claims a job: it writes the
  journaled events after the job's ``last_seq`` into the history, in seq order, exactly
  as clients saw them, and clears the journal.

The journal is exactly as durable as the Redis holding it: a Redis without persistence
that restarts while a job's DB write is failing loses it (and then the live events of
that moment may be contradicted later, as before this journal existed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis
from pydantic import ValidationError

from models.entities import JobProgressEvent, JobStatus, ProcessingJob
from models.events import ProgressEvent
from models.history import record_event
from quart_app.core.config import REDIS_KEY_PREFIX
from quart_app.core.redis_pools import PoolLimits, async_client
from socket_layer.pooled_redis import DEFAULT_LIMITS

log = logging.getLogger(__name__)

#: the key of one job's journal is this + the job id
JOURNAL_KEY_PREFIX = f"{REDIS_KEY_PREFIX}unpersisted:"
#: a journal untouched for this long expires (refreshed on every write): 3 days is far
#: longer than any DB outage a job's run or its retries survive
JOURNAL_TTL_SECONDS = 3 * 24 * 3600
#: seconds one journal operation may take before it counts as failed
JOURNAL_TIMEOUT = 2.0


class JournalError(RuntimeError):
    """The journal could not be read or written (Redis unreachable or erroring)."""


def journal_key(job_id: uuid.UUID | str) -> str:
    """The Redis hash holding the unpersisted events of ``job_id``."""
    return f"{JOURNAL_KEY_PREFIX}{job_id}"


class Journal(Protocol):
    """What the publisher and the recovery need (a fake in unit tests)."""

    async def put(self, event: ProgressEvent) -> None: ...

    async def remove(self, job_id: uuid.UUID, seqs: Iterable[int]) -> None: ...

    async def entries(self, job_id: uuid.UUID) -> dict[int, dict[str, Any]]: ...

    async def clear(self, job_id: uuid.UUID) -> None: ...


class RedisJournal:
    """The journal in Redis; one instance per event loop (redis.asyncio clients are
    bound to the loop that first uses them)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        ttl: int = JOURNAL_TTL_SECONDS,
        timeout: float = JOURNAL_TIMEOUT,
        owned: bool = False,
    ) -> None:
        """``redis``: a client to use; ``owned``: :meth:`close` closes it."""
        self.redis = redis
        self.ttl = ttl
        self.timeout = timeout
        self._owned = owned

    @classmethod
    def from_url(
        cls, redis_url: str, *, limits: PoolLimits = DEFAULT_LIMITS, **kwargs: Any
    ) -> RedisJournal:
        """A journal with its own client (connects lazily, on first use)."""
        client = async_client(redis_url, limits, socket_timeout=2, socket_connect_timeout=2)
        return cls(client, owned=True, **kwargs)

    async def _run(self, what: str, coro: Any) -> Any:
        try:
            return await asyncio.wait_for(coro, self.timeout)
        except Exception as exc:  # redis raises several unrelated types, plus timeouts
            raise JournalError(f"journal {what} failed: {type(exc).__name__}: {exc}") from exc

    async def put(self, event: ProgressEvent) -> None:
        """Store ``event`` under its job and seq (replacing an entry of the same seq) and
        refresh the key's TTL, atomically (MULTI/EXEC).

        Returns only once Redis acknowledged the write; raises :class:`JournalError`
        otherwise (the event must then not be published).
        """
        key = journal_key(event.job_id)
        wire = json.dumps(event.to_wire(), separators=(",", ":"))

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, str(event.seq), wire)
                pipe.expire(key, self.ttl)
                await pipe.execute()

        await self._run("write", write())

    async def remove(self, job_id: uuid.UUID, seqs: Iterable[int]) -> None:
        """Delete the entries of ``seqs`` (missing ones are ignored); raises
        :class:`JournalError` when Redis did not answer."""
        fields = [str(s) for s in seqs]
        if fields:
            await self._run("remove", self.redis.hdel(journal_key(job_id), *fields))

    async def entries(self, job_id: uuid.UUID) -> dict[int, dict[str, Any]]:
        """Every entry of the job: seq -> wire dict.  An entry that is not a JSON
        object under an integer seq is logged and left out (never raised).  Raises
        :class:`JournalError` when Redis did not answer."""
        raw: dict[Any, Any] = await self._run("read", self.redis.hgetall(journal_key(job_id)))
        found: dict[int, dict[str, Any]] = {}
        for name, value in raw.items():
            try:
                seq = int(name)
                data = json.loads(value)
                if not isinstance(data, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                log.error("job %s: unreadable journal entry %r: %s", job_id, name, exc)
                continue
            found[seq] = data
        return found

    async def clear(self, job_id: uuid.UUID | str) -> None:
        """Delete the job's whole journal; raises :class:`JournalError` when Redis did
        not answer."""
        await self._run("clear", self.redis.delete(journal_key(job_id)))

    async def close(self) -> None:
        """Close the client if this journal created it (never raises)."""
        if self._owned:
            try:
                await asyncio.wait_for(self.redis.aclose(), timeout=2)
            except Exception:  # a dead connection cannot be closed cleanly; nothing to do
                pass


@dataclass
class Recovery:
    """What :func:`recover` did for one job."""

    #: journaled events written into the history now, in seq order
    recovered: list[ProgressEvent] = field(default_factory=list)
    #: the job's last seq afterwards (the next event gets ``last_seq + 1``)
    last_seq: int = 0
    #: entries already in the history (equal, or - should not happen - different)
    already_stored: int = 0
    #: entries that differed from the stored row of their seq (logged as errors)
    conflicting: int = 0
    #: entries that could not be placed (unreadable, or after a hole in the journal)
    unplaceable: int = 0
    #: the DB refused a write: the job is gone, no longer ``processing``, or another
    #: writer moved its last_seq; the caller must not run the job
    refused: bool = False

    @property
    def last_event(self) -> ProgressEvent | None:
        """The newest recovered event (None when nothing was recovered)."""
        return self.recovered[-1] if self.recovered else None


async def recover(journal: Journal, job_id: uuid.UUID, last_seq: int) -> Recovery:
    """Write the journaled events of ``job_id`` after ``last_seq`` into the history.

    Call with the job claimed (status ``processing``, this caller its only writer) and
    ``last_seq`` read from the DB at the claim.  Entries with seq > ``last_seq`` are
    stored with :func:`record_event` one by one in seq order, exactly as they were
    journaled (and published); they must be contiguous from ``last_seq + 1`` - the
    publisher journals a contiguous run - and an entry after a hole is dropped and
    logged.  Entries with seq <= ``last_seq`` were stored before the previous run died
    (their removal is best effort): one equal to its stored row is just removed; one
    that differs is logged as an error (the history wins) and removed.  Then the journal
    is cleared.

    If the DB refuses a write (job deleted, no longer processing, another writer), the
    result says ``refused``; the journal is cleared when the job is gone and kept
    otherwise.  Raises :class:`JournalError` when the journal cannot be read or cleared
    (after a successful write the entries are stored, so a later recovery finds them
    equal to their rows), and the DB's exceptions as they come (the journal is then
    kept: a later recovery starts again from the DB's last_seq).
    """
    result = Recovery(last_seq=last_seq)
    entries = await journal.entries(job_id)
    if not entries:
        return result
    old = {seq: data for seq, data in entries.items() if seq <= last_seq}
    if old:
        stored = dict(
            await JobProgressEvent.filter(job_id=job_id, seq__in=list(old)).values_list(
                "seq", "progress_data"
            )
        )
        for seq, data in sorted(old.items()):
            result.already_stored += 1
            if stored.get(seq) != data:
                result.conflicting += 1
                log.error(
                    "job %s: journaled seq %d differs from its stored row (%s); the history"
                    " wins, the journal entry is dropped",
                    job_id,
                    seq,
                    "missing" if seq not in stored else "different content",
                )
    expected = last_seq + 1
    for seq in sorted(s for s in entries if s > last_seq):
        if seq != expected:
            result.unplaceable += 1
            log.error(
                "job %s: journaled seq %d follows a hole (expected %d); dropped",
                job_id,
                seq,
                expected,
            )
            continue
        try:
            event = ProgressEvent.from_wire(entries[seq])
        except ValidationError as exc:
            result.unplaceable += 1
            log.error("job %s: journaled seq %d is not a valid event: %s", job_id, seq, exc)
            continue
        if event.job_id != job_id or event.seq != seq:
            result.unplaceable += 1
            log.error(
                "job %s: journal entry %d names job %s seq %d", job_id, seq, event.job_id, event.seq
            )
            continue
        if not await record_event(event, expect_status=JobStatus.PROCESSING):
            result.refused = True
            if not await ProcessingJob.exists(id=job_id):
                await journal.clear(job_id)  # deleted: nothing may come back
            log.warning("job %s: recovery of seq %d refused by the DB", job_id, seq)
            return result
        result.recovered.append(event)
        result.last_seq = seq
        expected = seq + 1
    await journal.clear(job_id)
    if result.recovered:
        log.warning(
            "job %s: recovered %d journaled event(s) (seq %d..%d) into the history",
            job_id,
            len(result.recovered),
            result.recovered[0].seq,
            result.last_seq,
        )
    return result
