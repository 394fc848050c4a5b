"""Read back what the receiver queued, as kombu's Redis transport stores it."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis
from celery import Celery

from tests.conftest import make_settings
from workers.jobs import routing
from workers.jobs.celery_app import configure_celery
from workers.jobs.enqueue import Enqueuer


def queued_jobs(client: redis.Redis, queue: str | None = None) -> list[tuple[str, list[Any]]]:
    """``(task name, args)`` of every message waiting on ``queue`` (or on every queue)."""
    jobs = []
    for name in [queue] if queue else routing.QUEUES:
        for raw in reversed(client.lrange(name, 0, -1)):  # LPUSH + BRPOP: oldest is last
            message = json.loads(raw)
            args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            assert kwargs == {}
            assert message["properties"]["delivery_info"]["routing_key"] == name
            jobs.append((message["headers"]["task"], args))
    return jobs


def enqueuer(redis_url: str, client: redis.Redis) -> Enqueuer:
    """The receiver's way of queueing jobs (one Lua call, a Celery protocol-2 message)."""
    app = configure_celery(Celery("test-jobs", set_as_current=False),
                           make_settings(REDIS_URL=redis_url))  # fmt: skip
    return Enqueuer(app, client)
