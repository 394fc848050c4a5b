"""A retry leaves nothing behind in the pool process: Celery's real tracer, our real policy.

Why: a backlog that binds the Intercom budget retries thousands of jobs (``RateLimited``), and
each retry used to leave a copy of its traceback (with every frame's code positions) in a
reference cycle until Python's rare full collection: pool processes grew from about 60 MB to
over 160 MB during the drain (docs/BENCHMARKS.md). The cyclic collector is switched off here,
so what the test sees is what plain reference counting frees, deterministically.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any
from unittest import mock

import fakeredis
import pytest
from billiard.einfo import ExceptionInfo, Traceback
from celery import Celery
from celery.app.trace import build_tracer
from celery.exceptions import Retry

from tests.conftest import make_settings
from workers.clients.services import Services
from workers.jobs import errors
from workers.tasks.base import SyncTask, run_with_policy

app = Celery("retry-memory-tests", set_as_current=False)
services = Services(make_settings(TASK_MAX_RETRIES="8"),
                    redis_client=fakeredis.FakeRedis(server=fakeredis.FakeServer()),
                    celery_app=app)  # fmt: skip


def out_of_budget(task: Any, job: str) -> None:
    raise errors.RateLimited("intercom budget spent for this window", service="intercom",
                             code="budget_exhausted", retry_after=1.0)  # fmt: skip


@app.task(bind=True, base=SyncTask, name="probe.retry_memory")
def limited(self, job: str) -> None:
    return run_with_policy(self, "probe.retry_memory", out_of_budget, (job,), {}, services)


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def traced_retry(n: int) -> ExceptionInfo:
    """One delivery through Celery's tracer, as a pool process runs it; the retry message is
    recorded instead of sent."""
    tracer = build_tracer(limited.name, limited, app=app, eager=False, propagate=False)
    signature = mock.MagicMock(name="retry-signature")
    with mock.patch.object(type(limited._get_current_object()), "signature_from_request",
                           return_value=signature):  # fmt: skip
        result = tracer(f"task-{n}", (f"job-{n}",), {},
                        {"id": f"task-{n}", "retries": 0, "delivery_info": {}})  # fmt: skip
    signature.apply_async.assert_called_once()
    einfo = result[0]
    assert isinstance(einfo, ExceptionInfo), result
    return einfo


def alive(kind: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is kind)


def test_a_retry_hands_back_no_copy_of_its_traceback(no_cycle_collector: None) -> None:
    einfo = traced_retry(0)
    assert einfo.tb is None
    # What the main process reads to log and report the retry is still there.
    retry = getattr(einfo.exception, "exc", einfo.exception)  # billiard may wrap it
    assert isinstance(retry, Retry) and isinstance(retry.exc, errors.RateLimited)
    assert "Retry in" in einfo.traceback


def test_retries_leave_no_traceback_copies_behind(no_cycle_collector: None) -> None:
    before = alive(Traceback)
    for n in range(30):
        traced_retry(n)
    # Without the fix each retry leaves one Traceback (and its frames' code positions) in a
    # cycle that only the full collection frees: 30 here.
    assert alive(Traceback) - before == 0
