"""Test-only Celery tasks that exercise the worker backbone before the domain tasks exist.

A worker loads them with ``--include tests.probe_tasks``. They are declared exactly as the
domain tasks are (``SyncTask`` base, ``run_with_policy`` around a plain logic function, the
process's ``get_services()``), so what the integration tests observe is the project's own retry
policy, dead-letter store, redelivery guard, limiter and Intercom client.

Their names live under ``maintenance.`` so that ``workers.jobs.routing.queue_for`` routes them: the
tests enqueue them with the project's ``Enqueuer``, and ``intercom-sync dlq replay`` can put a
parked probe back on its queue as it does for a domain task.

Each probe leaves traces in Redis under ``probe:`` (which process ran it, what it finished), so a
test can tell what happened without parsing logs.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from celery import Task

from workers.clients.services import get_services
from workers.jobs.celery_app import celery
from workers.tasks.base import SyncTask, run_with_policy

PREFIX = "probe:"

ME = "maintenance.probe_me"
TAG = "maintenance.probe_tag"
CONVERSATION = "maintenance.probe_conversation"
SLEEP = "maintenance.probe_sleep"
SELF_KILL = "maintenance.probe_self_kill"
FAIL = "maintenance.probe_fail"


def _probe(name: str) -> Callable[[Callable[..., Any]], Any]:
    """Register ``logic`` as task ``name`` under the project's policy (as ``sync_task`` does)."""

    def decorator(logic: Callable[..., Any]) -> Any:
        def run(self: Task, *args: Any, **kwargs: Any) -> Any:
            return run_with_policy(self, name, logic, args, kwargs, get_services())

        run.__name__ = run.__qualname__ = logic.__name__
        run.__doc__ = logic.__doc__
        # No ``queue=`` (a deprecated task attribute in Celery 5.7): the Enqueuer routes by name.
        return celery.task(name=name, bind=True, base=SyncTask)(run)

    return decorator


@_probe(ME)
def probe_me(task: Task, job: str, calls: int) -> None:
    """``calls`` budgeted ``GET /me`` calls, resuming after the last one that was answered.

    Progress is kept in Redis, so a retry after ``RateLimited`` does not repeat answered calls:
    the fake sees exactly ``jobs * calls`` requests when nothing is lost or run twice.
    """
    services = get_services()
    progress = f"{PREFIX}me:progress:{job}"
    while int(services.redis.get(progress) or 0) < calls:
        services.intercom.me()
        services.redis.incr(progress)
    services.redis.sadd(f"{PREFIX}me:done", job)


@_probe(TAG)
def probe_tag(task: Task, name: str, conversation_id: str) -> None:
    """Create-or-get the tag ``name``, apply it to the conversation, then make one more call.

    Applying the tag is the non-idempotent side effect: once Intercom has answered it, it is
    recorded, and a retry caused by the last call failing must not apply it again.
    """
    services = get_services()
    applied = f"{PREFIX}tag:applied:{name}"
    if not services.redis.exists(applied):
        tag = services.intercom.create_or_get_tag(name)
        admin_id = services.settings.INTERCOM_ADMIN_ID or "0"
        services.intercom.tag_conversation(conversation_id, tag["id"], admin_id)
        services.redis.set(applied, tag["id"])
    services.intercom.me()
    services.redis.sadd(f"{PREFIX}tag:done", name)


@_probe(CONVERSATION)
def probe_conversation(task: Task, conversation_id: str) -> None:
    """Read a conversation; a 404 is a permanent failure."""
    services = get_services()
    services.intercom.get_conversation(conversation_id)
    services.redis.sadd(f"{PREFIX}conversation:done", conversation_id)


@_probe(SLEEP)
def probe_sleep(task: Task, marker: str, seconds: float) -> None:
    """Say which process started, sleep, say which process finished."""
    client = get_services().redis
    client.rpush(f"{PREFIX}started:{marker}", os.getpid())
    time.sleep(seconds)
    client.rpush(f"{PREFIX}finished:{marker}", os.getpid())


@_probe(SELF_KILL)
def probe_self_kill(task: Task, marker: str) -> None:
    """Say which process started, then SIGKILL that process: a job that kills its worker."""
    get_services().redis.rpush(f"{PREFIX}started:{marker}", os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


@_probe(FAIL)
def probe_fail(task: Task, marker: str) -> None:
    """Fail permanently with a message that carries an email address and the real token."""
    token = get_services().settings.INTERCOM_ACCESS_TOKEN
    secret = token.reveal() if token else "unset"
    raise ValueError(f"enrichment for jane.doe@example.com ({marker}) failed: token={secret}")
