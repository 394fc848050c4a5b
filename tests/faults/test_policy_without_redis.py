"""The retry policy when Redis goes away under a running job: put the message back, never drop it.

Why here: the Redis-restart scenario (``test_redis_restart``) found that a job whose Redis call
failed mid-run could end as a plain Celery failure, which Celery acknowledges: the policy's own
bookkeeping (deleting the delivery counter) raised before it could decide, or the retry could
not be published and Celery rejected the message without requeueing it. Whether that loses the
job depends on whether Redis is back when the acknowledgement is sent, a race the scenario hits
only now and then; these tests pin each path without the race (Redis down is fakeredis with
its connection switched off, the retry's publish is refused).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import fakeredis
import pytest
import redis
from celery import Celery
from celery.exceptions import Reject, Retry
from kombu.exceptions import OperationalError

from tests.conftest import make_settings
from workers.clients.services import Services
from workers.jobs import errors
from workers.tasks.base import SyncTask, run_with_policy

pytestmark = pytest.mark.faults

app = Celery("policy-without-redis-tests", set_as_current=False)


@app.task(bind=True, base=SyncTask, name="probe.redis_loss")
def probe(self: Any, *args: Any) -> None:  # never run: the tests call run_with_policy
    raise AssertionError("not used")


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def services(server: fakeredis.FakeServer) -> Services:
    settings = make_settings(TASK_MAX_RETRIES="8", TASK_MAX_DELIVERIES="3")
    return Services(settings, redis_client=fakeredis.FakeRedis(server=server), celery_app=app)


@pytest.fixture
def publish() -> Iterator[mock.MagicMock]:
    """The retry's message, as Celery would publish it through the broker (recorded)."""
    signature = mock.MagicMock(name="retry-signature")
    with mock.patch.object(type(probe._get_current_object()), "signature_from_request",
                           return_value=signature):  # fmt: skip
        yield signature


def run(services: Services, fn: Any) -> Any:
    probe.push_request(id="task-1", retries=0, called_directly=False, args=["doc-1"])
    try:
        return run_with_policy(probe, "probe.redis_loss", fn, ("doc-1",), {}, services)
    finally:
        probe.pop_request()


def redis_goes_away(server: fakeredis.FakeServer) -> Any:
    def fn(task: Any, document_id: str) -> None:
        server.connected = False
        raise redis.ConnectionError("Connection closed by server.")

    return fn


def test_a_job_whose_redis_went_away_is_retried_when_the_broker_takes_the_retry(
    services: Services, server: fakeredis.FakeServer, publish: mock.MagicMock
) -> None:
    # The policy's own bookkeeping fails too; it must not keep the job from its retry.
    with pytest.raises(Retry):
        run(services, redis_goes_away(server))
    publish.apply_async.assert_called_once()


def test_a_job_whose_retry_cannot_be_published_is_requeued_not_dropped(
    services: Services, server: fakeredis.FakeServer, publish: mock.MagicMock
) -> None:
    publish.apply_async.side_effect = OperationalError("Error 111 connecting to redis")
    with pytest.raises(Reject) as rejected:  # Celery's own answer would be requeue=False
        run(services, redis_goes_away(server))
    assert rejected.value.requeue is True


def test_a_job_that_cannot_be_parked_is_requeued(
    services: Services, server: fakeredis.FakeServer
) -> None:
    def refused(task: Any, document_id: str) -> None:
        server.connected = False
        raise errors.ValidationFailed("intercom PUT: 400", service="intercom", status=400)

    with pytest.raises(Reject) as rejected:
        run(services, refused)
    assert rejected.value.requeue is True


def test_a_job_started_while_redis_is_away_is_requeued_without_running(
    services: Services, server: fakeredis.FakeServer
) -> None:
    server.connected = False
    ran = []
    with pytest.raises(Reject) as rejected:
        run(services, lambda task, document_id: ran.append(document_id))
    assert rejected.value.requeue is True and ran == []


def test_a_job_done_just_before_redis_went_away_succeeds(
    services: Services, server: fakeredis.FakeServer
) -> None:
    def done(task: Any, document_id: str) -> str:
        server.connected = False  # the success bookkeeping fails; the work is done
        return "updated"

    assert run(services, done) == "updated"
