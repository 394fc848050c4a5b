"""Conversation tagging tasks: thin wrappers over :mod:`workers.conversations.tagging`."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from celery import Task
from celery.signals import worker_init, worker_ready

from workers.clients.services import get_services
from workers.conversations.tagging import refresh_tag_cache as rebuild_tag_cache
from workers.conversations.tagging import rules_file_problem, tag_conversation
from workers.conversations.triage import attribute_problems
from workers.jobs import routing
from workers.jobs.errors import is_transient
from workers.jobs.logs import log_event, scrub
from workers.jobs.startup import startup_line
from workers.tasks.base import sync_task

logger = logging.getLogger("intercom_sync.triage")


@sync_task(routing.CONVERSATIONS_TAG)
def tag(self: Task, conversation_id: str) -> None:
    """Apply the tagging rules to a conversation (only the tags it lacks)."""
    tag_conversation(get_services(), str(conversation_id))


@sync_task(routing.CONVERSATIONS_REFRESH_TAG_CACHE)
def refresh_tag_cache(self: Task) -> None:
    """Rebuild the shared tag name -> id cache from ``GET /tags`` (beat; skipped if off)."""
    rebuild_tag_cache(get_services())


@worker_ready.connect
def _check_conversation_attributes(**_: Any) -> None:
    """At worker start, name every conversation attribute a rule sets that Intercom lacks (a
    configuration error: the API cannot create them). In a thread: one Intercom call must not
    hold up the worker's start."""
    threading.Thread(target=report_attribute_problems, name="attributes-check",
                     daemon=True).start()  # fmt: skip


def report_attribute_problems(attempts: int = 3, pause: float = 5.0) -> None:
    """Log the problems (ERROR), or that all is well; a transient failure (Intercom not up yet,
    as when ``dev`` starts everything at once) is tried again ``attempts`` times."""
    for attempt in range(1, attempts + 1):
        try:
            problems = attribute_problems(get_services())
            break
        except Exception as exc:  # a check that cannot run must not stop the worker
            if is_transient(exc) and attempt < attempts:
                time.sleep(pause)
                continue
            log_event(logger, "rules.attributes_unchecked", logging.WARNING,
                      error_type=type(exc).__name__, error=scrub(str(exc))[:300])  # fmt: skip
            return
    if problems:
        log_event(logger, "rules.config_error", logging.ERROR, problems=problems)
    elif problems is not None:
        log_event(logger, "rules.attributes_checked")


@worker_init.connect
def _refuse_a_broken_rules_file(**_: Any) -> None:
    """A worker does not start on a missing or invalid ``RULES_PATH``: one line, exit 2, rather
    than taking conversation jobs only to park each one."""
    path = get_services().settings.RULES_PATH
    problem = rules_file_problem(path) if path else None
    if problem:
        print(startup_line(problem), file=sys.stderr, flush=True)
        raise SystemExit(2)
