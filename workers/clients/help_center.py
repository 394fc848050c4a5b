"""Which Intercom article a Sanity document is synced to, and that article's public URL.

Why here, below the domains: article sync writes this mapping (:mod:`workers.articles.store`
owns the records), and conversation triage reads it to link a reply to a synced article. A
domain never imports another domain, so the one thing both need, the format of the keys and the
two reads, lives at the clients layer next to the Intercom client that answers the URL. The
article store builds every key with :func:`key` from here: one definition of the format.

Keys (prefix ``intercom-sync:articles:``): ``doc:{document id}`` is a hash whose ``article``
field is the Intercom article id; ``url:{article id}`` is the article's Help Center URL.
"""

from __future__ import annotations

from typing import Any

import redis

from workers.clients.intercom import IntercomClient
from workers.jobs.errors import NotFound

PREFIX = "intercom-sync:articles:"


def key(kind: str, name: str = "") -> str:
    """The Redis key of ``kind`` for ``name`` (``key("group", "abc")``)."""
    return f"{PREFIX}{kind}:{name}" if name else f"{PREFIX}{kind}"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def synced_article(client: redis.Redis, document_id: str) -> str | None:
    """The Intercom article id that ``document_id`` is synced to, if article sync stored one."""
    return _text(client.hget(key("doc", document_id), "article"))


def cached_url(client: redis.Redis, article_id: str) -> str | None:
    return _text(client.get(key("url", article_id)))


def cache_url(client: redis.Redis, article_id: str, url: Any) -> None:
    """Remember a non-empty URL (a null ``url`` means the Help Center website is off)."""
    if isinstance(url, str) and url:
        client.set(key("url", article_id), url)


def fetch_article(client: redis.Redis, intercom: IntercomClient,
                  article_id: str) -> dict[str, Any] | None:  # fmt: skip
    """``GET /articles/{id}`` (None when Intercom no longer has it); caches its URL."""
    try:
        article = intercom.get_article(article_id)
    except NotFound:
        return None
    cache_url(client, article_id, article.get("url"))
    return article
