"""The process's shared clients, built once from settings: Redis, limiters, Intercom, Sanity.

One place builds each thing, so every task of a process spends from the same limiter object and
reuses the same HTTP connection pool. Built lazily, after Celery forks its pool processes.
"""

from __future__ import annotations

from functools import cached_property, lru_cache

import redis
from celery import Celery

from workers.clients.intercom import IntercomClient
from workers.clients.sanity import SanityClient
from workers.jobs.connection import redis_client
from workers.jobs.dead_letters import DeadLetters
from workers.jobs.enqueue import Enqueuer
from workers.jobs.ratelimit import RateLimiter
from workers.settings import Settings, SettingsError, get_settings


class FeatureOff(SettingsError):
    """A task of a switched-off feature ran: a configuration problem, not a transient one."""


class Services:
    def __init__(
        self,
        settings: Settings,
        *,
        redis_client: redis.Redis | None = None,
        celery_app: Celery | None = None,
    ) -> None:
        self.settings = settings
        if redis_client is not None:
            self.__dict__["redis"] = redis_client
        self._celery_app = celery_app

    def require(self, feature: str) -> None:
        missing = self.settings.missing(feature)
        if missing:
            raise FeatureOff(f"{feature} is off: set {', '.join(missing)}")

    @cached_property
    def redis(self) -> redis.Redis:
        return redis_client(self.settings, socket_timeout=10, socket_connect_timeout=5,
                            health_check_interval=25)  # fmt: skip

    @cached_property
    def intercom_limiter(self) -> RateLimiter:
        return RateLimiter(self.redis, "intercom", self.settings.intercom_budget_per_window, 10.0)

    @cached_property
    def sanity_limiter(self) -> RateLimiter:
        return RateLimiter(self.redis, "sanity", self.settings.SANITY_RATE_LIMIT_PER_SECOND, 1.0)

    @cached_property
    def enrichment_limiter(self) -> RateLimiter:
        return RateLimiter(
            self.redis, "enrichment", self.settings.ENRICHMENT_RATE_LIMIT_PER_SECOND, 1.0
        )

    @cached_property
    def intercom(self) -> IntercomClient:
        self.require("intercom_api")
        token = self.settings.INTERCOM_ACCESS_TOKEN
        assert token is not None
        return IntercomClient(
            self.settings.INTERCOM_API_BASE, token.reveal(), self.settings.INTERCOM_VERSION,
            limiter=self.intercom_limiter,
        )  # fmt: skip

    @cached_property
    def sanity(self) -> SanityClient:
        base, dataset = self.settings.sanity_api_base, self.settings.SANITY_DATASET
        if not base or not dataset:
            raise FeatureOff("Sanity is off: set SANITY_PROJECT_ID and SANITY_DATASET")
        token = self.settings.SANITY_TOKEN
        return SanityClient(
            base, dataset, token.reveal() if token else None, self.settings.SANITY_API_VERSION,
            limiter=self.sanity_limiter,
        )  # fmt: skip

    @cached_property
    def celery_app(self) -> Celery:
        if self._celery_app is None:
            from workers.jobs.celery_app import celery

            self._celery_app = celery
        return self._celery_app

    @cached_property
    def enqueuer(self) -> Enqueuer:
        return Enqueuer(self.celery_app, self.redis, dedup_ttl=self.settings.DEDUP_TTL_SECONDS)

    @cached_property
    def dead_letters(self) -> DeadLetters:
        return DeadLetters(self.redis)


@lru_cache(maxsize=1)
def get_services() -> Services:
    """This process's services (``get_services.cache_clear()`` rebuilds them)."""
    return Services(get_settings())
