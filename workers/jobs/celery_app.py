"""The Celery application, configured from :mod:`workers.settings` on first use.

Flask's Celery pattern: one app handle that everything imports (``celery -A workers``), and one
small function, :func:`celery_config`, that turns settings into Celery configuration. The handle
is configured lazily (``on_configure``) so that importing it costs nothing and a test can build
settings of its own first.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import beat_init, celeryd_init, setup_logging
from kombu import Exchange, Queue

from workers.jobs import routing
from workers.jobs.connection import celery_redis_options
from workers.jobs.logs import configure_logging
from workers.jobs.observability import init_sentry
from workers.jobs.startup import settings_or_exit
from workers.settings import Settings, get_settings

TASK_MODULES = (
    "workers.tasks.articles",
    "workers.tasks.conversations",
    "workers.tasks.contacts",
    "workers.tasks.maintenance",
    # Not tasks: the worker's metrics endpoint, connected to the worker's start signals.
    "workers.tasks.monitoring",
)



def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The repair jobs: reconcile articles, refresh stale enrichment and the tag cache, replay
    parked jobs."""
    minute, hour, day_of_month, month_of_year, day_of_week = settings.CONTACTS_REFRESH_CRON.split()
    return {
        "articles-reconcile": {
            "task": routing.ARTICLES_RECONCILE,
            "schedule": timedelta(seconds=settings.RECONCILE_INTERVAL_SECONDS),
        },
        "contacts-refresh-stale": {
            "task": routing.CONTACTS_REFRESH_STALE,
            "schedule": crontab(
                minute=minute,
                hour=hour,
                day_of_month=day_of_month,
                month_of_year=month_of_year,
                day_of_week=day_of_week,
            ),
        },
        "conversations-refresh-tag-cache": {
            "task": routing.CONVERSATIONS_REFRESH_TAG_CACHE,
            "schedule": timedelta(seconds=settings.TAG_CACHE_REFRESH_SECONDS),
        },
        "maintenance-replay-dead-letters": {
            "task": routing.MAINTENANCE_REPLAY_DEAD_LETTERS,
            "schedule": timedelta(seconds=settings.DLQ_REPLAY_INTERVAL_SECONDS),
        },
    }


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery configuration for ``settings``.

    Reliability choices (DESIGN §4): late acks so a job whose worker dies is delivered again
    (every task is idempotent), prefetch 1 so a dying process holds at most one job, and a
    visibility timeout well above every time limit and retry countdown so that Redis never
    hands a job that is still running to a second worker.
    """
    hard = settings.TASK_TIME_LIMIT
    # The visibility timeout against the time limit and backoff cap is a cross-field rule of
    # the settings themselves (workers/settings.py): every process refuses to start without it.
    transport = {
        "visibility_timeout": settings.BROKER_VISIBILITY_TIMEOUT,
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
        "health_check_interval": 25,
    }
    return {
        # broker_url, broker_transport_options and redbeat's store (Sentinel aware)
        **celery_redis_options(settings, transport),
        "broker_connection_retry_on_startup": True,
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_queues": [
            Queue(name, Exchange(name, type="direct"), routing_key=name) for name in routing.QUEUES
        ],
        "task_default_queue": "maintenance",
        "task_routes": {name: {"queue": routing.queue_for(name)} for name in routing.TASK_NAMES},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": hard,
        "task_soft_time_limit": max(1, hard - 30) if hard > 60 else max(1, int(hard * 0.8)),
        "worker_concurrency": settings.WORKER_CONCURRENCY,
        # A pool process that has grown past this is replaced after its current job, so a slow
        # leak in a dependency cannot take the host's memory (Celery counts KiB).
        "worker_max_memory_per_child": settings.WORKER_MAX_MEMORY_MB * 1024,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        # Shutdown (the worker runs with REMAP_SIGTERM=SIGQUIT, see workers/ops/processes.py): jobs
        # in hand get this long to finish, then the rest go back to their queues at once rather
        # than after the visibility timeout. An idle worker exits without waiting.
        "worker_enable_soft_shutdown_on_idle": False,
        # When the broker connection drops (a Redis restart), jobs in hand run on: each either
        # finishes or meets the outage itself and is put back (workers/tasks/base.py), and the
        # copy kombu restores runs again harmlessly, since every task is idempotent. Killing
        # them instead would cut Intercom calls off mid-request.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_soft_shutdown_timeout": settings.WORKER_SHUTDOWN_TIMEOUT,
        "include": list(TASK_MODULES),
        "beat_schedule": beat_schedule(settings),
        # redbeat's scheduler, riding out a Redis failover (workers/jobs/beat.py)
        "beat_scheduler": "workers.jobs.beat:FailoverScheduler",
        "redbeat_key_prefix": "intercom-sync:redbeat",
        # One beat per deployment: the second beat waits for this lock; it expires this many
        # seconds after its holder dies, so a crashed beat is replaced within that time.
        "redbeat_lock_timeout": 60,
        "beat_max_loop_interval": 10,
        "timezone": "UTC",
        "enable_utc": True,
    }


def configure_celery(app: Celery, settings: Settings) -> Celery:
    """Apply ``settings`` to ``app`` (used by the handle below and by tests)."""
    app.conf.update(celery_config(settings))
    return app


celery = Celery("intercom_sync")


@celery.on_configure.connect
def _configure_from_environment(sender: Celery, **_: Any) -> None:
    # Celery logs and swallows what a signal handler raises (other than SystemExit), and would
    # then run on its defaults (an AMQP broker on localhost): stop with one line instead.
    sender.config_from_object(celery_config(settings_or_exit()))


@setup_logging.connect
def _setup_logging(**_: Any) -> None:
    """Our one-line formatter for worker and beat (connecting here stops Celery's own setup)."""
    settings = get_settings()
    configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)


@celeryd_init.connect
def _worker_sentry(**_: Any) -> None:
    init_sentry(get_settings(), component="worker")


@beat_init.connect
def _beat_sentry(**_: Any) -> None:
    init_sentry(get_settings(), component="beat")
