"""The dead-letter store: jobs that could not succeed, kept in Redis for an operator.

Redis has no dead-letter queue, so this is one: a hash per parked job plus an index sorted by
last failure. A job is keyed by its task name and arguments, so the same job failing again
updates its entry (attempts, last failure) instead of adding another. Replay puts the job back
on its queue and removes the entry; the task re-reads current state, so a replay is safe.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from workers.jobs.enqueue import Enqueuer
from workers.jobs.errors import ServiceError, is_transient
from workers.jobs.logs import scrub

PREFIX = "intercom-sync:dlq:"
INDEX = PREFIX + "index"
# How often a job was replayed, kept across park/replay cycles so automatic replay can stop.
REPLAYS = PREFIX + "replays:"
REPLAYS_TTL = 7 * 86400


@dataclass(frozen=True)
class DeadLetter:
    id: str
    task: str
    args: list[Any]
    error_type: str
    error: str
    status: int | None
    code: str | None
    request_id: str | None
    transient: bool
    attempts: int
    first_failed_at: float
    last_failed_at: float
    replays: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """One line for ``dlq list``: id, task, arguments, error."""
        status = f" [{self.status}]" if self.status else ""
        return (f"{self.id}  {self.task}({', '.join(map(str, self.args))})  "
                f"{self.error_type}{status}: {self.error}  attempts={self.attempts}")  # fmt: skip


def entry_id(task: str, args: list[Any] | tuple[Any, ...]) -> str:
    digest = hashlib.sha256(json.dumps([task, list(args)], sort_keys=True).encode()).hexdigest()
    return digest[:16]


class DeadLetters:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def park(
        self, task: str, args: list[Any] | tuple[Any, ...], exc: BaseException, attempts: int
    ) -> DeadLetter:
        """Record ``task(args)`` as failed with ``exc`` (after ``attempts`` runs)."""
        key_id = entry_id(task, args)
        key = PREFIX + key_id
        now = time.time()
        is_service = isinstance(exc, ServiceError)
        fields = {
            "id": key_id,
            "task": task,
            "args": json.dumps(list(args)),
            "error_type": type(exc).__name__,
            "error": scrub(str(exc))[:500],
            "status": str(exc.status) if is_service and exc.status else "",
            "code": (exc.code or "") if is_service else "",
            "request_id": (exc.request_id or "") if is_service else "",
            "transient": "1" if is_transient(exc) else "0",
            "last_failed_at": repr(now),
        }
        pipe = self.client.pipeline()
        pipe.hsetnx(key, "first_failed_at", repr(now))
        pipe.hset(key, mapping=fields)
        pipe.hincrby(key, "attempts", max(1, attempts))
        pipe.zadd(INDEX, {key_id: now})
        pipe.execute()
        return self.get(key_id)  # type: ignore[return-value]

    def get(self, key_id: str) -> DeadLetter | None:
        raw = self.client.hgetall(PREFIX + key_id)
        if not raw:
            return None
        data = {k.decode(): v.decode() for k, v in raw.items()}
        return DeadLetter(
            id=data["id"],
            task=data["task"],
            args=json.loads(data["args"]),
            error_type=data.get("error_type", ""),
            error=data.get("error", ""),
            status=int(data["status"]) if data.get("status") else None,
            code=data.get("code") or None,
            request_id=data.get("request_id") or None,
            transient=data.get("transient") == "1",
            attempts=int(data.get("attempts", "0")),
            first_failed_at=float(data.get("first_failed_at", "0")),
            last_failed_at=float(data.get("last_failed_at", "0")),
            replays=int(self.client.get(REPLAYS + key_id) or 0),
        )

    def __iter__(self) -> Iterator[DeadLetter]:
        for key_id in self.client.zrange(INDEX, 0, -1):
            entry = self.get(key_id.decode())
            if entry is not None:
                yield entry

    def list(self, task: str | None = None) -> list[DeadLetter]:
        """Parked jobs, oldest failure first (optionally of one task)."""
        return [e for e in self if task is None or e.task == task]

    def count(self) -> int:
        return int(self.client.zcard(INDEX))

    def remove(self, key_id: str) -> bool:
        pipe = self.client.pipeline()
        pipe.delete(PREFIX + key_id)
        pipe.zrem(INDEX, key_id)
        deleted, _ = pipe.execute()
        return bool(deleted)

    def replay(self, entry: DeadLetter, enqueuer: Enqueuer) -> str:
        """Put the job back on its queue, then drop the entry; return the new task id.

        Enqueue first: if Redis failed between the two steps the job would be queued and still
        listed (replayed twice, harmless for idempotent tasks), never lost.
        """
        result = enqueuer.enqueue(entry.task, tuple(entry.args))
        pipe = self.client.pipeline()
        pipe.incr(REPLAYS + entry.id)
        pipe.expire(REPLAYS + entry.id, REPLAYS_TTL)
        pipe.execute()
        self.remove(entry.id)
        return result.task_id

    def purge(self, task: str | None = None) -> int:
        removed = 0
        for entry in self.list(task):
            removed += int(self.remove(entry.id))
        return removed

    def as_dict(self, entry: DeadLetter) -> dict[str, Any]:
        data = dict(entry.__dict__)
        data.pop("extra", None)
        return data


def replay_transient(
    store: DeadLetters,
    enqueuer: Enqueuer,
    *,
    min_age: float = 600.0,
    max_replays: int = 3,
    now: float | None = None,
) -> list[str]:
    """Replay parked jobs whose error was transient (the service may be back).

    Only entries older than ``min_age`` seconds (a storm is likely still on just after it parked
    them) and replayed fewer than ``max_replays`` times (a job that keeps failing waits for an
    operator). Returns the ids replayed.
    """
    cutoff = (time.time() if now is None else now) - min_age
    replayed = []
    for entry in store.list():
        if entry.transient and entry.last_failed_at <= cutoff and entry.replays < max_replays:
            try:
                store.replay(entry, enqueuer)
            except KeyError:  # a task name no queue knows (renamed?): leave it to an operator
                continue
            replayed.append(entry.id)
    return replayed
