"""Redis locks shared by every worker process on every host.

Two shapes cover what the tasks need: :func:`single_flight` (many jobs discover the same missing
Intercom object at once; exactly one creates it) and :func:`exclusive` (one job at a time per
object: a conversation, a contact, an article's translation group).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

import redis
from redis.exceptions import LockError

from workers.errors import TransientServiceError

T = TypeVar("T")

LOCK_SECONDS = 30.0  # longer than one Intercom call incl. budget wait, short enough after a crash
WAIT_SECONDS = 40.0  # a waiter gives up (and the job retries) only if the holder is stuck
JOB_LOCK_SECONDS = 90.0  # one whole job (several calls, each maybe waiting for budget)


def single_flight(
    client: redis.Redis,
    lock_key: str,
    ready: Callable[[], T | None],
    produce: Callable[[], T],
    *,
    what: str,
    lock_seconds: float = LOCK_SECONDS,
    wait_seconds: float = WAIT_SECONDS,
    poll: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``ready()`` if it has a value; otherwise exactly one process runs ``produce()``.

    Why: Intercom creations (tags, data attributes) are cheap to check in Redis but costly or
    failing when repeated, and many jobs discover the same missing object at the same moment.
    The lock (redis-py's token lock: ``SET NX PX`` + compare-and-delete) expires after
    ``lock_seconds``, so a holder killed mid-call blocks the others only that long. ``produce``
    must store its result where ``ready`` looks before returning. A waiter that sees neither a
    value nor a free lock for ``wait_seconds`` raises a transient error: the job is retried.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        value = ready()
        if value is not None:
            return value
        lock = client.lock(lock_key, timeout=lock_seconds)
        if lock.acquire(blocking=False):
            try:
                value = ready()  # filled between our miss and our lock
                return value if value is not None else produce()
            finally:
                with suppress(LockError):  # expired under us: someone else may hold it now
                    lock.release()
        if time.monotonic() >= deadline:
            raise TransientServiceError(
                f"waited {wait_seconds:.0f}s for another worker to create {what}",
                service="intercom-sync",
            )
        sleep(poll)


@contextmanager
def exclusive(
    client: redis.Redis,
    lock_key: str,
    *,
    what: str,
    lock_seconds: float = JOB_LOCK_SECONDS,
    wait_seconds: float = JOB_LOCK_SECONDS,
) -> Iterator[None]:
    """Run the block in one process at a time for one object (a conversation, a contact).

    Why: jobs read, diff and then write, and two jobs for the same object (a webhook and its
    retry, ``created`` then ``replied`` a second apart, a webhook and the nightly refresh) would
    both see the old state and both write. Serialised, the second sees the first's writes and
    sends nothing. If the lock expires under a very slow job, the worst case is that repeated
    write again, never a wrong state. Waiting longer than ``wait_seconds`` is a transient error.
    """
    lock = client.lock(lock_key, timeout=lock_seconds, blocking_timeout=wait_seconds)
    if not lock.acquire():
        raise TransientServiceError(
            f"{what} is being processed by another job", service="intercom-sync"
        )
    try:
        yield
    finally:
        with suppress(LockError):
            lock.release()
