"""Conversation tagging tasks: thin wrappers over :mod:`workers.conversations.tagging`."""

from __future__ import annotations

from celery import Task

from workers.clients.services import get_services
from workers.conversations.tagging import refresh_tag_cache as rebuild_tag_cache
from workers.conversations.tagging import tag_conversation
from workers.jobs import routing
from workers.tasks.base import sync_task


@sync_task(routing.CONVERSATIONS_TAG)
def tag(self: Task, conversation_id: str) -> None:
    """Apply the tagging rules to a conversation (only the tags it lacks)."""
    tag_conversation(get_services(), str(conversation_id))


@sync_task(routing.CONVERSATIONS_REFRESH_TAG_CACHE)
def refresh_tag_cache(self: Task) -> None:
    """Rebuild the shared tag name -> id cache from ``GET /tags`` (beat; skipped if off)."""
    rebuild_tag_cache(get_services())
