"""Maintenance tasks run by beat."""

from __future__ import annotations

import logging

from celery import Task

from workers.clients.services import get_services
from workers.jobs import routing
from workers.jobs.dead_letters import replay_transient
from workers.jobs.logs import log_event
from workers.tasks.base import sync_task

logger = logging.getLogger("intercom_sync.maintenance")


@sync_task(routing.MAINTENANCE_REPLAY_DEAD_LETTERS)
def replay_dead_letters(self: Task) -> int:
    """Retry parked jobs whose error was transient (5xx, timeouts, rate limits)."""
    services = get_services()
    replayed = replay_transient(services.dead_letters, services.enqueuer)
    log_event(logger, "dlq.auto_replay", replayed=len(replayed), ids=replayed or None)
    return len(replayed)
