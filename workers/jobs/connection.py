"""The Redis every process talks to: one definition of where it is and how to reach it.

Broker, de-duplication, limiter, locks and dead letters all live in that one Redis, so every
process (receiver, workers, beat, the CLI) resolves it here and nowhere else: the receiver's and
the workers' clients come from :func:`redis_client`, Celery's broker, redbeat and Flower from
:func:`celery_redis_options`.

``REDIS_URL`` may name the Sentinels of a replicated Redis instead of a server
(``sentinel://[:password@]host:port[;sentinel://host:port…][/db]`` with
``REDIS_SENTINEL_MASTER``). redis-py has no URL form for that (``Redis.from_url`` knows
``redis``, ``rediss`` and ``unix`` only), so the client is built with
``redis.sentinel.Sentinel(...).master_for(name)``: each new connection asks the Sentinels where
the master is now, and a connection to a server that stopped being the master fails and is
replaced, so every process follows a failover by itself.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from workers.settings import (
    SentinelUrl,
    Settings,
    SettingsError,
    is_sentinel_url,
    parse_sentinel_url,
)

# Socket options that apply to the Sentinels' connections too: a Sentinel that does not answer
# must not hold a process any longer than the master would.
_SENTINEL_SOCKET_OPTIONS = ("socket_timeout", "socket_connect_timeout", "socket_keepalive")


def resolve_redis_url(settings: Settings) -> str:
    """The Redis URL every process uses; a clear error when there is none."""
    if settings.REDIS_URL:
        return settings.REDIS_URL
    raise SettingsError(
        "REDIS_URL: not set. Point it at your Redis (e.g. redis://localhost:6379/0), "
        "or run `intercom-sync dev`, which starts an embedded Redis when it is unset."
    )


def sentinel_of(settings: Settings) -> SentinelUrl | None:
    """The Sentinel address when ``REDIS_URL`` is a ``sentinel://`` URL, else None."""
    url = resolve_redis_url(settings)
    return parse_sentinel_url(url) if is_sentinel_url(url) else None


def _sentinel_kwargs(settings: Settings, options: dict[str, Any]) -> dict[str, Any]:
    """Options of the connections to the Sentinels themselves (redis-py's ``sentinel_kwargs``):
    the timeouts of the data connections, and the Sentinels' own password if they have one.
    No retries: a Sentinel that does not answer is skipped for the next one in the list
    (``Sentinel.discover_master``) rather than retried ten times (redis-py's default), as
    Flower does for its own Sentinel client."""
    kwargs: dict[str, Any] = {k: v for k, v in options.items() if k in _SENTINEL_SOCKET_OPTIONS}
    kwargs["retry"] = Retry(NoBackoff(), 0)
    if settings.REDIS_SENTINEL_PASSWORD:
        kwargs["password"] = settings.REDIS_SENTINEL_PASSWORD.reveal()
    return kwargs


def redis_client(settings: Settings, **options: Any) -> redis.Redis:
    """A client of this deployment's Redis (its current master, with Sentinel).

    ``options`` are redis-py connection options (timeouts, ``health_check_interval``); every
    process builds its clients here, never with ``Redis.from_url`` of its own.
    """
    address = sentinel_of(settings)
    if address is None:
        return redis.Redis.from_url(resolve_redis_url(settings), **options)
    assert settings.REDIS_SENTINEL_MASTER  # the settings refuse a sentinel URL without it
    sentinel = Sentinel(
        list(address.sentinels), sentinel_kwargs=_sentinel_kwargs(settings, options),
        db=address.db, password=address.password, **options,
    )  # fmt: skip
    return sentinel.master_for(settings.REDIS_SENTINEL_MASTER)


def celery_redis_options(settings: Settings, transport: dict[str, Any]) -> dict[str, Any]:
    """Celery configuration that says where Redis is: the broker (and so Flower, which reads
    the broker URL and its transport options) and redbeat's scheduler store.

    ``transport`` holds the broker transport options every deployment uses; with Sentinel the
    options below are added (names from kombu's ``SentinelChannel.from_transport_options``:
    ``master_name``, ``sentinel_kwargs``; redbeat's ``get_redis``: ``sentinels``,
    ``service_name``, ``sentinel_kwargs``, ``password``, ``db``, ``socket_timeout``,
    ``retry_period``).
    """
    url = resolve_redis_url(settings)
    address = sentinel_of(settings)
    if address is None:
        return {"broker_url": url, "broker_transport_options": transport,
                "redbeat_redis_url": url}  # fmt: skip
    # kombu reads host and database from the first entry and every Sentinel from the list
    # (``Connection.alt``), so each entry is written out in full.
    auth = f":{address.password}@" if address.password else ""
    broker = ";".join(f"sentinel://{auth}{host}:{port}/{address.db}"
                      for host, port in address.sentinels)  # fmt: skip
    sentinel_kwargs = _sentinel_kwargs(settings, transport)
    return {
        "broker_url": broker,
        "broker_transport_options": {
            **transport,
            "master_name": settings.REDIS_SENTINEL_MASTER,
            "sentinel_kwargs": sentinel_kwargs,
        },
        # redbeat takes the Sentinels from its options; the URL only has to say "sentinel".
        "redbeat_redis_url": "redis-sentinel://",
        "redbeat_redis_options": {
            "sentinels": list(address.sentinels),
            "service_name": settings.REDIS_SENTINEL_MASTER,
            "sentinel_kwargs": sentinel_kwargs,
            "password": address.password,
            "db": address.db,
            "socket_timeout": transport.get("socket_timeout"),
            # Beat's Redis calls (its lock, the schedule) retry through a failover instead of
            # ending beat; less than the lock's timeout, so a beat cut off for longer gives up
            # rather than run beside the one that took its lock over.
            "retry_period": 30,
        },
    }
