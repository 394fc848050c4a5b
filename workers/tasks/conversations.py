"""Conversation tagging tasks: thin wrappers over :mod:`workers.conversations.tagging`."""

from __future__ import annotations

import sys
from typing import Any

from celery import Task
from celery.signals import worker_init

from workers.clients.services import get_services
from workers.conversations.tagging import refresh_tag_cache as rebuild_tag_cache
from workers.conversations.tagging import rules_file_problem, tag_conversation
from workers.jobs import routing
from workers.jobs.startup import startup_line
from workers.tasks.base import sync_task


@sync_task(routing.CONVERSATIONS_TAG)
def tag(self: Task, conversation_id: str) -> None:
    """Apply the tagging rules to a conversation (only the tags it lacks)."""
    tag_conversation(get_services(), str(conversation_id))


@sync_task(routing.CONVERSATIONS_REFRESH_TAG_CACHE)
def refresh_tag_cache(self: Task) -> None:
    """Rebuild the shared tag name -> id cache from ``GET /tags`` (beat; skipped if off)."""
    rebuild_tag_cache(get_services())


@worker_init.connect
def _refuse_a_broken_rules_file(**_: Any) -> None:
    """A worker does not start on a missing or invalid ``RULES_PATH``: one line, exit 2, rather
    than taking conversation jobs only to park each one."""
    path = get_services().settings.RULES_PATH
    problem = rules_file_problem(path) if path else None
    if problem:
        print(startup_line(problem), file=sys.stderr, flush=True)
        raise SystemExit(2)
