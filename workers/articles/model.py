"""The documents a sync reads, parsed from the document query's answer.

Sanity content is edited by people and can hold anything, so parsing is defensive: a field of
the wrong type reads as missing rather than failing the job. A :class:`Snapshot` is one read of
one document and its translation group: the published members of the article type, one per
locale, which together make one Intercom article.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.jobs.logs import log_event

logger = logging.getLogger("intercom_sync.articles")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _id_text(value: Any) -> str | None:
    """An id stored as a string or a number (``intercomArticleId``, ``intercomCollectionId``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


@dataclass(frozen=True)
class Link:
    """An internal link in a body: the target document and its Intercom id, if it has one."""

    document_id: str
    article_id: str | None


@dataclass(frozen=True)
class ArticleDoc:
    """A published document as the sync reads it (``queries.ARTICLE_FIELDS``)."""

    id: str
    type: str
    rev: str
    updated_at: str
    title: str | None
    slug: str | None
    excerpt: str | None
    body: Any
    locale: str | None
    collection_id: str | None
    state: str | None
    article_id: str | None
    product_area: str | None
    links: tuple[Link, ...]

    @classmethod
    def parse(cls, raw: Any) -> ArticleDoc | None:
        """The document in ``raw``, or None when it is absent or has no id."""
        if not isinstance(raw, Mapping) or not _text(raw.get("_id")):
            return None
        links = []
        for link in raw.get("links") or ():
            if isinstance(link, Mapping) and _text(link.get("id")):
                links.append(Link(link["id"], _id_text(link.get("intercomArticleId"))))
        return cls(
            id=raw["_id"],
            type=_text(raw.get("_type")) or "",
            rev=_text(raw.get("_rev")) or "",
            updated_at=_text(raw.get("_updatedAt")) or "",
            title=_text(raw.get("title")),
            slug=_text(raw.get("slug")),
            excerpt=_text(raw.get("excerpt")),
            body=raw.get("body"),
            locale=_text(raw.get("locale")),
            collection_id=_id_text(raw.get("intercomCollectionId")),
            state=_text(raw.get("intercomState")),
            article_id=_id_text(raw.get("intercomArticleId")),
            product_area=_text(raw.get("productArea")),
            links=tuple(links),
        )

    @property
    def version(self) -> str:
        """What identifies this revision: ``_updatedAt`` (sortable) and ``_rev``."""
        return f"{self.updated_at}|{self.rev}"


@dataclass(frozen=True)
class Member:
    """One locale of a translation group."""

    locale: str
    doc: ArticleDoc


@dataclass(frozen=True)
class Snapshot:
    """One read of ``document_id`` and its group.

    ``document`` is the requested document whatever its type (None: deleted or unpublished);
    ``members`` are the group's published documents of the article type, sorted by locale, one
    per locale; a document without a group is a group of one under ``default_locale``.
    """

    document_id: str
    document: ArticleDoc | None
    group_id: str | None
    members: tuple[Member, ...]

    @property
    def key(self) -> str:
        """The group's identity in Redis: the metadata document's id, else the document's."""
        return self.group_id or self.document_id

    @property
    def member_ids(self) -> tuple[str, ...]:
        return tuple(m.doc.id for m in self.members)

    def is_article(self, article_type: str) -> bool:
        """Whether the requested document is a published document of the article type."""
        return self.document is not None and self.document.type == article_type

    @classmethod
    def parse(cls, document_id: str, raw: Any, article_type: str,
              default_locale: str) -> Snapshot:  # fmt: skip
        """Build the snapshot from the ``queries.DOCUMENT`` answer."""
        raw = raw if isinstance(raw, Mapping) else {}
        document = ArticleDoc.parse(raw.get("document"))
        group = raw.get("group") if isinstance(raw.get("group"), Mapping) else None
        members: dict[str, Member] = {}
        group_id = _text(group.get("_id")) if group else None
        for item in (group or {}).get("members") or ():
            if not isinstance(item, Mapping):
                continue
            doc = ArticleDoc.parse(item.get("document"))
            locale = _text(item.get("locale")) or (doc.locale if doc else None)
            if doc is None or doc.type != article_type or not locale:
                continue  # unpublished, deleted, another type, or no locale to file it under
            if locale in members:
                log_event(logger, "article.duplicate_locale", logging.WARNING, locale=locale,
                          document_id=doc.id, kept=members[locale].doc.id)  # fmt: skip
                continue
            members[locale] = Member(locale, doc)
        in_group = document is not None and any(m.doc.id == document.id for m in members.values())
        if document is not None and document.type == article_type and not in_group:
            # No group, or a group that does not list this document: a single-locale article.
            group_id = None
            members = {document.locale or default_locale: Member(document.locale or
                                                                 default_locale, document)}
        if document is None and not members:
            group_id = None
        ordered = tuple(members[locale] for locale in sorted(members))
        return cls(document_id, document, group_id, ordered)
