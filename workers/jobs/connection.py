"""The Redis every process talks to: one definition of where it is and how to reach it.

Broker, de-duplication, limiter, locks and dead letters all live in that one Redis, so every
process (receiver, workers, beat, the CLI) resolves it here and nowhere else.
"""

from __future__ import annotations

from workers.settings import Settings, SettingsError


def resolve_redis_url(settings: Settings) -> str:
    """The Redis URL every process uses; a clear error when there is none."""
    if settings.REDIS_URL:
        return settings.REDIS_URL
    raise SettingsError(
        "REDIS_URL: not set. Point it at your Redis (e.g. redis://localhost:6379/0), "
        "or run `intercom-sync dev`, which starts an embedded Redis when it is unset."
    )
