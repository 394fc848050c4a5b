"""The reconcile beat job and ``intercom-sync backfill articles`` (queueing and dry run)."""

# ruff: noqa: F811  (pytest fixtures imported from the harness are redefined as arguments)
from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.unit.articles.test_harness import (  # noqa: F401 (fixtures)
    Harness,
    article_doc,
    article_fakes,
    harness,
    translation_group,
)
from workers.articles import queries
from workers.articles.backfill import parse_since, run_backfill
from workers.articles.reconcile import reconcile
from workers.ops import cli
from workers.settings import get_settings

JAN, MAR = 1_735_689_600.0, 1_740_787_200.0  # 2025-01-01, 2025-03-01 (UTC)


@contextmanager
def sanity_time(h: Harness, when: float) -> Iterator[None]:
    """Writes in the fake Sanity get ``_updatedAt`` = ``when``."""
    saved, h.sanity._clock = h.sanity._clock, lambda: when
    try:
        yield
    finally:
        h.sanity._clock = saved


def _ids(jobs: list) -> list[tuple[str, str]]:
    return sorted((task, args[0]) for task, args in jobs)


# --- reconcile -------------------------------------------------------------------------------


def test_first_run_queues_every_document_once(harness: Harness) -> None:
    harness.sanity.seed([article_doc("a", "A"), article_doc("en", "En"),
                         article_doc("fr", "Fr", locale="fr"),
                         translation_group("grp", {"en": "en", "fr": "fr"})])  # fmt: skip
    summary = reconcile(harness.services)
    assert (summary.changed, summary.missing, summary.gone, summary.enqueued) == (3, 3, 0, 3)
    assert _ids(harness.take_queued()) == [("articles.sync", d) for d in ("a", "en", "fr")]
    assert reconcile(harness.services).enqueued == 0  # same versions: nothing queued again
    assert harness.calls() == {}


def test_missed_webhooks_are_repaired(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    with sanity_time(harness, JAN):
        harness.sanity.seed([article_doc("a", "A"), article_doc("b", "B")])
        harness.sync("a")
        harness.sync("b")
        reconcile(harness.services)
    harness.take_queued()
    with sanity_time(harness, MAR):  # webhooks lost: an edit and a new document
        harness.sanity.edit("a", {"title": "A, edited"})
        harness.sanity.publish(article_doc("c", "C"))
    with caplog.at_level(logging.INFO, logger="intercom_sync.articles"):
        summary = reconcile(harness.services)
    assert _ids(harness.take_queued()) == [("articles.sync", "a"), ("articles.sync", "c")]
    assert (summary.changed, summary.missing, summary.enqueued) == (2, 1, 2)
    (line,) = [r for r in caplog.records if r.getMessage() == "articles.reconciled"]
    assert (line.changed, line.missing, line.gone, line.enqueued) == (2, 1, 0, 2)
    assert [harness.sync(d).outcome for d in ("a", "c")] == ["updated", "created"]
    assert {a["title"] for a in harness.articles()} == {"A, edited", "B", "C"}


def test_mapped_article_whose_document_vanished_is_taken_down(harness: Harness) -> None:
    harness.sanity.seed([article_doc("a", "A"), article_doc("b", "B")])
    harness.sync("a")
    harness.sync("b")
    harness.sanity.delete("a")  # its delete webhook was lost
    summary = reconcile(harness.services)
    assert summary.gone == 1
    assert ("articles.delete", "a") in _ids(harness.take_queued())
    assert harness.delete("a").outcome == "unpublished"
    assert reconcile(harness.services).gone == 0


def test_paged_queries_walk_past_one_page(harness: Harness) -> None:
    count = queries.PAGE_SIZE + 15
    with sanity_time(harness, JAN):
        harness.sanity.seed([article_doc(f"d{i:04d}", f"T{i}") for i in range(count)])
    ids = [d["_id"] for d in queries.changed_since(harness.services.sanity, "supportArticle")]
    assert len(ids) == len(set(ids)) == count
    missing = list(queries.without_article(harness.services.sanity, "supportArticle"))
    assert len(missing) == count


# --- backfill --------------------------------------------------------------------------------


def test_backfill_queues_each_document_with_progress_and_a_count(harness: Harness) -> None:
    harness.sanity.seed([article_doc(f"d{i:03d}", f"T{i}") for i in range(250)])
    out, err = io.StringIO(), io.StringIO()
    assert run_backfill(harness.services, since=None, dry=False, out=out, err=err) == 0
    assert out.getvalue() == "250 documents queued for articles.sync\n"
    assert [line.split(" (")[0] for line in err.getvalue().splitlines()] == [
        "backfill: 100 documents queued", "backfill: 200 documents queued"]
    jobs = harness.take_queued()
    assert len(jobs) == 250 and len({args[0] for _, args in jobs}) == 250
    assert harness.calls() == {}


def test_backfill_counts_each_document_once_while_workers_write_back(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sanity_time(harness, JAN):
        harness.sanity.seed([article_doc(f"d{i:03d}", f"T{i}") for i in range(250)])
    sanity = harness.services.sanity
    query = sanity.query

    def query_while_workers_run(groq: str, params: dict, *, tag: str | None = None) -> object:
        answer = query(groq, params, tag=tag)
        if params.get("after") == "":  # a worker writes d000's article id back after page 1
            with sanity_time(harness, MAR):
                harness.sanity.edit("d000", {"intercomArticleId": "9000001"})
        return answer

    monkeypatch.setattr(sanity, "query", query_while_workers_run)
    out = io.StringIO()
    run_backfill(harness.services, since=None, dry=False, out=out, err=io.StringIO())
    assert out.getvalue() == "250 documents queued for articles.sync\n"
    assert len(harness.take_queued()) == 250


def test_backfill_since_takes_only_later_changes(harness: Harness) -> None:
    with sanity_time(harness, JAN):
        harness.sanity.seed([article_doc("old", "Old"), article_doc("new", "New")])
    with sanity_time(harness, MAR):
        harness.sanity.edit("new", {"title": "New, edited"})
    out = io.StringIO()
    run_backfill(harness.services, since="2025-02-01", dry=False, out=out, err=io.StringIO())
    assert _ids(harness.take_queued()) == [("articles.sync", "new")]


def test_dry_run_says_create_update_or_skip_without_calling_intercom(harness: Harness) -> None:
    harness.sanity.seed([
        article_doc("same", "Same"), article_doc("edited", "Edited"), article_doc("new", "New"),
        article_doc("en", "En"), article_doc("fr", "Fr", locale="fr"),
        translation_group("grp", {"en": "en", "fr": "fr"}),
    ])  # fmt: skip
    harness.sync("same")
    harness.sync("edited")
    harness.sanity.edit("edited", {"title": "Edited again"})
    before, out = harness.calls(), io.StringIO()
    run_backfill(harness.services, since=None, dry=True, out=out, err=io.StringIO())
    lines = {line.split()[1]: line.split()[0] for line in out.getvalue().splitlines()[:-1]}
    assert lines == {"same": "skip", "edited": "update", "new": "create", "en": "create",
                     "fr": "skip"}  # fmt: skip
    assert out.getvalue().splitlines()[-1] == (
        "dry run: 5 documents: create 2, update 1, skip 2; no Intercom call made, nothing queued")
    assert harness.calls() == before and harness.queued() == []


def test_parse_since() -> None:
    assert parse_since(None) == queries.EPOCH
    assert parse_since("2025-02-01") == "2025-02-01T00:00:00Z"
    assert parse_since("2025-02-01T10:00:00+02:00") == "2025-02-01T08:00:00Z"
    with pytest.raises(ValueError, match="--since"):
        parse_since("last tuesday")


def test_cli_backfill_articles(harness: Harness, real_redis, real_redis_url: str,
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    harness.sanity.seed([article_doc("a", "A"), article_doc("b", "B")])
    for name, value in harness.fakes.env(REDIS_URL=real_redis_url).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        assert cli.main(["backfill", "articles", "--since", "someday"]) == 2
        assert "--since 'someday' is not a date" in capsys.readouterr().err
        assert cli.main(["backfill", "articles", "--dry-run"]) == 0
        assert "create 2" in capsys.readouterr().out and real_redis.llen("articles") == 0
        assert cli.main(["backfill", "articles"]) == 0
        assert capsys.readouterr().out == "2 documents queued for articles.sync\n"
        assert real_redis.llen("articles") == 2
    finally:
        get_settings.cache_clear()
