"""What Redis remembers about synced articles: a cache, never the source of truth.

Sanity's ``intercomArticleId`` is the mapping that survives anything; Redis caches it together
with what only Redis can know (the hashes of what was last sent, article URLs, which documents
wait on a link target), so an unchanged re-publish or a write-back echo costs no Intercom call.
After a Redis flush the mapping is read back from Sanity and the first sync of each article
costs one ``PUT`` (its hashes are unknown), never a second article.

Keys (prefix ``intercom-sync:articles:``):

* ``group:{key}`` hash — one record per translation group (``key`` is the
  ``translation.metadata`` id, or the document id for a single-locale article): ``article_id``,
  ``hash``, ``main``, ``locales`` (JSON ``{locale: hash}`` of ``translated_content``),
  ``versions`` (JSON ``{document id: _updatedAt|_rev}`` last synced), ``replaces`` (the article
  id this one replaced after a 404, until Sanity has the new id);
* ``doc:{document id}`` hash — ``group`` and ``article``: from a document to its article;
* ``article:{article id}`` — the group that owns the article (one owner per article);
* ``url:{article id}`` — the article's Help Center URL, for links;
* ``groups`` set — every group with an article (reconcile looks for vanished documents);
* ``waiting:{document id}`` set — documents whose links wait for this one's article;
* ``intent:{key}`` and ``lock:{key}`` — see :mod:`~workers.articles.intent` and
  :meth:`~workers.articles.sync.ArticleSync.lock`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from workers.clients import help_center
from workers.clients.help_center import PREFIX, key

__all__ = ["PREFIX", "ArticleStore", "GroupRecord", "key"]

WAITING_TTL = 30 * 86400


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _json(value: Any) -> dict[str, str]:
    text = _text(value)
    if not text:
        return {}
    try:
        loaded = json.loads(text)
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


@dataclass
class GroupRecord:
    """What Redis knows about one group's article (empty when nothing is known)."""

    key: str
    article_id: str | None = None
    hash: str | None = None
    main: str | None = None
    locales: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    replaces: str | None = None

    def fields(self) -> dict[str, str]:
        return {
            "article_id": self.article_id or "",
            "hash": self.hash or "",
            "main": self.main or "",
            "locales": json.dumps(self.locales, sort_keys=True),
            "versions": json.dumps(self.versions, sort_keys=True),
            "replaces": self.replaces or "",
        }


class ArticleStore:
    """Reads and writes the keys above; every multi-key write is one pipeline (MULTI)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    # --- groups ---------------------------------------------------------------------------

    def load(self, group_key: str) -> GroupRecord:
        raw = {_text(k): _text(v) for k, v in self.redis.hgetall(key("group", group_key)).items()}
        return GroupRecord(
            key=group_key,
            article_id=raw.get("article_id") or None,
            hash=raw.get("hash") or None,
            main=raw.get("main") or None,
            locales=_json(raw.get("locales")),
            versions=_json(raw.get("versions")),
            replaces=raw.get("replaces") or None,
        )

    def save(self, record: GroupRecord, previous: GroupRecord | None = None) -> None:
        """Store ``record`` and its indexes; ``previous`` is the record it replaces.

        An article has one owner: if another group key owned it (a document joined a
        translation group, so its key changed), that group's record is dropped.
        """
        assert record.article_id
        owner = _text(self.redis.get(key("article", record.article_id)))
        stale = [self.load(owner)] if owner and owner != record.key else []
        if previous is not None:
            stale.append(previous)
        pipe = self.redis.pipeline()
        for old in stale:
            self._unindex(pipe, old, keep_docs=record.versions, keep_group=record.key,
                          keep_article=record.article_id)  # fmt: skip
        pipe.hset(key("group", record.key), mapping=record.fields())
        for document_id in record.versions:
            pipe.hset(key("doc", document_id),
                      mapping={"group": record.key, "article": record.article_id})  # fmt: skip
        pipe.set(key("article", record.article_id), record.key)
        pipe.sadd(key("groups"), record.key)
        pipe.execute()

    @staticmethod
    def _unindex(
        pipe: Any,
        old: GroupRecord,
        *,
        keep_docs: Iterable[str] = (),
        keep_group: str | None = None,
        keep_article: str | None = None,
    ) -> None:
        """Queue the removal of ``old``'s record and indexes, except what the new one uses."""
        kept = set(keep_docs)
        for document_id in old.versions:
            if document_id not in kept:
                pipe.delete(key("doc", document_id))
        if old.key != keep_group:
            pipe.delete(key("group", old.key))
            pipe.srem(key("groups"), old.key)
        for article_id in (old.article_id, old.replaces):
            if article_id and article_id != keep_article:
                pipe.delete(key("article", article_id), key("url", article_id))

    def forget(self, record: GroupRecord) -> None:
        """Drop a group's record, indexes, reverse mapping and cached URL."""
        pipe = self.redis.pipeline()
        self._unindex(pipe, record)
        pipe.execute()

    def forget_document(self, document_id: str) -> None:
        self.redis.delete(key("doc", document_id))

    def group_keys(self) -> Iterator[str]:
        for value in self.redis.sscan_iter(key("groups"), count=500):
            text = _text(value)
            if text:
                yield text

    # --- documents and articles -----------------------------------------------------------

    def group_of(self, document_id: str) -> str | None:
        return _text(self.redis.hget(key("doc", document_id), "group"))

    def article_of(self, document_id: str) -> str | None:
        return help_center.synced_article(self.redis, document_id)

    def owner_of(self, article_id: str) -> str | None:
        return _text(self.redis.get(key("article", article_id)))

    def url(self, article_id: str) -> str | None:
        return help_center.cached_url(self.redis, article_id)

    def set_url(self, article_id: str, url: Any) -> None:
        help_center.cache_url(self.redis, article_id, url)

    # --- documents waiting on a link target -----------------------------------------------

    def add_waiting(self, referrer_id: str, target_ids: Iterable[str]) -> None:
        pipe = self.redis.pipeline()
        for target in target_ids:
            pipe.sadd(key("waiting", target), referrer_id)
            pipe.expire(key("waiting", target), WAITING_TTL)
        pipe.execute()

    def waiting_on(self, target_id: str) -> list[str]:
        return sorted(filter(None, map(_text, self.redis.smembers(key("waiting", target_id)))))

    def stop_waiting(self, target_id: str, referrer_ids: Iterable[str]) -> None:
        referrers = list(referrer_ids)
        if referrers:
            self.redis.srem(key("waiting", target_id), *referrers)
