"""The one decorator every task is declared with: name, queue, retry policy, limits, logging.

Tasks are thin: they take ids, call a plain function that holds the logic, and leave failure
handling here, so the retry policy, the dead-letter store, the redelivery guard and the log lines
are the same for every task (the pattern of Sentry's ``instrumented_task``).

On failure:

* transient errors (429, 5xx, timeouts, connection errors, our own budget running out) are
  retried with exponential backoff and full jitter, capped at ``RETRY_BACKOFF_MAX`` (well under
  the broker's visibility timeout); a 429 waits for the reset Intercom gave;
* other errors (4xx, bad settings, bugs) are parked in the dead-letter store at once, as are
  transient ones whose retries ran out;
* a job of a feature that is switched off (``FeatureOff``) is dropped with one INFO line:
  switching a feature off is a choice, and its queued jobs are not failures;
* a message whose worker died under it more than ``TASK_MAX_DELIVERIES`` times (it is delivered
  again because acknowledgement is late) is parked without running it again;
* when Redis cannot be reached to record the outcome (the retry message, the dead letter, the
  delivery count), the message is put back on its queue (``Reject(requeue=True)``) rather than
  acknowledged: Celery acknowledges a task that raised, and Redis may be back by the time it
  does, which would drop a job that was neither done, retried nor parked. If Redis is still
  away, the message stays unacknowledged and returns after the visibility timeout.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from billiard.einfo import ExceptionInfo
from celery import Task
from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded
from celery.signals import task_retry

from workers.clients.services import FeatureOff, Services, get_services
from workers.jobs import metrics, routing
from workers.jobs.celery_app import celery
from workers.jobs.errors import RateLimited, is_transient, retry_after
from workers.jobs.logs import log_event, scrub

logger = logging.getLogger("intercom_sync.tasks")

F = TypeVar("F", bound=Callable[..., Any])

DELIVERIES = "intercom-sync:deliveries:"
LAST_SUCCESS = "intercom-sync:last-success:"
# Waiting for rate-limit budget is not failing: a backlog may wait many windows.
RATE_LIMIT_EXTRA_RETRIES = 100
# Redis (broker and state) unreachable: the outcome of a run cannot be recorded.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)


class WorkerLost(Exception):
    """The job's worker process died under it too many times (it may be what kills it)."""


@dataclass(frozen=True)
class Decision:
    retry: bool
    countdown: float = 0.0


def backoff(attempt: int, cap: float, base: float = 2.0, rand: Callable[[], float] = random.random
            ) -> float:  # fmt: skip
    """Exponential backoff with full jitter: uniform in [base, min(cap, base * 2**(attempt+1))]
    (the first retry is jittered too, so a storm's jobs do not all come back at once)."""
    ceiling = min(cap, base * (2 ** (attempt + 1)))
    return base + (ceiling - base) * rand() if ceiling > base else ceiling


def decide(exc: BaseException, retries: int, max_retries: int, cap: float,
           rand: Callable[[], float] = random.random) -> Decision:  # fmt: skip
    """Retry or park, and after how long: the whole policy as a plain function."""
    transient = is_transient(exc) or isinstance(exc, SoftTimeLimitExceeded)
    if not transient:
        return Decision(False)
    limit = max_retries + (RATE_LIMIT_EXTRA_RETRIES if isinstance(exc, RateLimited) else 0)
    if retries >= limit:
        return Decision(False)
    wait = retry_after(exc)
    if wait is not None:
        # The service said when budget returns; spread the herd over a couple of seconds.
        return Decision(True, min(cap, max(0.0, wait) + 2.0 * rand()))
    return Decision(True, backoff(retries, cap, rand=rand))


class SyncTask(Task):
    """Base class: late acknowledgement (every task is idempotent) and requeue on worker loss."""

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    typing = True
    # The policy in run_with_policy counts retries (TASK_MAX_RETRIES, more for rate limits);
    # Celery's own default of 3 would otherwise drop a job on its fourth retry.
    max_retries = None


@task_retry.connect
def _drop_traceback_copy(einfo: ExceptionInfo | None = None, **_: Any) -> None:
    """Free the copy of the traceback Celery makes for every retry, at once.

    Celery's tracer wraps each retry in a billiard ``ExceptionInfo`` whose ``tb`` copies every
    frame of the traceback, and on Python 3.11+ each frame's code positions too
    (``list(code.co_positions())``: a 4-tuple of ints per bytecode instruction, about 4,000 of
    them and half a megabyte for the frames of one retry). The copy sits in a reference cycle (the
    retry's traceback holds the tracer's frame, which is still running and holds the
    ``ExceptionInfo``), so it lives until Python's rare full garbage collection; a pool
    process that retries hundreds of jobs a minute (a backlog waiting for Intercom budget)
    piles up a hundred megabytes of it, and CPython keeps the grown arenas afterwards. Nothing
    reads ``tb`` after this signal: the main process logs the retry from the text traceback
    (``einfo.traceback``) and the exception, which stay.
    """
    if einfo is not None:
        einfo.tb = None


def _delivery_count(services: Services, key: str) -> int:
    pipe = services.redis.pipeline()
    pipe.incr(key)
    pipe.expire(key, services.settings.BROKER_VISIBILITY_TIMEOUT * 2)
    count, _ = pipe.execute()
    return int(count)


def _forget_deliveries(services: Services, key: str) -> None:
    """Best effort: the counter expires by itself, and a run's outcome must not hang on it."""
    with suppress(redis.RedisError):
        services.redis.delete(key)


def _requeue(reason: BaseException, fields: dict[str, Any]) -> Reject:
    """Put the message back instead of letting Celery acknowledge a job whose outcome could
    not be recorded (see the module docstring)."""
    metrics.task_finished(fields["task"], "requeued")
    log_event(logger, "task.requeued", logging.WARNING, error_type=type(reason).__name__,
              error=scrub(str(reason))[:300], **fields)  # fmt: skip
    return Reject(reason, requeue=True)


@contextmanager
def _requeue_if_unreachable(fields: dict[str, Any]) -> Iterator[None]:
    """Bookkeeping the outcome depends on: if Redis is away, requeue rather than lose the job."""
    try:
        yield
    except UNREACHABLE as exc:
        raise _requeue(exc, fields) from None


def run_with_policy(task: Task, name: str, fn: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any], services: Services) -> Any:  # fmt: skip
    """Run ``fn`` once under the shared policy (see the module docstring)."""
    settings = services.settings
    request = task.request
    fields = {"task": name, "task_id": request.id, "attempt": request.retries + 1}
    delivery_key = f"{DELIVERIES}{request.id}:{request.retries}"
    with _requeue_if_unreachable(fields):
        deliveries = _delivery_count(services, delivery_key)
    if deliveries > settings.TASK_MAX_DELIVERIES:
        lost = WorkerLost(f"delivered {deliveries - 1} times; its worker died each time")
        with _requeue_if_unreachable(fields):
            services.dead_letters.park(name, args, lost, attempts=deliveries - 1)
        _forget_deliveries(services, delivery_key)
        metrics.task_finished(name, "parked")
        log_event(logger, "task.parked", logging.ERROR, reason="worker_lost", **fields)
        return None
    started = time.monotonic()
    log_event(logger, "task.started", task_args=list(args), **fields)
    try:
        with metrics.task_running(name):
            result = fn(task, *args, **kwargs)
    except Retry:
        _forget_deliveries(services, delivery_key)
        metrics.task_finished(name, "retried")
        raise
    except FeatureOff as exc:
        # Queued before its feature was switched off (or by a receiver that still had it on):
        # switching a feature off is a choice, not a failure to park for an operator.
        _forget_deliveries(services, delivery_key)
        log_event(logger, "task.dropped", logging.INFO, reason=str(exc), **fields)
        metrics.task_finished(name, "dropped")
        return None
    except Exception as exc:
        _forget_deliveries(services, delivery_key)
        decision = decide(exc, request.retries, settings.TASK_MAX_RETRIES,
                          settings.RETRY_BACKOFF_MAX)  # fmt: skip
        error = scrub(str(exc))[:300]
        if decision.retry:
            log_event(logger, "task.retry", logging.WARNING, error_type=type(exc).__name__,
                      error=error, countdown=round(decision.countdown, 2),
                      request_id=getattr(exc, "request_id", None), **fields)  # fmt: skip
            try:
                raise task.retry(exc=exc, countdown=decision.countdown,
                                 max_retries=None) from None  # fmt: skip
            except Retry:
                metrics.task_finished(name, "retried")
                raise
            except Reject as failed:
                # Celery could not publish the retry and would reject this message without
                # requeueing it, i.e. drop the job: put it back on its queue instead.
                reason = failed.reason if isinstance(failed.reason, BaseException) else exc
                raise _requeue(reason, fields) from None
        with _requeue_if_unreachable(fields):
            services.dead_letters.park(name, args, exc, attempts=request.retries + 1)
        metrics.task_finished(name, "parked")
        log_event(logger, "task.parked", logging.ERROR, error_type=type(exc).__name__,
                  error=error, request_id=getattr(exc, "request_id", None), **fields)  # fmt: skip
        raise
    _forget_deliveries(services, delivery_key)
    with suppress(redis.RedisError):  # bookkeeping: the job itself is done
        services.redis.set(LAST_SUCCESS + name, repr(time.time()))
    metrics.task_finished(name, "succeeded")
    log_event(logger, "task.succeeded",
              duration_ms=round((time.monotonic() - started) * 1000, 1), **fields)  # fmt: skip
    return result


def sync_task(name: str, **options: Any) -> Callable[[F], Any]:
    """Register ``fn`` as the Celery task ``name`` (a stable dotted name from :mod:`routing`).

    ``fn`` receives the bound task as its first argument, then the task's arguments.
    """
    if name not in routing.TASK_NAMES:
        raise ValueError(f"{name!r} is not a task name declared in workers.jobs.routing")

    def decorator(fn: F) -> Any:
        @functools.wraps(fn)
        def run(self: Task, *args: Any, **kwargs: Any) -> Any:
            return run_with_policy(self, name, fn, args, kwargs, get_services())

        # The queue comes from task_routes (celery_app), the one place routing is configured.
        return celery.task(name=name, bind=True, base=SyncTask, **options)(run)

    return decorator
