"""Task names and the queue each one runs on: the contract between the receiver and the workers.

The receiver enqueues by name without importing task code, so the names below are stable API
(renaming one strands the jobs already queued under the old name). Each domain has its own queue
so that a backlog of one (say a 10,000-article backfill) cannot starve the others.
"""

from __future__ import annotations

ARTICLES_SYNC = "articles.sync"
ARTICLES_DELETE = "articles.delete"
ARTICLES_RECONCILE = "articles.reconcile"
CONVERSATIONS_TAG = "conversations.tag"
CONVERSATIONS_REFRESH_TAG_CACHE = "conversations.refresh_tag_cache"
CONTACTS_ENRICH = "contacts.enrich"
CONTACTS_REFRESH_STALE = "contacts.refresh_stale"
MAINTENANCE_REPLAY_DEAD_LETTERS = "maintenance.replay_dead_letters"

TASK_NAMES = (
    ARTICLES_SYNC,
    ARTICLES_DELETE,
    ARTICLES_RECONCILE,
    CONVERSATIONS_TAG,
    CONVERSATIONS_REFRESH_TAG_CACHE,
    CONTACTS_ENRICH,
    CONTACTS_REFRESH_STALE,
    MAINTENANCE_REPLAY_DEAD_LETTERS,
)

QUEUES = ("articles", "conversations", "contacts", "maintenance")


def queue_for(task_name: str) -> str:
    """The queue of a task: its name's domain prefix (``articles.sync`` → ``articles``)."""
    domain = task_name.split(".", 1)[0]
    if domain not in QUEUES:
        raise KeyError(f"no queue for task {task_name!r}")
    return domain
