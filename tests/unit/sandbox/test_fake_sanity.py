"""The fake Sanity itself: if it drifts from Sanity, the article tests built on it lie."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask, request

from app.signatures import verify_sanity
from tests.conftest import REPO_ROOT
from tests.unit.articles.test_harness import article_doc, translation_group
from workers.articles import queries
from workers.sandbox.fake_sanity import (
    DEFAULT_TOKEN,
    STATE_EXTENSION,
    FakeSanityConfig,
    FakeSanityState,
    create_fake_sanity,
)
from workers.sandbox.server import BackgroundServer
from workers.settings import Secret

AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
QUERY = "/v2025-02-19/data/query/production"
MUTATE = "/v2025-02-19/data/mutate/production"
SECRET = "whsec-fake-sanity"


@pytest.fixture
def client() -> Any:
    return create_fake_sanity().test_client()


def _state(client: Any) -> FakeSanityState:
    return client.application.extensions[STATE_EXTENSION]


def _query(client: Any, query: queries.Query, **params: Any) -> Any:
    return client.post(f"{QUERY}?tag={query.tag}", json={"query": query.groq, "params": params},
                       headers=AUTH)  # fmt: skip


def _mutate(client: Any, *mutations: dict) -> Any:
    return client.post(MUTATE, json={"mutations": list(mutations)}, headers=AUTH)


# --- API ---------------------------------------------------------------------------------------


def test_token_and_dataset_are_enforced(client: Any) -> None:
    body = {"query": queries.COUNT.groq, "params": {"type": "supportArticle"}}
    url = f"{QUERY}?tag={queries.COUNT.tag}"
    assert client.post(url, json=body).status_code == 401
    assert client.post(url, json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    wrong = client.post(url.replace("production", "staging"), json=body, headers=AUTH)
    assert wrong.status_code == 404 and "staging" in wrong.json["error"]["description"]
    answer = client.post(url, json=body, headers=AUTH)
    assert answer.status_code == 200 and answer.json["result"] == 0 and "ms" in answer.json


def test_only_the_projects_queries_are_answered(client: Any) -> None:
    unknown = client.post(f"{QUERY}?tag=mine", json={"query": "*", "params": {}}, headers=AUTH)
    assert unknown.status_code == 400
    assert "unknown tag 'mine'" in unknown.json["error"]["description"]
    untagged = client.post(QUERY, json={"query": "*", "params": {}}, headers=AUTH)
    assert untagged.status_code == 400
    edited = client.post(f"{QUERY}?tag={queries.COUNT.tag}", headers=AUTH,
                         json={"query": "count(*)", "params": {"type": "x"}})  # fmt: skip
    assert edited.status_code == 400
    assert "not the one defined" in edited.json["error"]["description"]
    missing = _query(client, queries.DOCUMENT, id="a")
    assert missing.status_code == 400
    assert missing.json["error"]["description"] == "param $localeField referenced, but not provided"
    get = client.get(QUERY, headers=AUTH, query_string={
        "query": queries.COUNT.groq, "$type": '"supportArticle"', "tag": queries.COUNT.tag})
    assert get.status_code == 200 and get.json["result"] == 0


def test_document_query_returns_document_group_links_and_product_area(client: Any) -> None:
    doc = article_doc("en", "Refunds", link_to="other", productArea={"_ref": "area"})
    doc["body"].append({"_type": "callout", "_key": "c", "body": [
        {"_type": "block", "_key": "n", "children": [], "markDefs": [
            {"_key": "r", "_type": "reference", "_ref": "missing"}]}]})  # fmt: skip
    _state(client).seed([doc, article_doc("fr", "Rembourser", locale="fr"),
                         article_doc("other", "Other", intercomArticleId="42"),
                         {"_id": "area", "_type": "productArea", "title": "Billing"},
                         translation_group("grp", {"en": "en", "fr": "fr", "de": "gone"})])
    result = _query(client, queries.DOCUMENT, id="fr", localeField="language").json["result"]
    assert result["document"]["_id"] == "fr" and result["document"]["locale"] == "fr"
    assert result["group"]["_id"] == "grp"
    members = {m["locale"]: m["document"] for m in result["group"]["members"]}
    assert members["de"] is None and members["en"]["productArea"] == "Billing"
    assert members["en"]["links"] == [{"id": "other", "intercomArticleId": "42"},
                                      {"id": "missing", "intercomArticleId": None}]  # fmt: skip
    assert members["en"]["slug"] == "en" and members["en"]["intercomArticleId"] is None
    alone = _query(client, queries.DOCUMENT, id="other", localeField="language").json["result"]
    assert alone["group"] is None and alone["document"]["intercomArticleId"] == "42"


def test_mutations_change_rev_and_are_all_or_nothing(client: Any) -> None:
    created = _mutate(client, {"create": {"_id": "a", "_type": "supportArticle", "title": "A"}})
    assert created.status_code == 200
    rev = created.json["transactionId"]
    doc = _state(client).document("a")
    assert doc["_rev"] == rev and doc["_updatedAt"].endswith("Z")
    assert _mutate(client, {"create": {"_id": "a", "_type": "supportArticle"}}).status_code == 409
    mixed = _mutate(client, {"patch": {"id": "a", "set": {"title": "changed"}}},
                    {"patch": {"id": "a", "ifRevisionID": "stale", "set": {"x": 1}}})
    assert mixed.status_code == 409 and "unexpected revision" in mixed.json["error"]["description"]
    assert _state(client).document("a")["title"] == "A"
    patched = _mutate(client, {"patch": {"id": "a", "ifRevisionID": rev,
                                         "set": {"slug.current": "a-slug"},
                                         "setIfMissing": {"title": "ignored", "excerpt": "E"}}})
    doc = _state(client).document("a")
    assert patched.status_code == 200 and doc["_rev"] == patched.json["transactionId"] != rev
    assert (doc["slug"], doc["title"], doc["excerpt"]) == ({"current": "a-slug"}, "A", "E")
    noop = _mutate(client, {"patch": {"id": "a", "set": {"title": "A"}}})
    assert noop.json["results"] == [{"id": "a", "operation": "none"}]
    assert _state(client).document("a")["_rev"] == doc["_rev"]
    assert _mutate(client, {"patch": {"id": "nope", "set": {}}}).status_code == 404
    replaced = _mutate(client, {"createOrReplace": {"_id": "a", "_type": "supportArticle"}})
    assert "title" not in _state(client).document("a") and replaced.status_code == 200
    assert _mutate(client, {"delete": {"id": "a"}}).json["results"][0]["operation"] == "delete"
    assert _state(client).document("a") is None
    assert _mutate(client, {"inc": {"id": "a"}}).status_code == 400


def test_drafts_are_ignored(client: Any) -> None:
    answer = _mutate(client, {"create": {"_id": "drafts.a", "_type": "supportArticle"}},
                     {"patch": {"id": "drafts.b", "set": {"title": "x"}}})  # fmt: skip
    assert [r["operation"] for r in answer.json["results"]] == ["none", "none"]
    assert _state(client).snapshot()["documents"] == []


# --- webhooks ----------------------------------------------------------------------------------


class Receiver:
    """A webhook endpoint that records deliveries and answers from a list of statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        app = Flask("receiver")

        @app.post("/hook")
        def hook() -> tuple[str, int]:
            self.received.append((dict(request.headers), request.get_data()))
            return "{}", self.statuses.pop(0) if self.statuses else 202

        self.server = BackgroundServer(app).start()
        self.url = f"{self.server.url}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.stop()


def _webhook_state(url: str, **config: Any) -> FakeSanityState:
    return FakeSanityState(FakeSanityConfig(webhook_url=url, webhook_secret=SECRET,
                                            webhook_retry_delay=0.05, **config))  # fmt: skip


def test_published_changes_fire_signed_webhooks(receiver: Receiver) -> None:
    state = _webhook_state(receiver.url)
    state.publish(article_doc("a", "A"))
    state.edit("a", {"title": "A2"})
    state.publish({"_id": "p", "_type": "post", "title": "not watched"})
    state.seed([article_doc("quiet", "Q")])  # seeding fires nothing
    state.unpublish("a")
    assert state.wait_for_webhooks()
    deliveries = receiver.received
    assert [h["Sanity-Operation"] for h, _ in deliveries] == ["create", "update", "delete"]
    for headers, body in deliveries:
        verdict = verify_sanity(body, headers["Sanity-Webhook-Signature"], [Secret(SECRET)],
                                now_ms=int(time.time() * 1000), tolerance_s=60)  # fmt: skip
        assert verdict.ok, verdict.reason
        assert headers["Sanity-Document-Id"] == "a" and headers["Sanity-Dataset"] == "production"
        assert headers["Sanity-Transaction-Id"] in headers["Idempotency-Key"]
    assert json.loads(deliveries[1][1])["title"] == "A2"
    assert json.loads(deliveries[2][1])["title"] == "A2"  # a delete carries the last version
    assert len({h["Idempotency-Key"] for h, _ in deliveries}) == 3
    assert state.republish("a") is not None and state.wait_for_webhooks()
    assert receiver.received[-1][0]["Sanity-Operation"] == "create"


def test_webhook_retries_5xx_and_429_with_the_same_key_and_drops_4xx() -> None:
    receiver = Receiver([503, 429, 202, 400])
    try:
        state = _webhook_state(receiver.url)
        state.publish(article_doc("a", "A"))
        state.publish(article_doc("b", "B"))
        assert state.wait_for_webhooks()
        keys = [h["Idempotency-Key"] for h, _ in receiver.received]
        assert len(keys) == 4 and len(set(keys[:3])) == 1 and keys[3] != keys[0]
        hooks = state.stats()["webhooks"]
        assert (hooks["sent"], hooks["delivered"], hooks["failed"]) == (2, 1, 1)
    finally:
        receiver.server.stop()


# --- admin routes and entry point --------------------------------------------------------------


def test_admin_routes_drive_the_fake_like_an_editor(client: Any) -> None:
    seeded = client.post("/_fake/documents", json={"documents": [article_doc("a", "A")]})
    assert seeded.status_code == 200
    assert client.post("/_fake/edit/a", json={"set": {"title": "A2"}}).json["title"] == "A2"
    assert client.post("/_fake/unpublish/a").json == {"unpublished": True}
    assert client.get("/_fake/documents/a").status_code == 404
    assert client.post("/_fake/publish/a").json["title"] == "A2"
    published = client.post("/_fake/publish", json={"document": article_doc("b", "B")})
    assert published.json["_rev"]
    assert client.post("/_fake/delete/b").json == {"deleted": True}
    assert [d["_id"] for d in client.get("/_fake/state").json["documents"]] == ["a"]
    _query(client, queries.COUNT, type="supportArticle")
    stats = client.get("/_fake/stats").json
    assert stats["queries"] == {queries.COUNT.tag: 1} and stats["transactions"] == 6
    assert client.post("/_fake/faults", json={"status": 503, "path": "mutate"}).status_code == 200
    assert _mutate(client, {"delete": {"id": "a"}}).status_code == 503
    assert _mutate(client, {"delete": {"id": "a"}}).status_code == 200
    assert client.post("/_fake/webhook", json={"url": "http://127.0.0.1:9/x",
                                               "enabled": True}).json["enabled"] is True
    assert client.post("/_fake/reset").status_code == 200
    assert client.get("/_fake/state").json["documents"] == []


def test_entry_point_serves_until_terminated() -> None:
    help_text = subprocess.run([sys.executable, "-m", "workers.sandbox.fake_sanity", "--help"],
                               capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert "--webhook-url" in help_text.stdout
    proc = subprocess.Popen([sys.executable, "-m", "workers.sandbox.fake_sanity", "--port", "0"],
                            stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("fake-sanity listening on http://127.0.0.1:")
        url = line.split()[-1]
        assert requests.get(f"{url}/_fake/health", timeout=5).json() == {"ok": True}
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
