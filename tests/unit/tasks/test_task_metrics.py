"""Every outcome of the shared policy moves ``intercom_sync_tasks_total`` once, under the
outcome it really had, and each attempt that ran is timed (the policy's own test fixtures)."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from celery.exceptions import Reject, Retry
from kombu.exceptions import OperationalError

from tests.scrape import Samples, local, value
from tests.unit.tasks import test_retry_policy as policy
from tests.unit.tasks.test_retry_policy import run, server_error
from workers.jobs import errors
from workers.tasks.base import DELIVERIES

fake, services, resend = policy.fake, policy.services, policy.resend
TASK = "probe.policy"


def outcomes(before: Samples, after: Samples) -> dict[str, float]:
    moved = {}
    for outcome in ("succeeded", "retried", "parked", "requeued"):
        delta = (value(after, "intercom_sync_tasks_total", task=TASK, outcome=outcome)
                 - value(before, "intercom_sync_tasks_total", task=TASK, outcome=outcome))
        if delta:
            moved[outcome] = delta
    return moved


def timed(before: Samples, after: Samples) -> float:
    name = "intercom_sync_task_duration_seconds_count"
    return value(after, name, task=TASK) - value(before, name, task=TASK)


def test_success(services) -> None:
    before = local()
    run(services, lambda task, cid: "ok")
    after = local()
    assert outcomes(before, after) == {"succeeded": 1} and timed(before, after) == 1
    assert value(after, "intercom_sync_tasks_in_progress", task=TASK) == 0


def test_retry(services, resend) -> None:
    def fail(task: Any, cid: str) -> None:
        raise server_error()

    before = local()
    with pytest.raises(Retry):
        run(services, fail)
    after = local()
    assert outcomes(before, after) == {"retried": 1} and timed(before, after) == 1


def test_retry_asked_for_by_the_logic(services) -> None:
    def again(task: Any, cid: str) -> None:
        raise Retry("later", when=5)

    before = local()
    with pytest.raises(Retry):
        run(services, again)
    assert outcomes(before, local()) == {"retried": 1}


def test_parked(services) -> None:
    def missing(task: Any, cid: str) -> None:
        raise errors.NotFound("intercom GET /x: 404", service="intercom", status=404)

    before = local()
    with pytest.raises(errors.NotFound):
        run(services, missing)
    after = local()
    assert outcomes(before, after) == {"parked": 1} and timed(before, after) == 1
    assert value(after, "intercom_sync_tasks_in_progress", task=TASK) == 0


def test_parked_after_its_worker_died_too_often_without_running(services, fake) -> None:
    fake.set(f"{DELIVERIES}task-5:0", 3)
    before = local()
    run(services, lambda task, cid: None, task_id="task-5")
    after = local()
    assert outcomes(before, after) == {"parked": 1} and timed(before, after) == 0


def test_requeued_when_the_retry_cannot_be_published(services, resend) -> None:
    resend.apply_async.side_effect = OperationalError("Error 111 connecting to redis")

    def fail(task: Any, cid: str) -> None:
        raise server_error()

    before = local()
    with pytest.raises(Reject):
        run(services, fail)
    assert outcomes(before, local()) == {"requeued": 1}


def test_requeued_when_redis_is_away_before_the_run() -> None:
    server = fakeredis.FakeServer()
    from workers.clients.services import Services

    down = Services(policy.make_settings(), redis_client=fakeredis.FakeRedis(server=server),
                    celery_app=policy.app)  # fmt: skip
    server.connected = False
    before = local()
    with pytest.raises(Reject):
        run(down, lambda task, cid: None)
    after = local()
    assert outcomes(before, after) == {"requeued": 1} and timed(before, after) == 0
