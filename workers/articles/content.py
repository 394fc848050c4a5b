"""What is sent to Intercom for a translation group, and the content hashes that decide whether
anything needs to be sent at all.

One Intercom article per group: the main locale (``DEFAULT_LOCALE``, else the first locale in
sort order) gives the top-level title, description and body; every other locale goes into
``translated_content`` (and so does the main one when it is not ``DEFAULT_LOCALE``). A locale
that left the group is sent as a draft: Intercom keeps locales a ``PUT`` leaves out.

Each locale's hash is taken over exactly the ``article_content`` sent for it, and the article's
hash over the main locale, the parent and those locale hashes, so a change that Intercom would
not see (``intercomArticleId`` written back, a new ``_rev`` or
``_updatedAt``) never changes a hash: the write-back echo costs no Intercom call.

Bodies are rendered by :mod:`workers.articles.portable_text`, which asks a link resolver for the URL
of each referenced article; the resolved URL is part of the body, so a link becoming resolvable is
a change that is sent. The renderer's version is part of each locale's hash: a renderer that sends
different HTML for the same document changes every hash, so each article is re-sent once, on its
next sync or all at once with ``intercom-sync backfill articles``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from workers.articles.model import Member, Snapshot
from workers.articles.portable_text import RENDERER_VERSION, RenderOptions, render
from workers.jobs.errors import PermanentServiceError
from workers.jobs.logs import log_event
from workers.settings import Settings

logger = logging.getLogger("intercom_sync.articles")

#: Locale keys of ``article_translated_content`` in Intercom's 2.14 OpenAPI description.
INTERCOM_LOCALES = frozenset({
    "ar", "bg", "bs", "ca", "cs", "da", "de", "el", "en", "es", "et", "fi", "fr", "he", "hr",
    "hu", "id", "it", "ja", "ko", "lt", "lv", "mn", "nb", "nl", "pl", "pt", "ro", "ru", "sl",
    "sr", "sv", "tr", "vi", "pt-BR", "zh-CN", "zh-TW",
})  # fmt: skip
# Old or alternative codes editors use for a language Intercom spells differently.
_LOCALE_ALIASES = {"no": "nb", "iw": "he", "in": "id", "zh": "zh-CN", "pt-PT": "pt"}
_LOCALE = re.compile(r"^([A-Za-z]{2,3})(?:[-_]([A-Za-z0-9]{2,8}))?")
_DIGITS = re.compile(r"^\d{1,20}\Z")
PARENT_TYPE = "collection"


class ArticleInvalid(PermanentServiceError):
    """The document cannot become an Intercom article as it is (no title, bad collection id).

    Permanent: retrying cannot help until an editor fixes the document, whose next publish
    queues a new job anyway.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, service="sanity", code="invalid_article")


def intercom_locale(code: str | None) -> str | None:
    """The ``translated_content`` key for a Sanity locale code (``fr``, ``pt_BR``, ``de-CH``).

    Region-specific codes Intercom has (``pt-BR``) are kept, others fall back to the language;
    None when Intercom has no such language.
    """
    match = _LOCALE.match(code or "")
    if match is None:
        return None
    language, region = match.group(1).lower(), (match.group(2) or "")
    full = f"{language}-{region.upper()}" if region else language
    for candidate in (full, _LOCALE_ALIASES.get(full), language, _LOCALE_ALIASES.get(language)):
        if candidate in INTERCOM_LOCALES:
            return candidate
    return None


def main_member(members: Iterable[Member], default_locale: str) -> Member:
    """The member whose content is the article's main content (DESIGN §3)."""
    ordered = sorted(members, key=lambda m: m.locale)
    wanted = intercom_locale(default_locale)
    for member in ordered:
        if member.locale == default_locale:
            return member
    for member in ordered:
        if wanted is not None and intercom_locale(member.locale) == wanted:
            return member
    return ordered[0]


def digest(value: Any) -> str:
    """A stable hash of JSON-able ``value`` (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def content_hash(fields: dict[str, Any]) -> str:
    """A locale's hash: what is sent, and which renderer version produced it."""
    return digest({**fields, "renderer": RENDERER_VERSION})


def degradation_summary(degradations: dict[str, int], limit: int = 20) -> str | None:
    """``"heading h3 sent as h2 x2; underline formatting dropped"`` for one log field (None:
    nothing was degraded)."""
    if not degradations:
        return None
    parts = [what if count == 1 else f"{what} x{count}" for what, count in degradations.items()]
    more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
    return "; ".join(parts[:limit]) + more


@dataclass(frozen=True)
class LocaleContent:
    """One locale's ``article_content`` (without ``type``) and its hash."""

    locale: str
    document_id: str
    fields: dict[str, Any]
    hash: str
    references: frozenset[str] = frozenset()
    unresolved: frozenset[str] = frozenset()
    degradations: tuple[tuple[str, int], ...] = ()

    def translated(self) -> dict[str, Any]:
        return {"type": "article_content", **self.fields}


@dataclass(frozen=True)
class ArticlePlan:
    """The article a group should be in Intercom, and its hash."""

    key: str
    main: LocaleContent
    translations: tuple[LocaleContent, ...]
    parent_id: int
    hash: str
    skipped_types: tuple[str, ...] = field(default=())

    @property
    def title(self) -> str:
        return self.main.fields["title"]

    @property
    def author_id(self) -> int:
        return self.main.fields["author_id"]

    @property
    def locale_hashes(self) -> dict[str, str]:
        """``{intercom locale: hash}`` of the translations (what ``translated_content`` holds)."""
        return {content.locale: content.hash for content in self.translations}

    @property
    def degradations(self) -> dict[str, int]:
        """How the rendered bodies differ from the documents, summed over the locales sent."""
        total: dict[str, int] = {}
        seen: set[str] = set()
        for content in (self.main, *self.translations):
            if content.document_id in seen:
                continue  # the main content may also be its locale's translation
            seen.add(content.document_id)
            for what, count in content.degradations:
                total[what] = total.get(what, 0) + count
        return total

    @property
    def unresolved(self) -> frozenset[str]:
        found: set[str] = set(self.main.unresolved)
        for content in self.translations:
            found |= content.unresolved
        return frozenset(found)

    def _body(self, parent_id: int | str, removed: Iterable[str]) -> dict[str, Any]:
        body: dict[str, Any] = {**self.main.fields, "parent_id": parent_id,
                                "parent_type": PARENT_TYPE}  # fmt: skip
        translated: dict[str, Any] = {c.locale: c.translated() for c in self.translations}
        for locale in sorted(set(removed) - set(translated)):
            # Intercom keeps locales a PUT leaves out: unpublish the ones no longer in the group.
            translated[locale] = {"type": "article_content", "state": "draft"}
        if translated:
            body["translated_content"] = {"type": "article_translated_content", **translated}
        return body

    def create_body(self) -> dict[str, Any]:
        """``POST /articles``: ``parent_id`` is an integer on create."""
        return self._body(self.parent_id, ())

    def update_body(self, removed_locales: Iterable[str] = ()) -> dict[str, Any]:
        """``PUT /articles/{id}``: ``state`` always, ``parent_id`` a string on update."""
        return self._body(str(self.parent_id), removed_locales)


Resolver = Callable[[str], str | None]


def _state(member: Member) -> str:
    state = member.doc.state
    if state not in (None, "published", "draft"):
        log_event(logger, "article.invalid_state", logging.WARNING, document_id=member.doc.id,
                  state=str(state)[:40])  # fmt: skip
    return "draft" if state == "draft" else "published"


def _parent_id(member: Member, settings: Settings) -> int:
    value = member.doc.collection_id or settings.INTERCOM_DEFAULT_COLLECTION_ID
    if not value or not _DIGITS.match(value):
        raise ArticleInvalid(f"document {member.doc.id}: intercomCollectionId {value!r} is not "
                             "an Intercom collection id")  # fmt: skip
    return int(value)


def render_locale(member: Member, locale: str, settings: Settings,
                  resolver: Resolver | None) -> tuple[LocaleContent, tuple[str, ...]]:  # fmt: skip
    """Render one member into its ``article_content`` fields; also the skipped block types."""
    doc = member.doc
    rendered = render(doc.body if isinstance(doc.body, list) else None, RenderOptions(
        project_id=settings.SANITY_PROJECT_ID or "", dataset=settings.SANITY_DATASET or "",
        link_resolver=resolver,
    ))  # fmt: skip
    fields = {
        "title": (doc.title or "").strip(),
        "description": doc.excerpt or "",
        "body": rendered.html,
        "author_id": int(settings.INTERCOM_AUTHOR_ID or 0),
        "state": _state(member),
    }
    content = LocaleContent(locale, doc.id, fields, content_hash(fields), rendered.references,
                            rendered.unresolved, rendered.degradations)  # fmt: skip
    return content, rendered.skipped_types


def _skip_reason(member: Member, locale: str | None, seen: set[str]) -> str | None:
    """Why a translation cannot go into ``translated_content`` (None: it can)."""
    if locale is None:
        return "not an Intercom locale"
    if locale in seen:
        return "same Intercom locale as another member"
    if not (member.doc.title or "").strip():
        return "no title"
    return None


def build_plan(snapshot: Snapshot, settings: Settings, resolver: Resolver | None) -> ArticlePlan:
    """The article for ``snapshot``'s group; :class:`ArticleInvalid` when it cannot be one."""
    main = main_member(snapshot.members, settings.DEFAULT_LOCALE)
    if not (main.doc.title or "").strip():
        raise ArticleInvalid(f"document {main.doc.id} has no title; Intercom requires one")
    main_key = intercom_locale(main.locale) or main.locale
    main_content, skipped = render_locale(main, main_key, settings, resolver)
    translations: list[LocaleContent] = []
    if main_key in INTERCOM_LOCALES and main_key != intercom_locale(settings.DEFAULT_LOCALE):
        # No DEFAULT_LOCALE document: the main content fills the default slot and also stays
        # its own locale's translation, so that locale's readers keep a published version.
        translations.append(main_content)
    seen = {main_key}
    for member in snapshot.members:
        if member is main:
            continue
        locale = intercom_locale(member.locale)
        reason = _skip_reason(member, locale, seen)
        if reason is not None or locale is None:
            log_event(logger, "article.locale_skipped", logging.WARNING, document_id=member.doc.id,
                      locale=member.locale, reason=reason)  # fmt: skip
            continue
        seen.add(locale)
        content, more = render_locale(member, locale, settings, resolver)
        translations.append(content)
        skipped += more
    parent_id = _parent_id(main, settings)
    article_hash = digest({
        "main": main_key, "main_hash": main_content.hash, "parent_id": str(parent_id),
        "parent_type": PARENT_TYPE, "locales": {c.locale: c.hash for c in translations},
    })  # fmt: skip
    return ArticlePlan(snapshot.key, main_content, tuple(translations), parent_id, article_hash,
                       tuple(dict.fromkeys(skipped)))  # fmt: skip
