"""Crash-safe article creation: an intent recorded before the ``POST``, adoption after a crash.

Intercom articles carry no external id, so if a worker dies (or the answer is lost) after
Intercom created the article but before its id was stored anywhere, nothing links the article to
its document, and a naive retry creates a second one. So, under the group lock:

1. the intent (time, title, author, content hash) is stored in Redis *before* the ``POST``;
2. after the ``POST`` the mapping is stored, then the intent is removed;
3. a run that finds an intent but no mapping pages through ``GET /articles`` (newest first)
   back to the intent's time, and adopts an article with the same title and author created at
   or after it that no other group owns, instead of creating another.

An intent is dropped at once when the ``POST`` certainly did not happen (our own limiter had no
budget, or Intercom refused it with a 4xx): only a crash, a timeout or a 5xx leaves it behind.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis

from workers.articles.store import ArticleStore, key
from workers.clients.intercom import IntercomClient
from workers.jobs.logs import log_event

logger = logging.getLogger("intercom_sync.articles")

INTENT_TTL = 7 * 86400
#: Intercom's clock and ours may differ a little; an article this much older still counts.
CLOCK_SKEW_SECONDS = 10
PER_PAGE = 50  # IntercomClient.list_articles default; 2.14 documents no maximum
MAX_PAGES = 40


@dataclass(frozen=True)
class Intent:
    """A ``POST /articles`` about to be sent for a group."""

    created: float
    title: str
    author_id: int
    hash: str
    replaces: str | None = None


class Intents:
    """The ``intent:{group}`` keys."""

    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.clock = clock

    def record(self, group_key: str, title: str, author_id: int, content_hash: str,
               replaces: str | None) -> Intent:  # fmt: skip
        intent = Intent(self.clock(), title, author_id, content_hash, replaces)
        self.redis.set(key("intent", group_key), json.dumps(asdict(intent)), ex=INTENT_TTL)
        return intent

    def load(self, group_key: str) -> Intent | None:
        raw = self.redis.get(key("intent", group_key))
        if not raw:
            return None
        try:
            return Intent(**json.loads(raw))
        except (TypeError, ValueError):
            return None

    def clear(self, group_key: str) -> None:
        self.redis.delete(key("intent", group_key))


def _matches(article: dict[str, Any], intent: Intent, store: ArticleStore) -> bool:
    created = article.get("created_at")
    return (
        article.get("title") == intent.title
        and str(article.get("author_id")) == str(intent.author_id)
        and isinstance(created, int | float)
        and created >= int(intent.created) - CLOCK_SKEW_SECONDS
        and store.owner_of(str(article.get("id"))) is None
    )


def find_adoptable(intercom: IntercomClient, store: ArticleStore,
                   intent: Intent) -> dict[str, Any] | None:  # fmt: skip
    """The article a lost ``POST`` for ``intent`` created, if Intercom lists one.

    Pages newest first and stops at the first article updated before the intent (an article's
    ``updated_at`` is never before its ``created_at``, so nothing older can match); of several
    matches the earliest created wins.
    """
    oldest_allowed = int(intent.created) - CLOCK_SKEW_SECONDS
    found: list[dict[str, Any]] = []
    for page in range(1, MAX_PAGES + 1):
        answer = intercom.list_articles(page=page, per_page=PER_PAGE) or {}
        articles = [a for a in answer.get("data") or [] if isinstance(a, dict)]
        found.extend(a for a in articles if _matches(a, intent, store))
        older = any((a.get("updated_at") or 0) < oldest_allowed for a in articles)
        total_pages = ((answer.get("pages") or {}).get("total_pages")) or page
        if older or not articles or page >= total_pages:
            break
    else:
        log_event(logger, "article.adopt_search_truncated", logging.WARNING, pages=MAX_PAGES)
    if not found:
        return None
    return min(found, key=lambda a: (a.get("created_at") or 0, int(str(a.get("id") or 0))))
