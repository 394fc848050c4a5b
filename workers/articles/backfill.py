"""``intercom-sync backfill articles``: queue a sync of every article document, or preview it.

For a first import, after restoring a dataset, or to push a change of rendering to every
article. Documents are paged from Sanity and each gets one ``articles.sync`` job; the workers do
the rest under the shared Intercom rate limit, so a backfill of thousands of documents never
competes with webhooks for more than its share of the budget (articles have their own queue).

``--dry-run`` reads each document and says whether its job would create, update or skip the
article, from the mapping and content hashes alone, and how the rendered body differs from the
document (with any break of Intercom's article rules): no Intercom call and nothing queued.

After an upgrade that changes the renderer (its version is part of every content hash), a
``backfill articles`` re-renders and re-sends every article at once instead of one by one on
each document's next publish.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

from workers.articles import queries
from workers.articles.content import ArticleInvalid, degradation_summary
from workers.articles.preview import plan_violations
from workers.articles.reconcile import format_time
from workers.articles.sync import ArticleSync, Preview
from workers.clients.services import Services
from workers.jobs import routing

PROGRESS_EVERY = 100


def parse_since(value: str | None) -> str:
    """``--since`` (``2025-01-31`` or an ISO date-time) as Sanity's ``_updatedAt`` format."""
    if not value:
        return queries.EPOCH
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {value!r} is not a date (YYYY-MM-DD) or ISO date-time") from None
    return format_time(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


@dataclass
class Progress:
    """``backfill: 1200 documents queued (350/s)`` on stderr: rewritten in place on a terminal,
    one line every ``PROGRESS_EVERY`` documents otherwise (logs, CI)."""

    stream: TextIO
    verb: str
    count: int = 0
    started: float = field(default_factory=time.monotonic)

    def step(self) -> None:
        self.count += 1
        tty = self.stream.isatty()
        if tty or self.count % PROGRESS_EVERY == 0:
            self._show(end="" if tty else "\n")

    def _show(self, end: str) -> None:
        rate = self.count / max(1e-6, time.monotonic() - self.started)
        prefix = "\r" if self.stream.isatty() else ""
        print(f"{prefix}backfill: {self.count} documents {self.verb} ({rate:.0f}/s)", end=end,
              file=self.stream, flush=True)  # fmt: skip

    def done(self) -> None:
        if self.stream.isatty() and self.count:
            print(file=self.stream)


def enqueue_all(services: Services, since: str, out: TextIO, err: TextIO) -> int:
    """Queue ``articles.sync`` for every document changed after ``since``; return the count."""
    progress = Progress(err, "queued")
    article_type = services.settings.SANITY_ARTICLE_TYPE
    for document in queries.documents(services.sanity, article_type, since):
        services.enqueuer.enqueue(routing.ARTICLES_SYNC, (document["_id"],))
        progress.step()
    progress.done()
    print(f"{progress.count} documents queued for {routing.ARTICLES_SYNC}", file=out)
    return progress.count


def _preview_line(preview: Preview, broken: int = 0) -> str:
    title = f" {preview.title!r}" if preview.title else ""
    article = f" article {preview.article_id}" if preview.article_id else ""
    line = f"{preview.action:<7}{preview.document_id}{title}{article} ({preview.reason})"
    changes = sum((preview.degradations or {}).values())
    if changes:
        summary = degradation_summary(preview.degradations or {}, 5)
        line += f"; {changes} change(s) to the content: {summary}"
    if broken:
        line += f"; {broken} break(s) of Intercom's article rules"
    return line


def dry_run(services: Services, since: str, out: TextIO, err: TextIO) -> Counter[str]:
    """Print what each document's sync would do; return the totals per action."""
    sync = ArticleSync(services)
    progress = Progress(err, "checked")
    planned: set[str] = set()
    totals: Counter[str] = Counter()
    degraded: Counter[str] = Counter()
    article_type = services.settings.SANITY_ARTICLE_TYPE
    for document in queries.documents(services.sanity, article_type, since):
        try:
            preview = sync.preview(document["_id"], planned)
            broken = len(plan_violations(preview.plan)) if preview.plan is not None else 0
            line = _preview_line(preview, broken)
            totals[preview.action] += 1
            if preview.degradations:
                totals["degraded"] += 1
                degraded.update(preview.degradations)
            totals["broken"] += int(bool(broken))
        except ArticleInvalid as exc:
            line = f"invalid {document['_id']} ({exc})"
            totals["invalid"] += 1
        print(line, file=out)
        progress.step()
    progress.done()
    actions = ("create", "update", "skip", "delete", "invalid")
    summary = ", ".join(f"{action} {totals[action]}" for action in actions if totals[action])
    documents = sum(totals[action] for action in actions)
    print(f"dry run: {documents} documents: {summary or 'nothing to do'}; "
          "no Intercom call made, nothing queued", file=out)  # fmt: skip
    if degraded:
        print(f"content changes in {totals['degraded']} document(s): "
              f"{degradation_summary(dict(degraded.most_common()), 10)}", file=out)  # fmt: skip
    if totals["broken"]:
        print(f"{totals['broken']} document(s) break Intercom's article rules "
              "(see `intercom-sync articles preview DOCUMENT_ID`)", file=out)  # fmt: skip
    return totals


def run_backfill(services: Services, *, since: str | None, dry: bool,
                 out: TextIO | None = None, err: TextIO | None = None) -> int:  # fmt: skip
    """The CLI command (``out``/``err`` default to the streams of the moment); returns the
    exit status."""
    services.require("articles")
    start = parse_since(since)
    out, err = out or sys.stdout, err or sys.stderr
    if dry:
        dry_run(services, start, out, err)
    else:
        enqueue_all(services, start, out, err)
    return 0
