"""Sync one document's translation group to its Intercom article, or take the article down.

Both tasks, ``articles.sync`` and ``articles.delete``, come here and converge on the same
question, "what does Sanity hold now?", so delivery order and duplicates do not matter:

* published article document → create or update the group's article (under the group lock);
* gone or unpublished, other locales still published → sync the group without it;
* gone, nothing left → ``ARTICLE_DELETE_POLICY``: ``PUT state=draft`` or ``DELETE``.

Calls per event (DESIGN §3): one Sanity query always; nothing more when the content hashes
match what was last sent (unchanged re-publish, write-back echo); one ``PUT`` for a changed
mapped article; ``POST`` plus one Sanity mutation for a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from workers.articles import queries
from workers.articles.content import (
    ArticlePlan,
    LocaleContent,
    build_plan,
    degradation_summary,
    main_member,
)
from workers.articles.intent import Intents, find_adoptable
from workers.articles.links import LinkResolver, release_waiting, wait_for_targets
from workers.articles.model import ArticleDoc, Snapshot
from workers.articles.store import ArticleStore, GroupRecord
from workers.articles.store import key as store_key
from workers.articles.writeback import write_back
from workers.clients.services import Services
from workers.jobs.errors import NotFound, certainly_not_sent
from workers.jobs.locks import exclusive
from workers.jobs.logs import log_event

logger = logging.getLogger("intercom_sync.articles")

#: Outcomes after which documents waiting on a link to this group are re-synced.
NEW_ARTICLE = frozenset({"created", "adopted", "recreated"})


@dataclass(frozen=True)
class Result:
    """What one sync or delete did (logged as one ``article.synced`` line)."""

    outcome: str
    document_id: str
    group: str | None = None
    article_id: str | None = None
    written_back: int = 0
    degradations: dict[str, int] | None = None


@dataclass(frozen=True)
class Preview:
    """What a sync would do, decided without calling Intercom (``backfill --dry-run``)."""

    action: str  # create | update | skip | delete
    document_id: str
    group: str
    article_id: str | None
    title: str | None
    reason: str = ""
    degradations: dict[str, int] | None = None
    plan: ArticlePlan | None = None


def _older_or_equal(stored: str, current: str) -> bool:
    """Whether the synced version ``stored`` (``_updatedAt|_rev``) is at least as new as
    ``current`` and differs from it: the snapshot may predate what was already synced."""
    if stored == current:
        return False
    stored_time, _, stored_rev = stored.partition("|")
    current_time, _, current_rev = current.partition("|")
    return stored_rev != current_rev and stored_time >= current_time


class ArticleSync:
    """The article sync of one job: services, Redis state and the steps of a sync."""

    def __init__(self, services: Services) -> None:
        services.require("articles")
        self.services = services
        self.settings = services.settings
        self.store = ArticleStore(services.redis)
        self.intents = Intents(services.redis)

    # --- reading ----------------------------------------------------------------------------

    def read(self, document_id: str) -> Snapshot:
        """The document and its group as published now (one GROQ query)."""
        raw = queries.DOCUMENT.run(self.services.sanity, id=document_id,
                                   localeField=self.settings.SANITY_LOCALE_FIELD)  # fmt: skip
        return Snapshot.parse(document_id, raw, self.settings.SANITY_ARTICLE_TYPE,
                              self.settings.DEFAULT_LOCALE)  # fmt: skip

    def lock(self, group_key: str) -> AbstractContextManager[None]:
        """One job at a time per translation group; it outlives the task time limit, so a job
        still running always holds it, and a killed worker's lock frees itself. A waiter polls
        a few seconds (the holder usually finishes in well under one), then the job retries."""
        return exclusive(
            self.services.redis,
            store_key("lock", group_key),
            what=f"article group {group_key}",
            lock_seconds=self.settings.TASK_TIME_LIMIT + 60,
        )

    def mapping(self, snapshot: Snapshot, record: GroupRecord) -> str | None:
        """The group's article id: Sanity's ``intercomArticleId`` is the truth; Redis is trusted
        over it only for an article that replaced the one Sanity still names (re-created after
        a 404, write-back pending), or when Sanity has none yet (crash before the write-back)."""
        main = main_member(snapshot.members, self.settings.DEFAULT_LOCALE)
        ordered = [main, *(m for m in snapshot.members if m is not main)]
        in_sanity = [m.doc.article_id for m in ordered if m.doc.article_id]
        if record.article_id and set(in_sanity) <= {record.article_id, record.replaces}:
            return record.article_id
        if in_sanity:
            return in_sanity[0]
        indexed = (self.store.article_of(m.doc.id) for m in ordered)
        return next((article_id for article_id in indexed if article_id), None)

    def resolver(self, snapshot: Snapshot, article_id: str | None, *,
                 network: bool = True) -> LinkResolver:  # fmt: skip
        known = {link.document_id: link.article_id for member in snapshot.members
                 for link in member.doc.links}  # fmt: skip
        intercom = self.services.intercom if network else None
        return LinkResolver(self.store, intercom, known=known, own=snapshot.member_ids,
                            own_article=article_id)  # fmt: skip

    # --- entry points -----------------------------------------------------------------------

    def sync(self, document_id: str) -> Result:
        """``articles.sync`` and ``articles.delete``: make Intercom match what Sanity holds."""
        result = self._dispatch(self.read(document_id))
        log_event(logger, "article.synced", outcome=result.outcome, document_id=document_id,
                  group=result.group, article_id=result.article_id,
                  written_back=result.written_back or None,
                  degradations=degradation_summary(result.degradations or {}))  # fmt: skip
        return result

    def _dispatch(self, snapshot: Snapshot, *, again: bool = True) -> Result:
        article_type = self.settings.SANITY_ARTICLE_TYPE
        if snapshot.document is not None and not snapshot.is_article(article_type):
            return Result("ignored", snapshot.document_id)
        if not snapshot.members:
            survivors = self._survivors(snapshot.document_id)
            if survivors is None:
                return self._take_down(snapshot.document_id)
            snapshot = survivors
        with self.lock(snapshot.key):
            record = self.store.load(snapshot.key)
            if not self._stale(snapshot, record):
                return self._apply(snapshot, record)
            # Read before an earlier job stored a newer version (out-of-order jobs): read
            # again; under the lock nobody else can store a newer one meanwhile.
            fresh = self.read(snapshot.document_id)
            if fresh.key == snapshot.key and fresh.members and (
                fresh.document is None or fresh.is_article(article_type)
            ):
                return self._apply(fresh, record)
        if not again:
            return Result("stale", snapshot.document_id, snapshot.key)
        return self._dispatch(fresh, again=False)

    @staticmethod
    def _stale(snapshot: Snapshot, record: GroupRecord) -> bool:
        return any(_older_or_equal(record.versions.get(m.doc.id, m.doc.version), m.doc.version)
                   for m in snapshot.members)  # fmt: skip

    def _survivors(self, document_id: str) -> Snapshot | None:
        """The rest of a deleted document's group, found through Redis when Sanity's group no
        longer lists the deleted document."""
        group_key = self.store.group_of(document_id)
        if not group_key:
            return None
        others = [d for d in self.store.load(group_key).versions if d != document_id]
        for other in others:
            snapshot = self.read(other)
            if snapshot.members:
                return snapshot
        return None

    # --- create or update -------------------------------------------------------------------

    def _apply(self, snapshot: Snapshot, record: GroupRecord) -> Result:
        article_id = self.mapping(snapshot, record)
        resolver = self.resolver(snapshot, article_id)
        plan = build_plan(snapshot, self.settings, resolver)
        self._wait_for_links(plan, resolver)
        if article_id and record.article_id == article_id and record.hash == plan.hash:
            outcome, article = "unchanged", None
        elif article_id:
            outcome, article = self._update(snapshot.key, plan, article_id, record)
        else:
            outcome, article = self._create(snapshot.key, plan, replaces=None)
        new_id = str(article["id"]) if article else article_id
        assert new_id is not None
        if article:
            self.store.set_url(new_id, article.get("url"))
        # The article this one replaced (404 in Intercom) until Sanity stops naming it.
        replaces = article_id if article_id and article_id != new_id else record.replaces
        revisions = self._save(snapshot, record, plan, new_id, replaces)
        self.intents.clear(snapshot.key)
        written = write_back(self.services.sanity, [m.doc for m in snapshot.members], new_id,
                             reread=lambda: self._reread_members(snapshot))  # fmt: skip
        if written:
            revisions.update({doc: f"{revisions[doc].partition('|')[0]}|{rev}"
                              for doc, rev in written.items() if doc in revisions})  # fmt: skip
            self._save(snapshot, record, plan, new_id, replaces, revisions)
        if outcome in NEW_ARTICLE:
            release_waiting(self.store, self.services.enqueuer, snapshot.member_ids, new_id)
        return Result(outcome, snapshot.document_id, snapshot.key, new_id, len(written),
                      plan.degradations)  # fmt: skip

    def _save(
        self,
        snapshot: Snapshot,
        record: GroupRecord,
        plan: ArticlePlan,
        article_id: str,
        replaces: str | None,
        versions: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """Store the group's record (unless nothing changed); return the versions stored."""
        versions = versions or {m.doc.id: m.doc.version for m in snapshot.members}
        if replaces and not any(m.doc.article_id == replaces for m in snapshot.members):
            replaces = None  # Sanity no longer names the replaced article
        new = GroupRecord(snapshot.key, article_id, plan.hash, plan.main.locale,
                          plan.locale_hashes, versions, replaces)  # fmt: skip
        if new != record:
            self.store.save(new, previous=record if record.article_id else None)
        return versions

    def _reread_members(self, snapshot: Snapshot) -> Sequence[ArticleDoc]:
        wanted = set(snapshot.member_ids)
        return [m.doc for m in self.read(snapshot.members[0].doc.id).members if m.doc.id in wanted]

    def _wait_for_links(self, plan: ArticlePlan, resolver: LinkResolver) -> None:
        contents: list[LocaleContent] = [plan.main, *plan.translations]
        for content in contents:
            wait_for_targets(self.store, self.services.enqueuer, content.document_id, resolver,
                             content.unresolved)  # fmt: skip

    def _update(self, group_key: str, plan: ArticlePlan, article_id: str,
                record: GroupRecord) -> tuple[str, dict[str, Any]]:  # fmt: skip
        removed: set[str] = set()
        if record.article_id == article_id:  # locales this article had that left the group
            removed = set(record.locales) - set(plan.locale_hashes)
        try:
            return "updated", self.services.intercom.update_article(
                article_id, plan.update_body(removed))
        except NotFound:
            log_event(logger, "article.gone_in_intercom", logging.WARNING, article_id=article_id,
                      group=group_key)  # fmt: skip
            return self._create(group_key, plan, replaces=article_id)

    def _create(self, group_key: str, plan: ArticlePlan,
                replaces: str | None) -> tuple[str, dict[str, Any]]:  # fmt: skip
        intercom = self.services.intercom
        intent = self.intents.load(group_key)
        if intent is not None:
            found = find_adoptable(intercom, self.store, intent)
            if found is not None:
                age = round(self.intents.clock() - intent.created, 1)
                log_event(logger, "article.adopted", logging.WARNING, article_id=found.get("id"),
                          group=group_key, intent_age_s=age)  # fmt: skip
                if intent.hash != plan.hash:  # edited since the lost POST: send the edit
                    found = intercom.update_article(str(found["id"]), plan.update_body())
                return "adopted", found
        self.intents.record(group_key, plan.title, plan.author_id, plan.hash, replaces)
        try:
            article = intercom.create_article(plan.create_body())
        except Exception as exc:
            if certainly_not_sent(exc):
                self.intents.clear(group_key)
            raise
        return ("recreated" if replaces else "created"), article

    # --- take down --------------------------------------------------------------------------

    def _take_down(self, document_id: str) -> Result:
        """Nothing of the group is published: apply ``ARTICLE_DELETE_POLICY`` once."""
        group_key = self.store.group_of(document_id) or document_id
        with self.lock(group_key):
            record = self.store.load(group_key)
            if not record.article_id:
                self.store.forget_document(document_id)
                return Result("nothing", document_id, group_key)
            deleting = self.settings.ARTICLE_DELETE_POLICY == "delete"
            try:
                if deleting:
                    self.services.intercom.delete_article(record.article_id)
                else:
                    self.services.intercom.update_article(record.article_id,
                                                          _draft_body(record))  # fmt: skip
            except NotFound:
                log_event(logger, "article.already_gone", article_id=record.article_id)
            self.store.forget(record)
            self.store.forget_document(document_id)
        return Result("deleted" if deleting else "unpublished", document_id, group_key,
                      record.article_id)  # fmt: skip

    # --- dry run ----------------------------------------------------------------------------

    def preview(self, document_id: str, planned: set[str]) -> Preview:
        """What :meth:`sync` would do for ``document_id``, without any Intercom call.

        ``planned`` collects the groups already previewed: a second member of a group would
        find the article the first one's job creates, so it is a ``skip``.
        """
        snapshot = self.read(document_id)
        if not snapshot.is_article(self.settings.SANITY_ARTICLE_TYPE):
            known = self.store.group_of(document_id)
            return Preview("delete" if known else "skip", document_id, known or document_id,
                           None, None, "not published")  # fmt: skip
        record = self.store.load(snapshot.key)
        article_id = self.mapping(snapshot, record)
        plan = build_plan(snapshot, self.settings, self.resolver(snapshot, article_id,
                                                                 network=False))  # fmt: skip
        if snapshot.key in planned:
            action, reason = "skip", "same article as another document of its group"
        elif not article_id:
            action, reason = "create", "no article yet"
        elif record.article_id == article_id and record.hash == plan.hash:
            action, reason = "skip", "unchanged"
        else:
            action, reason = "update", "changed" if record.hash else "hash unknown"
        planned.add(snapshot.key)
        return Preview(action, document_id, snapshot.key, article_id, plan.title, reason,
                       plan.degradations, plan)  # fmt: skip


def _draft_body(record: GroupRecord) -> dict[str, Any]:
    """Unpublish the article in every locale: ``state`` on top applies to the main one only."""
    body: dict[str, Any] = {"state": "draft"}
    if record.locales:
        body["translated_content"] = {"type": "article_translated_content", **{
            locale: {"type": "article_content", "state": "draft"} for locale in record.locales}}
    return body


def sync_document(services: Services, document_id: str) -> Result:
    """``articles.sync``: create, update, or take down the article of ``document_id``."""
    return ArticleSync(services).sync(document_id)


def delete_document(services: Services, document_id: str) -> Result:
    """``articles.delete``: the same convergence as :func:`sync_document`; a document that was
    published again by the time this runs is synced rather than taken down."""
    return ArticleSync(services).sync(document_id)
