"""Every GROQ query of the article sync, one definition each, named by its tag.

Why one place: Sanity shows the ``tag`` in its request logs, and the fake Sanity
(:mod:`workers.sandbox.fake_sanity`) does not evaluate GROQ; it recognises each query by its tag
(and checks that the text is the one defined here) and answers with a Python equivalent. A
query changed here without its twin there fails the tests instead of drifting silently.

The document query is the whole read of a sync: the document, its translation group
(``@sanity/document-internationalization``), every published member's fields, the referenced
``productArea`` title and, for each internal link, the target's ``intercomArticleId``, in one
request. Paged queries use a literal page size (GROQ slices take literals) and keyset paging on
``(_updatedAt, _id)`` or ``_id``, which stays correct while documents change between pages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from workers.clients.sanity import SanityClient

#: Documents per page of the paged queries (reconcile, backfill).
PAGE_SIZE = 200
#: Ids per ``EXISTING`` query (they travel as a parameter in the request body).
IDS_PER_QUERY = 200
#: The earliest ``_updatedAt``: "every document".
EPOCH = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class Query:
    """A GROQ query and the tag that names it in Sanity's logs and in the fake."""

    tag: str
    groq: str

    def run(self, sanity: SanityClient, **params: Any) -> Any:
        """The query's ``result`` for ``params`` (each becomes ``$name`` in the GROQ)."""
        return sanity.query(self.groq, params, tag=self.tag)


# The fields of an article document as the sync reads them. ``@[$localeField]`` is attribute
# access by a parameter (the field name comes from SANITY_LOCALE_FIELD). Links are read from
# the body's markDefs and from one level of nested blocks (a callout's ``body``).
ARTICLE_FIELDS = """
    _id, _type, _rev, _updatedAt, title, "slug": slug.current, excerpt, body,
    "locale": @[$localeField], intercomCollectionId, intercomState, intercomArticleId,
    "productArea": productArea->title,
    "links": [...body[].markDefs[], ...body[].body[].markDefs[]][
      _type in ["internalLink", "reference"]
    ]{
      "id": coalesce(reference._ref, _ref),
      "intercomArticleId": coalesce(reference->intercomArticleId, @->intercomArticleId)
    }
"""

DOCUMENT = Query(
    "intercom-sync.articles.document",
    '{\n  "document": *[_id == $id][0]{' + ARTICLE_FIELDS + "},\n"
    '  "group": *[_type == "translation.metadata" && references($id)][0]{\n'
    "    _id,\n"
    '    "members": translations[]{\n'
    '      "locale": coalesce(language, _key),\n'
    '      "document": value->{' + ARTICLE_FIELDS + "}\n"
    "    }\n"
    "  }\n"
    "}",
)

CHANGED = Query(
    "intercom-sync.articles.changed",
    "*[_type == $type && (_updatedAt > $since || (_updatedAt == $since && _id > $after))]"
    f" | order(_updatedAt asc, _id asc) [0...{PAGE_SIZE}]"
    " {_id, _updatedAt, intercomArticleId}",
)

#: Backfill pages by ``_id``: stable while the workers' write-backs move ``_updatedAt`` on.
DOCUMENTS = Query(
    "intercom-sync.articles.documents",
    "*[_type == $type && _updatedAt > $since && _id > $after]"
    f" | order(_id asc) [0...{PAGE_SIZE}] {{_id, _updatedAt}}",
)

MISSING = Query(
    "intercom-sync.articles.missing",
    "*[_type == $type && !defined(intercomArticleId) && _id > $after]"
    f" | order(_id asc) [0...{PAGE_SIZE}] {{_id, _updatedAt}}",
)

EXISTING = Query("intercom-sync.articles.existing", "*[_id in $ids]._id")

#: The ``intercom-sync check`` count.
COUNT = Query("intercom-sync.check", "count(*[_type == $type])")

ALL: tuple[Query, ...] = (DOCUMENT, CHANGED, DOCUMENTS, MISSING, EXISTING, COUNT)
BY_TAG: dict[str, Query] = {query.tag: query for query in ALL}


def changed_since(sanity: SanityClient, article_type: str,
                  since: str = EPOCH) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Every document of ``article_type`` changed after ``since``, oldest change first (a
    document changed again during the scan comes again: callers de-duplicate)."""
    after = ""
    while True:
        page = CHANGED.run(sanity, type=article_type, since=since, after=after) or []
        yield from (doc for doc in page if isinstance(doc, dict) and doc.get("_id"))
        if len(page) < PAGE_SIZE:
            return
        since, after = page[-1].get("_updatedAt") or since, page[-1]["_id"]


def _by_id(query: Query, sanity: SanityClient, **params: Any) -> Iterator[dict[str, Any]]:
    after = ""
    while True:
        page = query.run(sanity, after=after, **params) or []
        yield from (doc for doc in page if isinstance(doc, dict) and doc.get("_id"))
        if len(page) < PAGE_SIZE:
            return
        after = page[-1]["_id"]


def documents(sanity: SanityClient, article_type: str,
              since: str = EPOCH) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Every document of ``article_type`` changed after ``since``, each once, by id."""
    return _by_id(DOCUMENTS, sanity, type=article_type, since=since)


def without_article(sanity: SanityClient, article_type: str) -> Iterator[dict[str, Any]]:
    """Every document of ``article_type`` without ``intercomArticleId``, by id."""
    return _by_id(MISSING, sanity, type=article_type)


def existing(sanity: SanityClient, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` are published documents."""
    wanted = sorted(set(ids))
    found: set[str] = set()
    for start in range(0, len(wanted), IDS_PER_QUERY):
        found.update(EXISTING.run(sanity, ids=wanted[start:start + IDS_PER_QUERY]) or [])
    return found
