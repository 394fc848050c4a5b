"""Redis locks shared by every worker process on every host.

Two shapes cover what the tasks need: :func:`single_flight` (many jobs discover the same missing
Intercom object at once; exactly one creates it) and :func:`exclusive` (one job at a time per
object: a conversation, a contact, an article's translation group).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

import redis
import redis.lock
from redis.exceptions import LockError

from workers.jobs.errors import TransientServiceError

T = TypeVar("T")

LOCK_SECONDS = 30.0  # longer than one Intercom call incl. budget wait, short enough after a crash
WAIT_SECONDS = 40.0  # a waiter gives up (and the job retries) only if the holder is stuck
JOB_LOCK_SECONDS = 90.0  # one whole job (several calls, each maybe waiting for budget)
JOB_WAIT_SECONDS = 5.0  # the holder usually finishes in well under a second; then retry later
RELEASE_SECONDS = 3.0  # how long a release rides out a Redis restart before giving up


class Lock(redis.lock.Lock):
    """redis-py's token lock, made safe to acquire across a lost answer.

    Why: redis-py re-sends a command whose connection broke (a Redis restart), so a ``SET NX``
    that landed before its answer was lost comes back "taken" -- by this very holder, which
    would then wait for its own lock until it expires. A key that already holds this
    acquisition's token is ours.
    """

    def do_acquire(self, token: bytes) -> bool:  # type: ignore[override]
        return bool(super().do_acquire(token)) or self.redis.get(self.name) == token


def new_lock(
    client: redis.Redis, lock_key: str, *, seconds: float, wait: float | None = None
) -> Lock:
    """A :class:`Lock` on ``lock_key`` that expires after ``seconds``; ``acquire`` waits
    ``wait`` seconds at most."""
    return client.lock(lock_key, timeout=seconds, blocking_timeout=wait, lock_class=Lock)


def acquire(lock: Lock, *, blocking: bool) -> bool:
    """Acquire ``lock``; if Redis fails mid-way, take back a ``SET`` that may have landed.

    Why: an acquisition that raises may still have stored its token (the answer, not the
    command, was lost), and nobody would release that lock before it expires.
    """
    token = uuid.uuid4().hex.encode()
    try:
        return bool(lock.acquire(blocking=blocking, token=token))
    except (redis.ConnectionError, redis.TimeoutError):
        lock.local.token = token
        with suppress(redis.RedisError):
            release(lock)
        raise


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
        lock = new_lock(client, lock_key, seconds=lock_seconds)
        if acquire(lock, blocking=False):
            try:
                value = ready()  # filled between our miss and our lock
                return value if value is not None else produce()
            finally:
                release(lock)
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
    wait_seconds: float = JOB_WAIT_SECONDS,
    keep_alive: bool = False,
) -> Iterator[None]:
    """Run the block in one process at a time for one object (a conversation, a contact).

    Why: jobs read, diff and then write, and two jobs for the same object (a webhook and its
    retry, ``created`` then ``replied`` a second apart, a webhook and the nightly refresh) would
    both see the old state and both write. Serialised, the second sees the first's writes and
    sends nothing. If the lock expires under a very slow job, the worst case is that repeated
    write again, never a wrong state. A waiter gives up after ``wait_seconds`` with a transient
    error, so the job comes back after a backoff instead of holding a pool process (and its
    time limit) while a stale lock runs out.

    ``keep_alive``: a thread renews the lock every third of ``lock_seconds`` while the block
    runs, so a short ``lock_seconds`` bounds how long a job killed mid-block (SIGKILL, a lost
    host) keeps the next job of its object waiting, without a slow live job losing its lock.
    """
    lock = new_lock(client, lock_key, seconds=lock_seconds, wait=wait_seconds)
    if not acquire(lock, blocking=True):
        raise TransientServiceError(
            f"{what} is being processed by another job", service="intercom-sync"
        )
    stop = threading.Event()
    renewer = None
    if keep_alive:
        renewer = threading.Thread(target=_renew, args=(lock, lock.local.token, stop),
                                   name=f"renew {lock_key}", daemon=True)  # fmt: skip
        renewer.start()
    try:
        yield
    finally:
        stop.set()
        if renewer is not None:
            renewer.join(timeout=RELEASE_SECONDS)
        release(lock)


def _renew(lock: redis.lock.Lock, token: bytes | None, stop: threading.Event) -> None:
    """Reset the lock's expiry every third of its timeout until ``stop``; give up once the lock
    is no longer held with ``token`` (redis-py keeps the token thread-local, so it is passed)."""
    assert lock.timeout is not None
    milliseconds = int(lock.timeout * 1000)
    while token is not None and not stop.wait(lock.timeout / 3):
        try:
            if not lock.lua_reacquire(keys=[lock.name], args=[token, milliseconds],
                                      client=lock.redis):  # fmt: skip
                return
        except redis.RedisError:
            continue  # Redis away for a moment: the next round tries again


def release(
    lock: redis.lock.Lock,
    *,
    within: float = RELEASE_SECONDS,
    poll: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Release ``lock``, retrying for ``within`` seconds while Redis cannot be reached; False
    when it was no longer ours.

    Why: a lock left behind by a Redis restart blocks every later job for its object until it
    expires (a minute or more); riding out the few seconds a restart takes frees it at once.
    A lock that expired under us (someone else may hold it now) is left alone.
    """
    token = lock.local.token
    if token is None:
        return False
    lock.local.token = None  # as redis-py's own release does: this holder is done with it
    deadline = time.monotonic() + within
    while True:
        try:
            lock.do_release(token)
            return True
        except LockError:
            return False
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() >= deadline:
                raise
            sleep(poll)
