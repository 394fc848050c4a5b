"""Per-process receiver state: settings, the Redis client and the enqueuer, created lazily.

Gunicorn forks its workers after importing the app, so connections are opened on first use in
each worker, never in the master.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from celery import Celery
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from workers.jobs.connection import redis_client
from workers.jobs.enqueue import Enqueuer
from workers.settings import Settings


class ReceiverState:
    def __init__(
        self,
        settings: Settings,
        celery_app: Celery,
        redis_client: redis.Redis | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.celery_app = celery_app
        self._redis = redis_client
        self._enqueuer: Enqueuer | None = None
        self._clock = clock
        # Settings are frozen: which variables each feature lacks is known once, not per webhook.
        self._missing = {feature: settings.missing(feature) for feature in settings.FEATURES}
        # Whether any feature is off: when none is (a full deployment), a webhook skips asking.
        self.some_off = any(self._missing.values())

    def missing(self, feature: str) -> list[str]:
        """The variables ``feature`` needs that are not set (empty when it is on)."""
        return self._missing[feature]

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            # Short timeouts: Intercom gives up after 5 s, and a 503 it can retry beats a
            # request that hangs until the sender times out. For the same reason at most three
            # quick retries after a refused or reset connection (a stale pooled connection, a
            # master that just changed), not redis-py's default of ten with up to a second
            # between them, and none after a timeout: a master that stopped answering without
            # closing its connections costs one socket timeout per webhook, not four.
            self._redis = redis_client(
                self.settings,
                retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), 3,
                            supported_errors=(redis.ConnectionError,)),
                socket_timeout=2,
                socket_connect_timeout=1,
                health_check_interval=30,
            )
        return self._redis

    def enqueuer(self) -> Enqueuer:
        if self._enqueuer is None:
            self._enqueuer = Enqueuer(
                self.celery_app, self.redis, dedup_ttl=self.settings.DEDUP_TTL_SECONDS
            )
        return self._enqueuer
