"""A worker's metrics endpoint: served by its main process on ``METRICS_PORT`` when set.

The pool processes record task outcomes, Intercom calls and rate-limit waits into the
multiprocess directory (:mod:`workers.jobs.metrics`); the main process, which runs no tasks,
adds those files up at each scrape, and reads what lives in Redis at that moment through
:class:`RedisFigures` — queue lengths, dead letters, the budget left in the current window and
how long ago each beat job last succeeded. One pipelined round trip plus one script call per
limiter, so a scrape is cheap and bounded however large the queues are.

The worker loads this module with its task modules (``celery_app.TASK_MODULES``), so its signal
handlers are connected before ``celeryd_init`` fires in the main process, which is before the
pool forks: the metrics directory and the listening socket are settled first.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis
from celery.signals import celeryd_init, worker_process_shutdown
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from workers.clients.services import Services
from workers.jobs import metrics, metrics_files, routing
from workers.jobs.celery_app import beat_schedule
from workers.jobs.dead_letters import INDEX as DEAD_LETTER_INDEX
from workers.jobs.logs import log_event
from workers.settings import get_settings
from workers.tasks.base import LAST_SUCCESS

logger = logging.getLogger("intercom_sync.metrics")

# kombu's Redis transport keeps delivered, unacknowledged messages in this hash.
UNACKED = "unacked"
# A beat job of a switched-off feature has nothing to do (reconcile even fails for want of its
# settings): its age would only raise false alarms.
BEAT_JOB_FEATURES = {
    routing.ARTICLES_RECONCILE: "articles",
    routing.CONTACTS_REFRESH_STALE: "enrichment",
    routing.CONVERSATIONS_REFRESH_TAG_CACHE: "tagging",
}


def _family(name: str) -> GaugeMetricFamily:
    kind, text, labels = metrics.SCRAPED[name]
    assert kind == "gauge"
    return GaugeMetricFamily(name, text, labels=list(labels))


class RedisFigures:
    """A prometheus_client collector of the figures that live in Redis (read per scrape)."""

    def __init__(self, services: Services, clock: Callable[[], float] = time.time) -> None:
        self.services = services
        self.clock = clock
        settings = services.settings
        self.beat_jobs = sorted(entry["task"] for entry in beat_schedule(settings).values()
                                if _feature_on(services, entry["task"]))  # fmt: skip
        self.limiters = {"intercom": lambda: services.intercom_limiter,
                         "sanity": lambda: services.sanity_limiter}  # fmt: skip

    def describe(self) -> list[Metric]:
        return []  # read nothing from Redis when registered

    def collect(self) -> Iterator[Metric]:
        up = _family("intercom_sync_redis_up")
        try:
            families = list(self._read())
        except redis.RedisError as exc:
            log_event(logger, "metrics.redis_unreachable", logging.WARNING,
                      error=type(exc).__name__)  # fmt: skip
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> Iterator[Metric]:
        client = self.services.redis
        pipe = client.pipeline(transaction=False)
        for queue in routing.QUEUES:
            pipe.llen(queue)
        pipe.hlen(UNACKED)
        pipe.zcard(DEAD_LETTER_INDEX)
        for task in self.beat_jobs:
            pipe.get(LAST_SUCCESS + task)
        answers = pipe.execute()
        now = self.clock()

        queues = _family("intercom_sync_queue_length")
        for queue, length in zip(routing.QUEUES, answers, strict=False):
            queues.add_metric([queue], int(length))
        rest = answers[len(routing.QUEUES):]
        unacked = _family("intercom_sync_jobs_unacknowledged")
        unacked.add_metric([], int(rest[0]))
        dead = _family("intercom_sync_dead_letters")
        dead.add_metric([], int(rest[1]))
        ages = _family("intercom_sync_beat_last_success_age_seconds")
        for task, raw in zip(self.beat_jobs, rest[2:], strict=True):
            ages.add_metric([task], _age(raw, now))

        remaining = _family("intercom_sync_rate_limit_remaining")
        limit = _family("intercom_sync_rate_limit_window_limit")
        for service, limiter in self.limiters.items():
            budget = limiter().peek()
            remaining.add_metric([service], budget.remaining)
            limit.add_metric([service], budget.cap)
        yield from (queues, unacked, dead, ages, remaining, limit)


def _feature_on(services: Services, task: str) -> bool:
    feature = BEAT_JOB_FEATURES.get(task)
    return feature is None or services.settings.enabled(feature)


def _age(raw: bytes | None, now: float) -> float:
    if raw is None:
        return math.inf
    try:
        return max(0.0, now - float(raw))
    except ValueError:
        return math.inf


_server: metrics.MetricsServer | None = None


@celeryd_init.connect
def serve_worker_metrics(**_: Any) -> None:
    """In the worker's main process, before the pool forks: settle the metrics directory and,
    with ``METRICS_PORT``, listen (a port that cannot be bound stops the worker with one line)."""
    global _server
    settings = get_settings()
    metrics_files.claim_directory("worker")
    if settings.METRICS_PORT is None:
        return
    host, port = settings.METRICS_HOST, settings.METRICS_PORT
    try:
        _server = metrics.serve(host, port, settings.METRICS_TOKEN,
                                [RedisFigures(Services(settings))])  # fmt: skip
    except OSError as exc:
        print(f"intercom-sync: METRICS_PORT: cannot listen on {host}:{port} "
              f"({exc.strerror or exc})", file=sys.stderr, flush=True)  # fmt: skip
        raise SystemExit(2) from None
    log_event(logger, "metrics.serving", host=settings.METRICS_HOST, port=settings.METRICS_PORT,
              token_required=settings.METRICS_TOKEN is not None)  # fmt: skip


@worker_process_shutdown.connect
def forget_pool_process(pid: int | None = None, **_: Any) -> None:
    """A pool process is exiting (recycled or stopping): its live gauges go with it."""
    if pid is not None:
        metrics_files.mark_dead(pid)
