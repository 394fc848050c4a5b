"""Request bodies and content hashes, as pure functions (no HTTP)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import make_settings
from tests.unit.articles.test_harness import article_doc, translation_group
from workers.articles.content import (
    ArticleInvalid,
    build_plan,
    intercom_locale,
    main_member,
)
from workers.articles.model import ArticleDoc, Member, Snapshot

SETTINGS = make_settings(INTERCOM_AUTHOR_ID="1295", INTERCOM_DEFAULT_COLLECTION_ID="77",
                         SANITY_PROJECT_ID="proj", SANITY_DATASET="prod")  # fmt: skip


def _projected(doc: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """What the document query returns for ``doc`` (the fake's projection)."""
    from workers.sandbox.fake_sanity import article_fields

    full = {"_rev": "r1", "_updatedAt": "2025-01-01T00:00:00Z", **doc, **overrides}
    return article_fields(full, {}, "language") or {}


def _snapshot(*docs: dict[str, Any], group: bool = True) -> Snapshot:
    members = {d["language"]: d["_id"] for d in docs}
    raw = {"document": _projected(docs[0]),
           "group": {"_id": "grp", "members": [{"locale": loc, "document": _projected(d)}
                                               for loc, d in zip(members, docs, strict=True)]}
           if group else None}  # fmt: skip
    return Snapshot.parse(docs[0]["_id"], raw, "supportArticle", "en")


@pytest.mark.parametrize(("code", "expected"), [
    ("fr", "fr"), ("FR", "fr"), ("de-CH", "de"), ("de_AT", "de"), ("pt_BR", "pt-BR"),
    ("pt-br", "pt-BR"), ("pt-PT", "pt"), ("zh", "zh-CN"), ("zh-TW", "zh-TW"), ("no", "nb"),
    ("xx", None), ("", None), (None, None),
])  # fmt: skip
def test_intercom_locale(code: str | None, expected: str | None) -> None:
    assert intercom_locale(code) == expected


def test_main_member_is_default_locale_else_first_in_sort_order() -> None:
    doc = ArticleDoc.parse({"_id": "x"})
    assert doc is not None
    members = [Member(locale, doc) for locale in ("fr", "en-GB", "de")]
    assert main_member(members, "en").locale == "en-GB"  # same language as DEFAULT_LOCALE
    assert main_member(members, "en-GB").locale == "en-GB"
    assert main_member(members[::2], "en").locale == "de"


def test_hash_ignores_what_the_write_back_changes() -> None:
    doc = article_doc("a", "Refunds")
    plan = build_plan(_snapshot(doc, group=False), SETTINGS, None)
    echo = dict(doc, intercomArticleId="9000001")
    raw = {"document": _projected(echo, _rev="r2", _updatedAt="2025-01-02T00:00:00Z"),
           "group": None}
    again = build_plan(Snapshot.parse("a", raw, "supportArticle", "en"), SETTINGS, None)
    assert again.hash == plan.hash and again.main.hash == plan.main.hash


@pytest.mark.parametrize("change", [
    {"title": "Other"}, {"excerpt": "Other"}, {"intercomState": "draft"},
    {"intercomCollectionId": "78"}, {"body": []},
])  # fmt: skip
def test_hash_changes_with_what_is_sent(change: dict[str, Any]) -> None:
    doc = article_doc("a", "Refunds")
    first = build_plan(_snapshot(doc, group=False), SETTINGS, None)
    second = build_plan(_snapshot({**doc, **change}, group=False), SETTINGS, None)
    assert second.hash != first.hash


def test_translation_change_changes_its_locale_hash_only() -> None:
    en, fr = article_doc("en", "Refunds"), article_doc("fr", "Rembourser", locale="fr")
    first = build_plan(_snapshot(en, fr), SETTINGS, None)
    second = build_plan(_snapshot(en, {**fr, "title": "Remboursements"}), SETTINGS, None)
    assert first.main.hash == second.main.hash
    assert first.locale_hashes["fr"] != second.locale_hashes["fr"]
    assert first.hash != second.hash


def test_bodies_for_create_and_update() -> None:
    plan = build_plan(_snapshot(article_doc("en", "Refunds"),
                                article_doc("fr", "Rembourser", locale="fr")), SETTINGS, None)
    create, update = plan.create_body(), plan.update_body(removed_locales=["de", "fr"])
    assert create["parent_id"] == 77 and update["parent_id"] == "77"
    assert create["state"] == update["state"] == "published"
    assert update["translated_content"]["de"] == {"type": "article_content", "state": "draft"}
    assert update["translated_content"]["fr"]["title"] == "Rembourser"  # still in the group


def test_images_use_the_projects_cdn_and_unknown_blocks_are_skipped() -> None:
    doc = article_doc("a", "Refunds")
    doc["body"] = [{"_type": "image", "_key": "i", "alt": "Chart",
                    "asset": {"_ref": "image-abc123-640x480-png"}},
                   {"_type": "mystery", "_key": "m"}]  # fmt: skip
    plan = build_plan(_snapshot(doc, group=False), SETTINGS, None)
    assert plan.main.fields["body"] == (
        '<img src="https://cdn.sanity.io/images/proj/prod/abc123-640x480.png" alt="Chart">')
    assert plan.skipped_types == ("mystery",)


def test_invalid_documents_are_refused() -> None:
    with pytest.raises(ArticleInvalid, match="no title"):
        build_plan(_snapshot(article_doc("a", ""), group=False), SETTINGS, None)
    with pytest.raises(ArticleInvalid, match="collection"):
        build_plan(_snapshot(article_doc("a", "T", intercomCollectionId="abc"), group=False),
                   SETTINGS, None)  # fmt: skip


def test_translations_without_title_or_intercom_locale_are_left_out() -> None:
    plan = build_plan(_snapshot(article_doc("en", "Refunds"), article_doc("fr", "", locale="fr"),
                                article_doc("xx", "Klingon", locale="tlh")), SETTINGS, None)
    assert plan.locale_hashes == {}


def test_snapshot_of_a_group_ignores_unpublished_and_foreign_members() -> None:
    members = [
        {"locale": "en", "document": _projected(article_doc("en", "Refunds"))},
        {"locale": "fr", "document": None},  # unpublished
        {"locale": "de", "document": _projected({**article_doc("de", "X"), "_type": "post"})},
    ]
    raw = {"document": members[0]["document"], "group": {"_id": "grp", "members": members}}
    snapshot = Snapshot.parse("en", raw, "supportArticle", "en")
    assert snapshot.key == "grp" and snapshot.member_ids == ("en",)


def test_document_outside_the_group_that_references_it_is_single() -> None:
    raw = {"document": _projected(article_doc("en", "Refunds")),
           "group": {"_id": "grp", "members": [
               {"locale": "fr", "document": _projected(article_doc("fr", "R", locale="fr"))}]}}
    snapshot = Snapshot.parse("en", raw, "supportArticle", "en")
    assert snapshot.key == "en" and snapshot.member_ids == ("en",)
    assert translation_group("g", {"en": "en"})["translations"][0]["_key"] == "en"
