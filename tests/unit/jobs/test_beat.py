"""Beat waits out a Redis failover instead of exiting (the drill in
tests/faults/test_sentinel_failover.py runs it for real)."""

from __future__ import annotations

import pytest
import redis
from celery.signals import beat_init
from redbeat.schedulers import acquire_distributed_beat_lock
from redis.exceptions import LockNotOwnedError
from redis.sentinel import MasterNotFoundError

from tests.conftest import make_settings
from workers.jobs import beat
from workers.jobs.celery_app import celery_config


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def failing(errors: list[BaseException], result: str = "ticked"):
    def call() -> str:
        if errors:
            raise errors.pop(0)
        return result

    return call


def test_a_tick_is_retried_while_the_sentinels_have_no_master() -> None:
    clock = Clock()
    errors: list[BaseException] = [redis.ConnectionError("refused"),
                                   MasterNotFoundError("no master"), redis.TimeoutError()]
    assert beat._patiently("tick", failing(errors), sleep=clock.sleep, clock=clock) == "ticked"
    assert clock.slept == [beat.PAUSE] * 3


def test_beat_gives_up_before_its_lock_could_expire() -> None:
    clock = Clock()
    errors: list[BaseException] = [redis.ConnectionError("refused")] * 1000
    with pytest.raises(redis.ConnectionError):
        beat._patiently("tick", failing(errors), sleep=clock.sleep, clock=clock)
    lock_timeout = celery_config(make_settings(REDIS_URL="redis://h:6379/0"))[
        "redbeat_lock_timeout"]
    assert beat.FAILOVER_PATIENCE <= clock.now < lock_timeout


def test_a_lost_lock_is_not_retried() -> None:
    clock = Clock()
    with pytest.raises(LockNotOwnedError):
        beat._patiently("tick", failing([LockNotOwnedError("taken over")]), sleep=clock.sleep,
                        clock=clock)  # fmt: skip
    assert clock.slept == []


def test_the_lock_wait_replaces_redbeats_own() -> None:
    receivers = [r() if callable(r) else r for _, r in beat_init.receivers]
    assert beat._acquire_lock in receivers
    assert acquire_distributed_beat_lock not in receivers
    config = celery_config(make_settings(REDIS_URL="redis://h:6379/0"))
    assert config["beat_scheduler"] == "workers.jobs.beat:FailoverScheduler"
