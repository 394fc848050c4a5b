"""Write the Intercom article id back to every document of a group in Sanity.

``intercomArticleId`` in Sanity is the mapping that survives a Redis flush. The ids are set in
one transaction with ``ifRevisionID`` per document, so an editor's publish in between is never
overwritten with stale data: Sanity answers 409, and only the write-back is retried (after
re-reading the documents), never the ``POST``, whose article is already stored in Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from workers.articles.model import ArticleDoc
from workers.clients.sanity import SanityClient
from workers.jobs.errors import Conflict, TransientServiceError
from workers.jobs.logs import log_event

logger = logging.getLogger("intercom_sync.articles")

FIELD = "intercomArticleId"
ATTEMPTS = 4


class WriteBackConflict(TransientServiceError):
    """The documents kept changing under the write-back; the job is retried later."""


def pending(docs: Sequence[ArticleDoc], article_id: str) -> list[ArticleDoc]:
    """The documents that do not hold ``article_id`` yet."""
    return [doc for doc in docs if doc.article_id != article_id]


def write_back(sanity: SanityClient, docs: Sequence[ArticleDoc], article_id: str,
               reread: Callable[[], Sequence[ArticleDoc]]) -> dict[str, str]:  # fmt: skip
    """Set ``intercomArticleId`` on each of ``docs`` lacking it.

    Returns ``{document id: new _rev}`` of the documents written (Sanity's new ``_rev`` is the
    transaction id). ``reread`` reads the group's documents again after a 409.
    """
    todo = pending(docs, article_id)
    attempt = 0
    while todo:
        attempt += 1
        if attempt > ATTEMPTS:
            raise WriteBackConflict(f"write-back of article {article_id} kept conflicting",
                                    service="sanity", code="writeback_conflict")  # fmt: skip
        mutations = [{"patch": {"id": doc.id, "ifRevisionID": doc.rev,
                                "set": {FIELD: article_id}}} for doc in todo]  # fmt: skip
        try:
            answer = sanity.mutate(mutations) or {}
        except Conflict:
            log_event(logger, "article.writeback_conflict", logging.INFO, article_id=article_id,
                      attempt=attempt, documents=[doc.id for doc in todo])  # fmt: skip
            todo = pending(reread(), article_id)
            continue
        log_event(logger, "article.written_back", article_id=article_id,
                  documents=[doc.id for doc in todo])  # fmt: skip
        revision = str(answer.get("transactionId") or "")
        return {doc.id: revision for doc in todo}
    return {}
