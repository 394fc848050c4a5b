"""The receiver's one-round-trip message is the message Celery's own ``send_task`` writes."""

from __future__ import annotations

import json

import redis
from celery import Celery

from tests.conftest import make_settings
from workers.jobs.celery_app import configure_celery
from workers.jobs.enqueue import Enqueuer


def test_message_matches_celery_send_task(real_redis: redis.Redis, real_redis_url: str) -> None:
    settings = make_settings(REDIS_URL=real_redis_url)
    celery_app = configure_celery(Celery("test-compare"), settings)
    ours = json.loads(Enqueuer(celery_app, real_redis).build_message("articles.sync", ("doc",),
                                                                     "tid-1"))  # fmt: skip
    celery_app.send_task("articles.sync", args=["doc"], task_id="tid-1")
    stored = real_redis.lrange("articles", 0, -1)
    assert len(stored) == 1, "send_task did not route articles.sync to the articles queue"
    theirs = json.loads(stored[0])
    assert ours["body"] == theirs["body"]
    assert set(ours) == set(theirs)
    assert set(ours["properties"]) == set(theirs["properties"])
    for key in ("task", "id", "root_id", "retries", "argsrepr", "kwargsrepr", "lang", "eta"):
        assert ours["headers"][key] == theirs["headers"][key], key
    assert ours["properties"]["delivery_info"]["routing_key"] == "articles"
    celery_app.close()
