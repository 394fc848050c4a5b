"""The shared retry policy: ``decide``/``backoff`` as plain functions, then ``run_with_policy``
driving a real Celery task object (its ``retry`` is Celery's own; only the re-send is stubbed).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from typing import Any
from unittest import mock

import fakeredis
import pytest
import redis
import requests
from celery import Celery
from celery.exceptions import Retry, SoftTimeLimitExceeded

from tests.conftest import make_settings
from workers.clients.services import FeatureOff, Services
from workers.jobs import errors
from workers.jobs.dead_letters import DeadLetters
from workers.tasks.base import (
    DELIVERIES,
    LAST_SUCCESS,
    RATE_LIMIT_EXTRA_RETRIES,
    Decision,
    SyncTask,
    WorkerLost,
    backoff,
    decide,
    run_with_policy,
    sync_task,
)

CAP = 600.0


def server_error() -> errors.ServerError:
    return errors.ServerError("intercom GET /me: 503", service="intercom", status=503)


def rate_limited(wait: float | None = 7.0) -> errors.RateLimited:
    return errors.RateLimited("intercom GET /me: 429", service="intercom", status=429,
                              retry_after=wait)  # fmt: skip


# --- backoff ------------------------------------------------------------------------------


def test_backoff_ceiling_doubles_per_attempt_up_to_the_cap() -> None:
    highest = [backoff(n, cap=100.0, rand=lambda: 1.0) for n in range(10)]
    assert 2.0 <= highest[0] <= 4.0
    for before, after in itertools.pairwise(highest):
        assert after == min(100.0, 2 * before)
    assert highest[-1] == 100.0
    lowest = [backoff(n, cap=100.0, rand=lambda: 0.0) for n in range(10)]
    assert all(0.0 <= low <= high for low, high in zip(lowest, highest, strict=True))


def test_backoff_stays_within_bounds_for_any_draw() -> None:
    for attempt in range(30):
        for draw in (0.0, 0.123, 0.5, 0.999, 1.0):
            value = backoff(attempt, cap=30.0, rand=lambda d=draw: d)
            assert 0.0 <= value <= 30.0


def test_backoff_below_base_cap_uses_the_cap() -> None:
    assert backoff(5, cap=1.0, rand=lambda: 0.7) == 1.0


# --- decide --------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [
    server_error(),
    errors.ConnectionFailed("intercom GET /me: ReadTimeout", service="intercom"),
    requests.exceptions.ReadTimeout("raw timeout"),
    requests.exceptions.ConnectionError("raw refused"),
    ConnectionResetError("reset by peer"),
    SoftTimeLimitExceeded(),
], ids=lambda e: type(e).__name__)  # fmt: skip
def test_transient_errors_are_retried_with_growing_capped_countdowns(exc) -> None:
    highs = [decide(exc, n, max_retries=8, cap=CAP, rand=lambda: 1.0) for n in range(8)]
    assert all(d.retry for d in highs)
    countdowns = [d.countdown for d in highs]
    assert countdowns == sorted(countdowns) and countdowns[-1] > countdowns[1] > 2.0
    capped = decide(exc, 7, max_retries=8, cap=20.0, rand=lambda: 1.0)
    assert capped == Decision(True, 20.0)


@pytest.mark.parametrize("exc", [
    redis.exceptions.ConnectionError("Error 111 connecting to redis:6379"),
    redis.exceptions.TimeoutError("Timeout reading from socket"),
    TimeoutError("timed out"),
], ids=lambda e: f"{type(e).__module__}.{type(e).__name__}")  # fmt: skip
def test_redis_and_socket_timeouts_are_transient(exc) -> None:
    # The limiter and the dead-letter store talk to Redis inside every task: a Redis restart or
    # failover (DESIGN: "no event is lost: ... Redis restart") raises redis-py's own
    # ConnectionError/TimeoutError, which are not builtin ConnectionErrors. They must be
    # retried, not parked as permanent failures that automatic replay then never picks up.
    assert decide(exc, 0, max_retries=8, cap=CAP).retry


def test_retry_countdowns_are_jittered() -> None:
    low = decide(server_error(), 3, max_retries=8, cap=CAP, rand=lambda: 0.0)
    high = decide(server_error(), 3, max_retries=8, cap=CAP, rand=lambda: 1.0)
    assert low.countdown < high.countdown


def test_first_retry_is_jittered_too() -> None:
    # A 5xx storm fails many jobs at once; if their first retry has no jitter they all come
    # back in the same instant and hit the recovering service together.
    countdowns = {decide(server_error(), 0, max_retries=8, cap=CAP, rand=lambda d=d: d).countdown
                  for d in (0.0, 0.5, 1.0)}  # fmt: skip
    assert len(countdowns) == 3


def test_429_waits_for_the_reset_it_reported() -> None:
    for draw in (0.0, 0.5, 1.0):
        decision = decide(rate_limited(7.0), 0, max_retries=8, cap=CAP, rand=lambda d=draw: d)
        assert decision.retry
        assert 7.0 <= decision.countdown <= 9.0
        assert decision.countdown == pytest.approx(7.0 + 2.0 * draw)


def test_429_wait_is_capped_and_never_negative() -> None:
    assert decide(rate_limited(900.0), 0, 8, cap=60.0, rand=lambda: 0.5) == Decision(True, 60.0)
    assert decide(rate_limited(-3.0), 0, 8, cap=60.0, rand=lambda: 0.0) == Decision(True, 0.0)


def test_rate_limited_without_a_wait_falls_back_to_backoff() -> None:
    decision = decide(rate_limited(None), 2, 8, cap=CAP, rand=lambda: 1.0)
    assert decision == Decision(True, backoff(2, CAP, rand=lambda: 1.0))


@pytest.mark.parametrize("exc", [
    errors.NotFound("404", service="intercom", status=404),
    errors.ValidationFailed("400", service="intercom", status=400),
    errors.Unauthorized("401", service="intercom", status=401),
    errors.Conflict("409", service="sanity", status=409),
    errors.PermanentServiceError("418", service="intercom", status=418),
    errors.InvalidId("bad id"),
    FeatureOff("articles is off"),
    ValueError("bug"),
    KeyError("bug"),
    NotImplementedError("not built"),
], ids=lambda e: type(e).__name__)  # fmt: skip
def test_permanent_errors_are_parked_at_once(exc) -> None:
    assert decide(exc, 0, max_retries=8, cap=CAP) == Decision(False)


def test_transient_errors_are_parked_when_retries_run_out() -> None:
    assert decide(server_error(), 7, max_retries=8, cap=CAP).retry
    assert decide(server_error(), 8, max_retries=8, cap=CAP) == Decision(False)
    assert decide(server_error(), 0, max_retries=0, cap=CAP) == Decision(False)


def test_rate_limited_gets_extra_retries() -> None:
    assert decide(rate_limited(), 8, max_retries=8, cap=CAP).retry
    last = 8 + RATE_LIMIT_EXTRA_RETRIES - 1
    assert decide(rate_limited(), last, max_retries=8, cap=CAP).retry
    assert decide(rate_limited(), last + 1, max_retries=8, cap=CAP) == Decision(False)
    assert RATE_LIMIT_EXTRA_RETRIES >= 50


# --- run_with_policy with a real Celery task ------------------------------------------------

app = Celery("policy-tests", set_as_current=False)


@app.task(bind=True, base=SyncTask, name="probe.policy")
def probe(self, *args: Any) -> None:  # the body is never run; tests call run_with_policy
    raise AssertionError("not used")


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def services(fake: fakeredis.FakeRedis) -> Services:
    settings = make_settings(TASK_MAX_RETRIES="8", TASK_MAX_DELIVERIES="3",
                             RETRY_BACKOFF_MAX="60")  # fmt: skip
    return Services(settings, redis_client=fake, celery_app=app)


@pytest.fixture
def resend() -> Iterator[mock.MagicMock]:
    """Celery's retry re-sends the task through the broker: record that instead."""
    signature = mock.MagicMock(name="retry-signature")
    task_class = type(probe._get_current_object())  # the app is lazy: probe is a proxy
    with mock.patch.object(task_class, "signature_from_request", return_value=signature):
        yield signature


def run(services: Services, fn, *, retries: int = 0, task_id: str = "task-1",
        args: tuple = ("conv-9",)) -> Any:  # fmt: skip
    probe.push_request(id=task_id, retries=retries, called_directly=False, args=list(args))
    try:
        return run_with_policy(probe, "probe.policy", fn, args, {}, services)
    finally:
        probe.pop_request()


def events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "intercom_sync.tasks"]


def test_success_logs_records_last_success_and_clears_the_delivery_count(
    services, fake, caplog
) -> None:
    caplog.set_level(logging.INFO)
    seen = []
    assert run(services, lambda task, cid: seen.append((task, cid)) or "done") == "done"
    assert seen == [(probe, "conv-9")]
    assert events(caplog) == ["task.started", "task.succeeded"]
    started = next(r for r in caplog.records if r.getMessage() == "task.started")
    assert (started.task, started.task_id, started.attempt, started.task_args) == (
        "probe.policy", "task-1", 1, ["conv-9"])
    assert float(fake.get(LAST_SUCCESS + "probe.policy")) > 0
    assert fake.keys(DELIVERIES + "*") == []


def test_transient_error_is_retried_with_the_decided_countdown(services, fake, resend,
                                                               caplog) -> None:
    caplog.set_level(logging.INFO)

    def fail(task, cid):
        raise server_error()

    with pytest.raises(Retry) as raised:
        run(services, fail, retries=2)
    assert 0.0 <= raised.value.when <= backoff(2, 60.0, rand=lambda: 1.0)
    resend.apply_async.assert_called_once()
    assert services.dead_letters.count() == 0
    assert events(caplog) == ["task.started", "task.retry"]
    assert fake.keys(DELIVERIES + "*") == []


@pytest.mark.parametrize("retries", [3, 4, 7])
def test_retries_follow_task_max_retries_not_celerys_default_of_3(services, resend,
                                                                   retries) -> None:
    # TASK_MAX_RETRIES is 8 here. Celery's Task.retry(max_retries=None) falls back to the task
    # class's max_retries (Celery's default: 3) and past it re-raises the exception instead of
    # retrying: the job would then be neither retried nor parked, but acknowledged and lost.
    def fail(task, cid):
        raise server_error()

    with pytest.raises(Retry):
        run(services, fail, retries=retries)
    assert services.dead_letters.count() == 0


def test_rate_limited_job_keeps_retrying_for_many_windows(services, resend) -> None:
    def limited(task, cid):
        raise rate_limited(4.0)

    for retries in (0, 5, 20, 60):
        with pytest.raises(Retry) as raised:
            run(services, limited, retries=retries)
        assert 4.0 <= raised.value.when <= 6.0
    assert services.dead_letters.count() == 0


def test_permanent_error_is_parked_once_and_re_raised(services, caplog) -> None:
    caplog.set_level(logging.INFO)

    def missing(task, cid):
        raise errors.NotFound("intercom GET /conversations/conv-9: 404 not_found",
                              service="intercom", status=404, code="not_found",
                              request_id="req-1")  # fmt: skip

    with pytest.raises(errors.NotFound):
        run(services, missing)
    [entry] = services.dead_letters.list()
    assert (entry.task, entry.args, entry.error_type, entry.status, entry.code) == (
        "probe.policy", ["conv-9"], "NotFound", 404, "not_found")
    assert entry.attempts == 1 and entry.request_id == "req-1" and not entry.transient
    assert events(caplog) == ["task.started", "task.parked"]


def test_transient_error_is_parked_when_retries_run_out(services) -> None:
    def fail(task, cid):
        raise server_error()

    with pytest.raises(errors.ServerError):
        run(services, fail, retries=8)
    [entry] = services.dead_letters.list()
    assert entry.attempts == 9 and entry.transient and entry.status == 503


def test_logged_errors_are_scrubbed(services, caplog) -> None:
    caplog.set_level(logging.INFO)

    def leak(task, cid):
        raise ValueError("lookup of jane@example.com failed, token=sk_live_abc123")

    with pytest.raises(ValueError):
        run(services, leak)
    parked = next(r for r in caplog.records if r.getMessage() == "task.parked")
    assert "jane@example.com" not in parked.error and "sk_live_abc123" not in parked.error
    [entry] = services.dead_letters.list()
    assert "jane@example.com" not in entry.error and "sk_live_abc123" not in entry.error


def test_a_message_that_keeps_killing_its_worker_is_parked_without_running(
    services, fake, caplog
) -> None:
    caplog.set_level(logging.INFO)
    calls = []
    # Three deliveries started and never finished (the worker died under each of them).
    fake.set(f"{DELIVERIES}task-7:0", 3)
    assert run(services, lambda task, cid: calls.append(cid), task_id="task-7") is None
    assert calls == []
    [entry] = services.dead_letters.list()
    assert entry.error_type == WorkerLost.__name__ and entry.attempts == 3
    assert events(caplog) == ["task.parked"]
    assert fake.get(f"{DELIVERIES}task-7:0") is None


def test_a_redelivery_under_the_limit_runs(services, fake) -> None:
    fake.set(f"{DELIVERIES}task-8:0", 2)  # two lost deliveries; the third may run
    assert run(services, lambda task, cid: "ok", task_id="task-8") == "ok"
    assert services.dead_letters.count() == 0


def test_deliveries_are_counted_per_retry(services, fake) -> None:
    fake.set(f"{DELIVERIES}task-9:0", 99)  # an old attempt's counter does not count
    assert run(services, lambda task, cid: "ok", task_id="task-9", retries=1) == "ok"


def test_a_retry_raised_by_the_logic_passes_through(services, fake) -> None:
    def asks_for_retry(task, cid):
        raise Retry("later", when=5)

    with pytest.raises(Retry):
        run(services, asks_for_retry)
    assert services.dead_letters.count() == 0
    assert fake.keys(DELIVERIES + "*") == []


def test_sync_task_refuses_an_undeclared_name() -> None:
    with pytest.raises(ValueError, match="not a task name"):
        sync_task("articles.unknown")


def test_sync_task_base_acks_late_and_requeues_on_worker_loss() -> None:
    assert SyncTask.acks_late and SyncTask.reject_on_worker_lost


def test_parked_entry_is_json_serialisable(services) -> None:
    DeadLetters(services.redis).park("probe.policy", ["a"], server_error(), attempts=2)
    [entry] = services.dead_letters.list()
    json.dumps(services.dead_letters.as_dict(entry))


def test_a_job_of_a_switched_off_feature_is_dropped_with_one_info_line(fake, caplog) -> None:
    # Tagging is off (no RULES_PATH) but a conversation job was queued before it was switched
    # off: the real tagging function refuses it, and the job is dropped, not parked.
    from workers.conversations.tagging import tag_conversation

    off = Services(make_settings(RULES_PATH=None, INTERCOM_ADMIN_ID="1295"), redis_client=fake,
                   celery_app=app)  # fmt: skip
    caplog.set_level(logging.INFO)
    assert run(off, lambda task, cid: tag_conversation(off, cid)) is None
    assert off.dead_letters.count() == 0
    assert events(caplog) == ["task.started", "task.dropped"]
    dropped = next(r for r in caplog.records if r.getMessage() == "task.dropped")
    assert dropped.levelno == logging.INFO and "RULES_PATH" in dropped.reason
    assert fake.keys(DELIVERIES + "*") == []
