"""``intercom-sync articles preview DOCUMENT_ID``: the HTML a sync would send, and what changed.

Editors write Portable Text; Intercom keeps only a small part of HTML. Before publishing (or
when an article looks different in Intercom than in Sanity) this shows, without writing
anything anywhere, the body of every locale exactly as the sync would send it, each way it
differs from the document (a mapped heading, dropped formatting, a flattened list, a skipped
block type ...), and what Intercom's own rules would still change or refuse
(:mod:`workers.articles.conformance`; always nothing, unless the renderer has a bug).
"""

from __future__ import annotations

from typing import TextIO

from workers.articles.conformance import SANITY_CDN_HOST, Violation, violations
from workers.articles.content import ArticleInvalid, ArticlePlan
from workers.articles.sync import ArticleSync
from workers.clients.services import Services


def plan_violations(plan: ArticlePlan) -> list[tuple[str, Violation]]:
    """``(locale, violation)`` for every locale body of ``plan`` that breaks Intercom's rules."""
    found: list[tuple[str, Violation]] = []
    seen: set[str] = set()
    for content in (plan.main, *plan.translations):
        if content.document_id in seen:
            continue
        seen.add(content.document_id)
        body = content.fields.get("body") or ""
        found.extend((content.locale, v) for v in violations(body, image_hosts={SANITY_CDN_HOST}))
    return found


def run_preview(services: Services, document_id: str, out: TextIO) -> int:
    """Print the preview of ``document_id``; the exit status (1: nothing would be sent)."""
    sync = ArticleSync(services)
    try:
        preview = sync.preview(document_id, set())
    except ArticleInvalid as exc:
        print(f"invalid {document_id}: {exc}", file=out)
        return 1
    plan = preview.plan
    if plan is None:
        print(f"{preview.action} {document_id}: {preview.reason}; no body would be sent", file=out)
        return 1
    article = f"article {preview.article_id}" if preview.article_id else "a new article"
    print(f"{preview.action} {article} for {document_id} {plan.title!r} ({preview.reason})",
          file=out)  # fmt: skip
    seen: set[str] = set()
    for content in (plan.main, *plan.translations):
        if content.document_id in seen:
            continue
        seen.add(content.document_id)
        print(f"\n--- body [{content.locale}] from {content.document_id}", file=out)
        print(content.fields.get("body") or "", file=out)
        print(f"--- changes to the content [{content.locale}]", file=out)
        if not content.degradations:
            print("  none", file=out)
        for what, count in content.degradations:
            print(f"  {what}" + (f" (x{count})" if count > 1 else ""), file=out)
    broken = plan_violations(plan)
    print("\n--- Intercom's article rules", file=out)
    if not broken:
        print("  no violation: Intercom keeps this body as sent", file=out)
    for locale, violation in broken:
        print(f"  [{locale}] {violation}", file=out)
    print("\nnothing was sent or written", file=out)
    return 0
