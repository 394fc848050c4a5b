"""Links between articles: a reference to another ``supportArticle`` becomes a link to that
article's Help Center URL, or stays plain text until the target has an article.

URLs come from Redis, and only when one is unknown from one ``GET /articles/{id}`` (Intercom
builds the URL; it cannot be guessed). A referring document whose target has no article yet is
recorded as waiting on it; when the target's article is created, each waiting document gets one
``articles.sync`` job, which renders the link.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from workers.articles.store import ArticleStore
from workers.clients.intercom import IntercomClient
from workers.jobs import routing
from workers.jobs.enqueue import Enqueuer
from workers.jobs.errors import NotFound
from workers.jobs.logs import log_event

logger = logging.getLogger("intercom_sync.articles")


class LinkResolver:
    """``document id -> article URL | None`` for one sync (the renderer's ``link_resolver``).

    ``known`` holds the targets' ``intercomArticleId`` as Sanity returned them with the
    document (the source of truth); ``own`` the group's own documents and ``own_article`` their
    article, if it has one. Without ``intercom`` no request is made (the dry-run's view).
    """

    def __init__(self, store: ArticleStore, intercom: IntercomClient | None, *,
                 known: Mapping[str, str | None], own: Iterable[str],
                 own_article: str | None) -> None:  # fmt: skip
        self.store = store
        self.intercom = intercom
        self.known = dict(known)
        self.own = set(own)
        self.own_article = own_article
        self.tried: dict[str, str | None] = {}  # target -> article id looked at
        self._urls: dict[str, str | None] = {}
        self.fetched = 0  # GET /articles/{id} calls made

    def article_for(self, document_id: str) -> str | None:
        if document_id in self.own:
            return self.own_article
        return self.known.get(document_id) or self.store.article_of(document_id)

    def __call__(self, document_id: str) -> str | None:
        if document_id not in self._urls:
            article_id = self.article_for(document_id)
            self.tried[document_id] = article_id
            self._urls[document_id] = self._url(article_id) if article_id else None
        return self._urls[document_id]

    def _url(self, article_id: str) -> str | None:
        url = self.store.url(article_id)
        if url or self.intercom is None:
            return url
        try:
            article = self.intercom.get_article(article_id)
        except NotFound:
            return None  # deleted in Intercom: text until the target is synced again
        finally:
            self.fetched += 1
        self.store.set_url(article_id, article.get("url"))
        return article.get("url") if isinstance(article.get("url"), str) else None


def wait_for_targets(store: ArticleStore, enqueuer: Enqueuer, referrer_id: str,
                     resolver: LinkResolver, unresolved: Iterable[str]) -> None:  # fmt: skip
    """Record ``referrer_id`` as waiting on each unresolved target.

    Then look once more: a target whose article appeared after the render looked (its job
    released its waiters before this one was recorded) would otherwise never wake us up.
    """
    targets = sorted(set(unresolved))
    if not targets:
        return
    store.add_waiting(referrer_id, targets)
    for target in targets:
        article_id = store.article_of(target)
        if article_id and article_id != resolver.tried.get(target):
            _enqueue_referrer(enqueuer, referrer_id, article_id)


def release_waiting(store: ArticleStore, enqueuer: Enqueuer, document_ids: Iterable[str],
                    article_id: str) -> list[str]:  # fmt: skip
    """Queue one ``articles.sync`` per document waiting on any of ``document_ids``.

    The de-duplication key names the referrer and the new article, so a retry of this job (or
    a referrer waiting on several members of the group) queues it once.
    """
    released: list[str] = []
    for target in document_ids:
        referrers = store.waiting_on(target)
        for referrer in referrers:
            if _enqueue_referrer(enqueuer, referrer, article_id):
                released.append(referrer)
        store.stop_waiting(target, referrers)
    if released:
        log_event(logger, "article.links_released", article_id=article_id, referrers=released)
    return released


def _enqueue_referrer(enqueuer: Enqueuer, referrer_id: str, article_id: str) -> bool:
    result = enqueuer.enqueue(routing.ARTICLES_SYNC, (referrer_id,),
                              dedup_key=f"articles:link:{referrer_id}:{article_id}")  # fmt: skip
    return result.queued
