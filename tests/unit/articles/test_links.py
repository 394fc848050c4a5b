"""Links between articles: Intercom URLs when the target has an article, text until it does,
and exactly one re-sync of each waiting document when the target's article appears."""

# ruff: noqa: F811  (pytest fixtures imported from the harness are redefined as arguments)
from __future__ import annotations

from tests.unit.articles.test_harness import (  # noqa: F401 (fixtures)
    Harness,
    article_doc,
    article_fakes,
    harness,
    translation_group,
)
from workers.articles.store import ArticleStore


def _body(h: Harness, document_id: str) -> str:
    return h.article(document_id)["body"]


def test_link_waits_for_its_target_then_the_referrer_is_resynced_once(harness: Harness) -> None:
    harness.sanity.seed([article_doc("a", "Refunds", text="See billing", link_to="b"),
                         article_doc("b", "Billing")])  # fmt: skip
    harness.sync("a")
    assert _body(harness, "a") == "<p>See billing</p>"  # text only: b has no article yet
    assert ArticleStore(harness.redis).waiting_on("b") == ["a"]
    assert harness.take_queued() == []

    harness.sync("b")  # b's article is created: a is queued once
    harness.sync("b")  # its write-back echo
    assert harness.take_queued() == [("articles.sync", ["a"])]
    assert ArticleStore(harness.redis).waiting_on("b") == []

    before = harness.calls()
    assert harness.sync("a").outcome == "updated"
    url = harness.article("b")["url"]
    assert _body(harness, "a") == f'<p><a href="{url}">See billing</a></p>'
    new = {k: v - before.get(k, 0) for k, v in harness.calls().items() if v != before.get(k)}
    assert new == {"PUT /articles/{article_id}": 1}  # the URL was cached: no GET
    assert harness.take_queued() == []


def test_unknown_url_costs_one_get_then_is_cached(harness: Harness) -> None:
    harness.sanity.seed([article_doc("b", "Billing")])
    harness.sync("b")
    harness.sanity.publish(article_doc("a", "Refunds", text="See billing", link_to="b"))
    harness.redis.flushall()  # b's URL is gone from Redis; its id is still in Sanity
    harness.sync("a")
    assert harness.calls()["GET /articles/{article_id}"] == 1
    assert f'href="{harness.article("b")["url"]}"' in _body(harness, "a")
    harness.sanity.edit("a", {"excerpt": "changed"})
    harness.sync("a")
    assert harness.calls()["GET /articles/{article_id}"] == 1


def test_link_to_a_translation_member_and_to_its_own_group(harness: Harness) -> None:
    harness.sanity.seed([
        article_doc("en", "Refunds", text="This page", link_to="en"),
        article_doc("fr", "Rembourser", locale="fr", text="Billing", link_to="b-fr"),
        translation_group("grp", {"en": "en", "fr": "fr"}),
        article_doc("b-en", "Billing"), article_doc("b-fr", "Facturation", locale="fr"),
        translation_group("b-grp", {"en": "b-en", "fr": "b-fr"}),
    ])  # fmt: skip
    harness.sync("en")
    queued = harness.take_queued()
    assert queued == [("articles.sync", ["en"])]  # waited on itself: its URL came with the POST
    harness.sync("b-en")
    assert harness.take_queued() == [("articles.sync", ["fr"])]
    harness.sync("fr")
    article = harness.article("en")
    assert article["body"] == f'<p><a href="{article["url"]}">This page</a></p>'
    fr_body = article["translated_content"]["fr"]["body"]
    assert fr_body == f'<p><a href="{harness.article("b-fr")["url"]}">Billing</a></p>'
    assert len(harness.articles()) == 2


def test_target_deleted_in_intercom_renders_text(harness: Harness) -> None:
    harness.sanity.seed([article_doc("b", "Billing")])
    gone = harness.sync("b").article_id
    harness.intercom.delete_article(gone)
    harness.redis.flushall()
    harness.sanity.publish(article_doc("a", "Refunds", text="See billing", link_to="b"))
    harness.sync("a")
    assert _body(harness, "a") == "<p>See billing</p>"
    assert ArticleStore(harness.redis).waiting_on("b") == ["a"]
