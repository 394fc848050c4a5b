"""Help Center article sync tasks: Sanity ``supportArticle`` documents → Intercom articles.

Thin on purpose: each task calls a plain function of :mod:`workers.articles` and lets the
shared policy (:mod:`workers.tasks.base`) retry transient failures and park the rest.
"""

from __future__ import annotations

from celery import Task

from workers.articles.reconcile import reconcile as reconcile_articles
from workers.articles.sync import delete_document, sync_document
from workers.clients.services import get_services
from workers.jobs import routing
from workers.tasks.base import sync_task


@sync_task(routing.ARTICLES_SYNC)
def sync(self: Task, document_id: str) -> str:
    """Create or update the Intercom article of ``document_id`` and its translations."""
    return sync_document(get_services(), document_id).outcome


@sync_task(routing.ARTICLES_DELETE)
def delete(self: Task, document_id: str) -> str:
    """Unpublish or delete the Intercom article of a deleted document."""
    return delete_document(get_services(), document_id).outcome


@sync_task(routing.ARTICLES_RECONCILE)
def reconcile(self: Task) -> dict[str, int]:
    """Re-sync documents changed since the last run (repairs missed webhooks)."""
    return reconcile_articles(get_services()).counts()
