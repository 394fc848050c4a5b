"""The worker's scrape-time figures from Redis: queue lengths, unacknowledged jobs, dead letters,
the budget left in the current window, beat jobs' ages, and what a scrape says when Redis is
away (fakeredis with Lua, so the limiter's own scripts run)."""

from __future__ import annotations

import math

import fakeredis
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.conftest import make_settings
from tests.scrape import by_labels, samples, value
from workers.clients.services import Services
from workers.jobs import routing
from workers.tasks.base import LAST_SUCCESS
from workers.tasks.monitoring import RedisFigures

NOW = 1_763_712_000.0


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


def scrape(services: Services) -> dict:
    registry = CollectorRegistry()
    registry.register(RedisFigures(services, clock=lambda: NOW))
    return samples(generate_latest(registry))


def build(server: fakeredis.FakeServer, **env: str) -> Services:
    return Services(make_settings(**env), redis_client=fakeredis.FakeRedis(server=server))


def test_figures_read_from_redis(server) -> None:
    services = build(server, INTERCOM_RATE_LIMIT_PER_MINUTE="600")
    client = services.redis
    client.rpush("articles", *[b"job"] * 5)
    client.rpush("contacts", b"job")
    client.hset("unacked", mapping={"tag-1": b"x", "tag-2": b"y"})
    services.dead_letters.park(routing.ARTICLES_SYNC, ("doc-1",), ValueError("bad"), attempts=1)
    services.dead_letters.park(routing.ARTICLES_SYNC, ("doc-2",), ValueError("bad"), attempts=1)
    client.set(LAST_SUCCESS + routing.MAINTENANCE_REPLAY_DEAD_LETTERS, repr(NOW - 42.5))
    for _ in range(7):
        services.intercom_limiter.acquire()

    got = scrape(services)
    lengths = {dict(k)["queue"]: v for k, v in by_labels(got, "intercom_sync_queue_length").items()}
    assert lengths == {"articles": 5, "conversations": 0, "contacts": 1, "maintenance": 0}
    assert value(got, "intercom_sync_jobs_unacknowledged") == 2
    assert value(got, "intercom_sync_dead_letters") == 2
    assert value(got, "intercom_sync_redis_up") == 1
    assert value(got, "intercom_sync_rate_limit_window_limit", service="intercom") == 100
    assert value(got, "intercom_sync_rate_limit_remaining", service="intercom") == 93
    assert value(got, "intercom_sync_rate_limit_remaining", service="sanity") == 20
    ages = {dict(k)["task"]: v for k, v in
            by_labels(got, "intercom_sync_beat_last_success_age_seconds").items()}
    assert ages[routing.MAINTENANCE_REPLAY_DEAD_LETTERS] == 42.5
    assert math.isinf(ages[routing.CONTACTS_REFRESH_STALE])  # never succeeded
    # A scrape spends nothing: the budget is what the seven calls left.
    again = scrape(services)
    assert value(again, "intercom_sync_rate_limit_remaining", service="intercom") == 93


def test_beat_jobs_of_switched_off_features_are_left_out(server) -> None:
    off = scrape(build(server, INTERCOM_ACCESS_TOKEN=None))
    assert {dict(k)["task"] for k in
            by_labels(off, "intercom_sync_beat_last_success_age_seconds")} == {
        routing.MAINTENANCE_REPLAY_DEAD_LETTERS}  # fmt: skip
    on = scrape(build(server, RULES_PATH="rules.yaml", INTERCOM_ADMIN_ID="1",
                      INTERCOM_AUTHOR_ID="1", INTERCOM_DEFAULT_COLLECTION_ID="2",
                      SANITY_PROJECT_ID="p", SANITY_DATASET="d", SANITY_TOKEN="t"))  # fmt: skip
    assert {dict(k)["task"] for k in
            by_labels(on, "intercom_sync_beat_last_success_age_seconds")} == {
        routing.MAINTENANCE_REPLAY_DEAD_LETTERS, routing.ARTICLES_RECONCILE,
        routing.CONTACTS_REFRESH_STALE, routing.CONVERSATIONS_REFRESH_TAG_CACHE}  # fmt: skip


def test_a_corrupt_last_success_reads_as_never(server) -> None:
    services = build(server)
    services.redis.set(LAST_SUCCESS + routing.MAINTENANCE_REPLAY_DEAD_LETTERS, b"yesterday")
    got = scrape(services)
    assert math.isinf(value(got, "intercom_sync_beat_last_success_age_seconds",
                            task=routing.MAINTENANCE_REPLAY_DEAD_LETTERS))  # fmt: skip


def test_redis_away_gives_redis_up_zero_and_no_stale_figures(server) -> None:
    services = build(server)
    server.connected = False
    got = scrape(services)
    assert value(got, "intercom_sync_redis_up") == 0
    assert [name for name, _ in got] == ["intercom_sync_redis_up"]


def test_a_scrape_costs_one_pipeline_and_one_script_per_limiter(server) -> None:
    services = build(server)
    services.redis.rpush("articles", *[b"j"] * 1000)
    calls = []
    original = services.redis.execute_command

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    services.redis.execute_command = counting  # type: ignore[method-assign]
    pipelines = []
    pipeline = services.redis.pipeline

    def counting_pipeline(*args, **kwargs):
        pipelines.append(1)
        return pipeline(*args, **kwargs)

    services.redis.pipeline = counting_pipeline  # type: ignore[method-assign]
    scrape(services)
    assert len(pipelines) == 1
    assert len(calls) <= 4  # EVALSHA (and a SCRIPT LOAD) per limiter, nothing per queued job
