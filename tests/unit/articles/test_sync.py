"""Article sync against the fake Sanity and the OpenAPI-validating fake Intercom.

Each test states the Intercom calls an event may cost (DESIGN §3): zero for an unchanged
re-publish or a write-back echo, one ``PUT`` for a changed article, ``POST`` plus the Sanity
write-back for a new one, and never a second article for one translation group.
"""

# ruff: noqa: F811  (pytest fixtures imported from the harness are redefined as arguments)
from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.unit.articles.test_harness import (  # noqa: F401 (fixtures)
    AUTHOR_ID,
    COLLECTION_ID,
    Fakes,
    Harness,
    article_doc,
    article_fakes,
    harness,
    translation_group,
)
from workers.articles.content import ArticleInvalid
from workers.articles.store import ArticleStore, key
from workers.articles.sync import ArticleSync, sync_document
from workers.clients.intercom import IntercomClient
from workers.jobs.errors import ConnectionFailed, RateLimited, ServerError

PUT = "PUT /articles/{article_id}"
POST = "POST /articles"


def _new_calls(h: Harness, before: dict[str, int]) -> dict[str, int]:
    after = h.calls()
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def _bodies(h: Harness, method: str) -> list[Any]:
    return [body for m, _path, body in h.sent if m == method]


# --- create, update, unchanged, echo ---------------------------------------------------------


def test_new_document_is_one_post_and_the_id_is_written_back(harness: Harness) -> None:
    harness.sanity.seed([article_doc("a1", "Refunds", text="Money back & more")])
    result = harness.sync("a1")
    assert result.outcome == "created" and result.written_back == 1
    assert harness.calls() == {POST: 1}
    (body,) = _bodies(harness, "POST")
    assert body == {
        "title": "Refunds", "description": "About Refunds",
        "body": "<p>Money back &amp; more</p>", "author_id": int(AUTHOR_ID),
        "state": "published", "parent_id": int(COLLECTION_ID), "parent_type": "collection",
    }  # fmt: skip
    stored = harness.sanity.document("a1")
    assert stored["intercomArticleId"] == result.article_id == harness.articles()[0]["id"]


def test_unchanged_republish_costs_no_intercom_call(harness: Harness) -> None:
    harness.sanity.seed([article_doc("a1", "Refunds")])
    harness.sync("a1")
    before, transactions = harness.calls(), harness.sanity.stats()["transactions"]
    # An editor publishes the same content again: a new _rev and _updatedAt, nothing else.
    harness.sanity.publish({**harness.sanity.document("a1")})
    assert harness.sync("a1").outcome == "unchanged"
    assert _new_calls(harness, before) == {}
    assert harness.sanity.stats()["transactions"] == transactions + 1  # only the editor's


def test_write_back_echo_costs_nothing_anywhere(harness: Harness) -> None:
    harness.sanity.seed([article_doc("en", "Refunds"), article_doc("fr", "Rembourser", locale="fr"),
                         translation_group("grp", {"en": "en", "fr": "fr"})])  # fmt: skip
    harness.sync("en")
    before, transactions = harness.calls(), harness.sanity.stats()["transactions"]
    # The write-back re-published both documents: each fires the webhook, i.e. a sync.
    assert [harness.sync(d).outcome for d in ("en", "fr", "en")] == ["unchanged"] * 3
    assert _new_calls(harness, before) == {}
    assert harness.sanity.stats()["transactions"] == transactions  # no further Sanity write


def test_changed_article_is_exactly_one_put_with_state_and_string_parent(harness: Harness) -> None:
    harness.sanity.seed([article_doc("a1", "Refunds")])
    article_id = harness.sync("a1").article_id
    before = harness.calls()
    harness.sanity.edit("a1", {"title": "Refunds, explained", "intercomCollectionId": 88})
    assert harness.sync("a1").outcome == "updated"
    assert _new_calls(harness, before) == {PUT: 1}  # and no GET before it
    method, path, body = harness.sent[-1]
    assert (method, path) == ("PUT", f"/articles/{article_id}")
    assert body["state"] == "published" and body["parent_id"] == "88"
    assert harness.articles()[0]["title"] == "Refunds, explained"
    assert harness.intercom.article_puts_without_state == 0


def test_intercom_state_field_is_always_sent(harness: Harness) -> None:
    harness.sanity.seed([article_doc("a1", "Refunds", intercomState="draft")])
    harness.sync("a1")
    assert _bodies(harness, "POST")[0]["state"] == "draft"
    harness.sanity.edit("a1", {"intercomState": "published"})
    harness.sync("a1")
    assert _bodies(harness, "PUT")[0]["state"] == "published"
    assert harness.articles()[0]["state"] == "published"


def test_document_of_another_type_or_without_title(harness: Harness) -> None:
    harness.sanity.seed([{"_id": "p1", "_type": "post", "title": "Blog"},
                         article_doc("a1", "  ")])  # fmt: skip
    assert harness.sync("p1").outcome == "ignored"
    with pytest.raises(ArticleInvalid):
        harness.sync("a1")
    assert harness.calls() == {}


# --- translations ----------------------------------------------------------------------------


def test_locales_go_into_translated_content_of_one_article(harness: Harness) -> None:
    harness.sanity.seed([
        article_doc("de", "Erstattungen", locale="de"), article_doc("en", "Refunds"),
        article_doc("fr", "Remboursements", locale="fr", intercomState="draft"),
        translation_group("grp", {"de": "de", "en": "en", "fr": "fr"}),
    ])  # fmt: skip
    result = harness.sync("fr")  # any member syncs the whole group
    assert harness.calls() == {POST: 1} and result.written_back == 3
    (body,) = _bodies(harness, "POST")
    assert body["title"] == "Refunds"
    content = body["translated_content"]
    assert content["type"] == "article_translated_content" and set(content) == {"type", "de", "fr"}
    assert content["fr"] == {"type": "article_content", "title": "Remboursements",
                             "description": "About Remboursements",
                             "body": "<p>Body of Remboursements</p>",
                             "author_id": int(AUTHOR_ID), "state": "draft"}  # fmt: skip
    assert {harness.sanity.document(d)["intercomArticleId"] for d in ("de", "en", "fr")} == {
        result.article_id}
    stored = harness.articles()[0]["translated_content"]
    assert stored["de"]["title"] == "Erstattungen"


def test_without_default_locale_first_locale_in_sort_order_is_main(harness: Harness) -> None:
    harness.sanity.seed([article_doc("fr", "Remboursements", locale="fr"),
                         article_doc("de", "Erstattungen", locale="de"),
                         translation_group("grp", {"fr": "fr", "de": "de"})])  # fmt: skip
    harness.sync("fr")
    (body,) = _bodies(harness, "POST")
    assert body["title"] == "Erstattungen"
    assert set(body["translated_content"]) == {"type", "de", "fr"}


def test_unpublished_locale_resyncs_the_group_without_it(harness: Harness) -> None:
    harness.sanity.seed([article_doc("en", "Refunds"), article_doc("fr", "Rembourser", locale="fr"),
                         translation_group("grp", {"en": "en", "fr": "fr"})])  # fmt: skip
    harness.sync("en")
    before = harness.calls()
    harness.sanity.unpublish("fr")
    assert harness.delete("fr").outcome == "updated"
    assert _new_calls(harness, before) == {PUT: 1}
    body = _bodies(harness, "PUT")[-1]
    assert body["translated_content"]["fr"] == {"type": "article_content", "state": "draft"}
    assert harness.articles()[0]["state"] == "published"
    # The main locale goes: the next locale's content becomes the main content.
    harness.sanity.republish("fr")
    harness.sync("fr")
    harness.sanity.unpublish("en")
    harness.delete("en")
    article = harness.articles()[0]
    assert article["title"] == "Rembourser" and article["state"] == "published"
    assert article["translated_content"]["fr"]["state"] == "published"
    assert len(harness.articles()) == 1


# --- delete policies -------------------------------------------------------------------------


def test_unpublish_with_draft_policy_keeps_the_article_and_url(harness: Harness) -> None:
    harness.sanity.seed([article_doc("a1", "Refunds")])
    article_id = harness.sync("a1").article_id
    url = harness.articles()[0]["url"]
    harness.sanity.unpublish("a1")
    before = harness.calls()
    assert harness.delete("a1").outcome == "unpublished"
    assert _new_calls(harness, before) == {PUT: 1}
    assert _bodies(harness, "PUT")[-1] == {"state": "draft"}
    assert harness.articles()[0]["state"] == "draft"
    assert ArticleStore(harness.redis).load("a1").article_id is None  # mapping and hash gone
    # Idempotent: a second delete, or a late duplicate delivery, costs nothing.
    before = harness.calls()
    assert harness.delete("a1").outcome == "nothing"
    assert harness.sync("a1").outcome == "nothing"
    assert _new_calls(harness, before) == {}
    # Re-published: the same article and URL come back (the document kept its id).
    harness.sanity.republish("a1")
    assert harness.sync("a1").outcome == "updated"
    assert [(a["id"], a["url"], a["state"]) for a in harness.articles()] == [
        (article_id, url, "published")]


def test_delete_policy_deletes_the_article(article_fakes: Fakes) -> None:
    h = Harness(article_fakes, ARTICLE_DELETE_POLICY="delete")
    h.sanity.seed([article_doc("en", "Refunds"), article_doc("fr", "Rembourser", locale="fr"),
                   translation_group("grp", {"en": "en", "fr": "fr"})])  # fmt: skip
    h.sync("en")
    h.sanity.delete("fr")
    h.sanity.delete("en")
    h.sanity.delete("grp")
    assert h.delete("en").outcome == "deleted"
    assert h.articles() == [] and h.calls()["DELETE /articles/{article_id}"] == 1
    before = h.calls()
    assert h.delete("fr").outcome == "nothing"
    assert _new_calls(h, before) == {}
    assert h.violations() == []


def test_group_draft_unpublishes_every_locale(harness: Harness) -> None:
    harness.sanity.seed([article_doc("en", "Refunds"), article_doc("fr", "Rembourser", locale="fr"),
                         translation_group("grp", {"en": "en", "fr": "fr"})])  # fmt: skip
    harness.sync("en")
    harness.sanity.unpublish("en")
    harness.sanity.unpublish("fr")
    assert harness.delete("en").outcome == "unpublished"
    article = harness.articles()[0]
    assert article["state"] == "draft" and article["translated_content"]["fr"]["state"] == "draft"


# --- failures and recovery -------------------------------------------------------------------


def test_article_deleted_in_intercom_is_recreated_and_remapped(harness: Harness) -> None:
    harness.sanity.seed([article_doc("en", "Refunds"), article_doc("fr", "Rembourser", locale="fr"),
                         translation_group("grp", {"en": "en", "fr": "fr"})])  # fmt: skip
    old = harness.sync("en").article_id
    harness.intercom.delete_article(old)
    harness.sanity.edit("en", {"title": "Refunds v2"})
    result = harness.sync("en")
    assert result.outcome == "recreated" and result.article_id != old
    assert harness.calls() == {POST: 2, PUT: 1}
    assert [a["id"] for a in harness.articles()] == [result.article_id]
    assert {harness.sanity.document(d)["intercomArticleId"] for d in ("en", "fr")} == {
        result.article_id}
    assert harness.sync("fr").outcome == "unchanged"


def test_redis_flush_between_syncs_creates_no_duplicate(harness: Harness) -> None:
    harness.sanity.seed([article_doc("a1", "Refunds")])
    article_id = harness.sync("a1").article_id
    harness.redis.flushall()
    # Sanity still names the article: one PUT (its hash is unknown now), never a POST.
    assert harness.sync("a1").outcome == "updated"
    assert harness.sync("a1").outcome == "unchanged"
    assert harness.calls() == {POST: 1, PUT: 1}
    assert [a["id"] for a in harness.articles()] == [article_id]


def _short_timeouts(h: Harness) -> None:
    client = h.services.intercom
    client.timeout = (1.0, 0.5)


def test_lost_create_answer_is_adopted_not_duplicated(harness: Harness) -> None:
    harness.sanity.seed([article_doc("a1", "Refunds")])
    _short_timeouts(harness)
    harness.intercom.inject_delay(1.5, path_prefix="/articles", method="POST")
    with pytest.raises(ConnectionFailed):
        harness.sync("a1")  # Intercom created the article; the answer never came
    assert len(harness.articles()) == 1
    assert harness.redis.exists(key("intent", "a1"))
    result = harness.sync("a1")
    assert result.outcome == "adopted" and result.article_id == harness.articles()[0]["id"]
    assert harness.calls()[POST] == 1 and harness.calls()["GET /articles"] == 1
    assert harness.sanity.document("a1")["intercomArticleId"] == result.article_id
    assert not harness.redis.exists(key("intent", "a1"))


def test_crash_after_post_before_write_back_adopts_and_sends_later_edits(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.sanity.seed([article_doc("old", "Refunds"), article_doc("a1", "Refunds")])
    harness.sync("old")  # another group's article with the same title: never adopted
    create = IntercomClient.create_article

    def create_then_die(self: IntercomClient, body: dict) -> dict:
        create(self, body)
        raise SystemExit("worker killed")

    monkeypatch.setattr(IntercomClient, "create_article", create_then_die)
    with pytest.raises(SystemExit):
        harness.sync("a1")
    monkeypatch.undo()
    harness.sanity.edit("a1", {"excerpt": "Edited while the worker was down"})
    result = harness.sync("a1")
    assert result.outcome == "adopted"
    assert harness.calls()[POST] == 2 and len(harness.articles()) == 2
    mine = harness.article("a1")
    assert mine["description"] == "Edited while the worker was down"  # the adoption sent it
    assert harness.article("old")["id"] != mine["id"]


def test_definite_create_failures_drop_the_intent_uncertain_ones_keep_it(
    harness: Harness,
) -> None:
    harness.sanity.seed([article_doc("a1", "Refunds")])
    harness.intercom.inject_fault(429, path_prefix="/articles", method="POST")
    with pytest.raises(RateLimited):
        harness.sync("a1")
    assert not harness.redis.exists(key("intent", "a1"))
    for name in harness.redis.scan_iter("intercom-sync:ratelimit:*"):
        harness.redis.delete(name)  # the 429 closed our window; the next one has budget again
    harness.intercom.inject_fault(503, path_prefix="/articles", method="POST")
    with pytest.raises(ServerError):
        harness.sync("a1")
    assert harness.redis.exists(key("intent", "a1"))
    assert harness.sync("a1").outcome == "created"  # searched, found nothing, created
    assert len(harness.articles()) == 1


def test_write_back_conflict_retries_only_the_write_back(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.sanity.seed([article_doc("a1", "Refunds")])
    sanity = harness.services.sanity
    mutate, edited = sanity.mutate, []

    def editor_publishes_first(mutations: list) -> dict:
        if not edited:  # an editor publishes between our read and our write-back
            edited.append(harness.sanity.edit("a1", {"excerpt": "New excerpt"}))
        return mutate(mutations)

    monkeypatch.setattr(sanity, "mutate", editor_publishes_first)
    result = harness.sync("a1")
    assert result.outcome == "created" and result.written_back == 1
    assert harness.sanity.stats()["conflicts"] == 1
    assert harness.calls() == {POST: 1}
    doc = harness.sanity.document("a1")
    assert doc["intercomArticleId"] == result.article_id and doc["excerpt"] == "New excerpt"
    assert harness.sync("a1").outcome == "updated"  # the editor's change goes out once


def test_out_of_order_job_reads_again_instead_of_sending_old_content(harness: Harness) -> None:
    harness.sanity.seed([article_doc("a1", "Version 1")])
    harness.sync("a1")
    late = ArticleSync(harness.services)
    old_snapshot = late.read("a1")  # a slow job read version 1 ...
    harness.sanity.edit("a1", {"title": "Version 2"})
    harness.sync("a1")  # ... while a faster job synced version 2
    before = harness.calls()
    assert late._dispatch(old_snapshot).outcome == "unchanged"
    assert _new_calls(harness, before) == {}
    assert harness.articles()[0]["title"] == "Version 2"


def test_concurrent_jobs_for_one_new_group_create_one_article(harness: Harness) -> None:
    harness.sanity.seed([article_doc("en", "Refunds"), article_doc("fr", "Rembourser", locale="fr"),
                         translation_group("grp", {"en": "en", "fr": "fr"})])  # fmt: skip
    workers = [harness.new_services() for _ in range(8)]
    start = threading.Barrier(len(workers))
    outcomes: list[str] = []

    def job(index: int) -> None:
        start.wait()
        outcomes.append(sync_document(workers[index], ("en", "fr")[index % 2]).outcome)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["created"] + ["unchanged"] * 7
    assert harness.calls() == {POST: 1} and len(harness.articles()) == 1
