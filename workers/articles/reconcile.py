"""The ``articles.reconcile`` beat job: repair what webhooks missed.

Sanity drops a delivery for good after a few failed attempts, and a receiver outage longer than
its retry window loses events. Every run (beat, every 10 minutes) queues:

* ``articles.sync`` for each article document changed since the last successful run (a
  watermark ``(_updatedAt, _id)`` in Redis, keyset-paged, with a small overlap because a
  transaction's ``_updatedAt`` may become visible a moment after a later one's);
* ``articles.sync`` for each document without ``intercomArticleId`` (never synced, or its
  write-back was lost);
* ``articles.delete`` for each document Redis maps to an article that is no longer published.

A document is queued once per run (a write-back during the run moves it forward in the
``_updatedAt`` order, so the scan may meet it again), with a de-duplication key per document
version, so overlapping runs and a backlog never queue the same version twice. Each sync costs
one Sanity query, and no Intercom call when nothing changed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from workers.articles import queries
from workers.articles.store import ArticleStore, key
from workers.clients.services import Services
from workers.jobs import routing
from workers.jobs.logs import log_event

logger = logging.getLogger("intercom_sync.articles")

WATERMARK = key("reconcile-watermark")
OVERLAP = timedelta(seconds=30)


@dataclass
class ReconcileSummary:
    """Counts of one run (the one-line summary in the log)."""

    changed: int = 0
    missing: int = 0
    gone: int = 0
    enqueued: int = 0

    def counts(self) -> dict[str, int]:
        return asdict(self)


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    """Sanity's ``_updatedAt`` format: UTC, whole seconds, ``Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _start(services: Services) -> tuple[str, str | None]:
    """Where this run starts (``since``) and the stored watermark (None: first run)."""
    raw = services.redis.get(WATERMARK)
    if not raw:
        return queries.EPOCH, None
    watermark = json.loads(raw).get("updated_at") or queries.EPOCH
    parsed = _parse_time(watermark)
    return (format_time(parsed - OVERLAP) if parsed else queries.EPOCH), watermark


def _enqueue_sync(services: Services, document: dict, summary: ReconcileSummary,
                  seen: set[str]) -> None:  # fmt: skip
    if document["_id"] in seen:  # changed again during this run, or also missing an article
        return
    seen.add(document["_id"])
    version = document.get("_updatedAt") or ""
    dedup = f"articles:reconcile:{document['_id']}:{version}"
    if services.enqueuer.enqueue(routing.ARTICLES_SYNC, (document["_id"],), dedup).queued:
        summary.enqueued += 1


def _vanished(services: Services, store: ArticleStore) -> list[str]:
    """Documents Redis maps to an article that are not published any more."""
    mapped = {doc for group in store.group_keys() for doc in store.load(group).versions}
    return sorted(mapped - queries.existing(services.sanity, mapped)) if mapped else []


def reconcile(services: Services) -> ReconcileSummary:
    """One reconcile run; the watermark moves only when the whole run succeeded."""
    services.require("articles")
    sanity, article_type = services.sanity, services.settings.SANITY_ARTICLE_TYPE
    summary = ReconcileSummary()
    since, watermark = _start(services)
    latest, seen = watermark or "", set[str]()
    for document in queries.changed_since(sanity, article_type, since):
        updated_at = document.get("_updatedAt") or ""
        summary.changed += updated_at > (watermark or "")  # the overlap was counted last run
        latest = max(latest, updated_at)
        _enqueue_sync(services, document, summary, seen)
    for document in queries.without_article(sanity, article_type):
        summary.missing += 1
        _enqueue_sync(services, document, summary, seen)
    for document_id in _vanished(services, ArticleStore(services.redis)):
        summary.gone += 1
        services.enqueuer.enqueue(routing.ARTICLES_DELETE, (document_id,))
        summary.enqueued += 1
    if latest:
        services.redis.set(WATERMARK, json.dumps({"updated_at": latest}))
    log_event(logger, "articles.reconciled", since=since, watermark=latest or None,
              **summary.counts())  # fmt: skip
    return summary
