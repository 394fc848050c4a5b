"""Tests of the Intercom fake itself: if it drifts from Intercom, every test built on it lies.

Most tests use the Flask test client with an injected clock (rate-limit windows and
timestamps are then exact); a few run the real threaded server over HTTP, where concurrency,
client timeouts and the command-line entry point can only be checked for real.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import OPENAPI
from workers.sandbox.fake_intercom import (
    DEFAULT_TOKEN,
    STATE_EXTENSION,
    FakeIntercomConfig,
    FakeIntercomState,
    create_fake_intercom,
)
from workers.sandbox.openapi_check import SPEC_ERRATA, get_checker, load_spec
from workers.sandbox.server import BackgroundServer

REPO_ROOT = Path(__file__).resolve().parents[3]


HEADERS = {
    "Authorization": f"Bearer {DEFAULT_TOKEN}",
    "Accept": "application/json",
    "Intercom-Version": "2.14",
}
ADMIN_ID = "1295"


class Clock:
    """A settable clock: tests decide which rate-limit window they are in."""

    def __init__(self, now: float = 1_700_000_003.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_app(clock: Clock, **overrides: Any) -> Any:
    settings_ = {"openapi_path": OPENAPI, **overrides}
    return create_fake_intercom(FakeIntercomConfig(**settings_), clock=clock)


@pytest.fixture
def app(clock: Clock) -> Any:
    return make_app(clock)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def state(app: Any) -> FakeIntercomState:
    return app.extensions[STATE_EXTENSION]


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["type"] == "error.list"
    assert body["errors"][0]["code"] == code
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body


def new_article(client: Any, title: str = "Reset your password", **extra: Any) -> dict[str, Any]:
    body = {"title": title, "author_id": int(ADMIN_ID), "state": "published", **extra}
    response = client.post("/articles", json=body, headers=HEADERS)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# ------------------------------------------------------------------ auth, Accept, version


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {DEFAULT_TOKEN}", f"Bearer {DEFAULT_TOKEN}x", "Bearer"],
)
def test_missing_or_wrong_token_is_401_and_spends_no_budget(
    client: Any, state: FakeIntercomState, authorization: str | None
) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "Authorization"}
    if authorization is not None:
        headers["Authorization"] = authorization
    body = assert_error(client.get("/me", headers=headers), 401, "unauthorized")
    assert body["errors"][0]["message"] == "Access Token Invalid"
    assert state.stats()["windows"] == []


def test_accept_must_admit_json(client: Any) -> None:
    for accept in ("text/html", "application/xml, text/plain", "application/json;q=0"):
        headers = {**HEADERS, "Accept": accept}
        assert client.get("/me", headers=headers).status_code == 406, accept
    for accept in ("application/json", "*/*", "application/*", "text/html, application/json"):
        assert client.get("/me", headers={**HEADERS, "Accept": accept}).status_code == 200
    no_accept = {k: v for k, v in HEADERS.items() if k != "Accept"}
    assert client.get("/me", headers=no_accept).status_code == 200


@pytest.mark.parametrize("version", [None, "2.11", "Unstable", " 2.14"])
def test_intercom_version_must_be_the_pinned_one(client: Any, version: str | None) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "Intercom-Version"}
    if version is not None:
        headers["Intercom-Version"] = version
    assert_error(client.get("/me", headers=headers), 400, "intercom_version_invalid")


def test_me_describes_admin_and_app(client: Any) -> None:
    body = client.get("/me", headers=HEADERS).get_json()
    assert body["type"] == "admin"
    assert body["id"] == ADMIN_ID
    assert body["app"]["type"] == "app"
    assert body["app"]["region"] == "US"
    assert body["app"]["name"] == "Sandbox"


# ------------------------------------------------------------------ rate limit


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/me", HEADERS, 200),
        ("GET", "/me", {**HEADERS, "Authorization": "Bearer nope"}, 401),
        ("GET", "/me", {**HEADERS, "Accept": "text/html"}, 406),
        ("GET", "/me", {**HEADERS, "Intercom-Version": "1.0"}, 400),
        ("GET", "/articles/424242", HEADERS, 404),
        ("GET", "/no/such/route", HEADERS, 404),
        ("POST", "/articles", HEADERS, 400),
    ],
)
def test_every_answer_has_rate_limit_and_request_id_headers(
    client: Any, clock: Clock, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    clock.now = 1_700_000_004.5
    response = client.open(path, method=method, headers=headers, json={})
    assert response.status_code == status
    assert response.headers["X-RateLimit-Limit"] == "1666"
    assert int(response.headers["X-RateLimit-Remaining"]) in (1665, 1666)
    assert response.headers["X-RateLimit-Reset"] == "1700000010"
    assert len(response.headers["X-Request-Id"]) >= 32


def test_budget_spent_answers_429_until_the_next_aligned_window(clock: Clock) -> None:
    clock.now = 1_700_000_007.9
    app = make_app(clock, budget_per_window=3)
    client = app.test_client()
    state: FakeIntercomState = app.extensions[STATE_EXTENSION]
    remaining = [client.get("/me", headers=HEADERS).headers["X-RateLimit-Remaining"]]
    remaining += [client.get("/me", headers=HEADERS).headers["X-RateLimit-Remaining"]]
    remaining += [client.get("/me", headers=HEADERS).headers["X-RateLimit-Remaining"]]
    assert remaining == ["2", "1", "0"]

    throttled = client.get("/me", headers=HEADERS)
    body = assert_error(throttled, 429, "rate_limit_exceeded")
    assert body["errors"][0]["message"] == "Exceeded rate limit of 3 in 10_seconds"
    assert throttled.headers["X-RateLimit-Limit"] == "3"
    assert throttled.headers["X-RateLimit-Remaining"] == "0"
    assert throttled.headers["X-RateLimit-Reset"] == "1700000010"

    clock.now = 1_700_000_010.0  # the window boundary: a fresh budget
    fresh = client.get("/me", headers=HEADERS)
    assert fresh.status_code == 200
    assert fresh.headers["X-RateLimit-Remaining"] == "2"
    assert fresh.headers["X-RateLimit-Reset"] == "1700000020"

    stats = state.stats()
    assert stats["rate_limited"] == 1
    assert stats["served_429"] == 1
    assert stats["windows"] == [
        {"start": 1_700_000_000, "requests": 3, "throttled": 1},
        {"start": 1_700_000_010, "requests": 1, "throttled": 0},
    ]


def test_budget_can_be_changed_at_run_time_over_http(client: Any, state: FakeIntercomState) -> None:
    assert client.post("/_fake/budget", json={"budget_per_window": 1}).status_code == 200
    assert client.get("/me", headers=HEADERS).status_code == 200
    assert client.get("/me", headers=HEADERS).status_code == 429
    assert client.post("/_fake/budget", json={"budget_per_window": 0}).status_code == 400
    assert state.stats()["budget_per_window"] == 1


def test_admin_routes_need_no_token_and_are_not_rate_limited(clock: Clock) -> None:
    app = make_app(clock, budget_per_window=1)
    client = app.test_client()
    for _ in range(5):
        response = client.get("/_fake/stats")
        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response.headers
    assert response.get_json()["requests_total"] == 0


# ------------------------------------------------------------------ 404 and routing


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/articles/987654"),
        ("PUT", "/articles/987654"),
        ("DELETE", "/articles/987654"),
        ("GET", "/contacts/abc123"),
        ("GET", "/conversations/55"),
        ("GET", "/articles/not-a-number"),
        ("PATCH", "/articles/1"),
        ("GET", "/admins"),
    ],
)
def test_unknown_objects_and_routes_answer_404_not_found(
    client: Any, method: str, path: str
) -> None:
    body = {"state": "draft"} if method == "PUT" else None
    assert_error(client.open(path, method=method, headers=HEADERS, json=body), 404, "not_found")


def test_dot_segments_are_not_normalised_into_another_route() -> None:
    app = create_fake_intercom()
    with BackgroundServer(app) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
        conn.request("GET", "/articles/../me", headers=HEADERS)
        response = conn.getresponse()
        payload = response.read()
        conn.close()
    assert response.status == 404, payload
    assert b'"not_found"' in payload


# ------------------------------------------------------------------ articles


def test_article_create_get_update_delete(client: Any, state: FakeIntercomState) -> None:
    translated = {
        "type": "article_translated_content",
        "fr": {"type": "article_content", "title": "Réinitialiser", "author_id": 1295},
    }
    created = new_article(client, body="<p>Hi</p>", parent_id=77, translated_content=translated)
    assert created["id"].isdigit()
    assert created["url"] == (
        f"https://intercom.help/sandbox/en/articles/{created['id']}-reset-your-password"
    )
    assert created["parent_id"] == 77
    assert created["parent_type"] == "collection"
    assert created["translated_content"] == translated
    assert isinstance(created["created_at"], int)

    fetched = client.get(f"/articles/{created['id']}", headers=HEADERS).get_json()
    assert fetched == created

    updated = client.put(
        f"/articles/{created['id']}",
        json={"title": "Change your password", "state": "draft", "parent_id": "78"},
        headers=HEADERS,
    ).get_json()
    assert updated["title"] == "Change your password"
    assert updated["state"] == "draft"
    assert updated["parent_id"] == 78
    assert updated["translated_content"] == translated  # locales not sent are kept

    deleted = client.delete(f"/articles/{created['id']}", headers=HEADERS)
    assert deleted.get_json() == {"id": created["id"], "object": "article", "deleted": True}
    assert client.get(f"/articles/{created['id']}", headers=HEADERS).status_code == 404
    assert state.snapshot()["articles"] == []


def test_article_state_defaults_to_draft_and_author_must_be_a_teammate(client: Any) -> None:
    draft = client.post("/articles", json={"title": "T", "author_id": 1295}, headers=HEADERS)
    assert draft.get_json()["state"] == "draft"
    stranger = client.post("/articles", json={"title": "T", "author_id": 1}, headers=HEADERS)
    assert_error(stranger, 400, "parameter_invalid")


def test_put_without_state_is_counted(client: Any, state: FakeIntercomState) -> None:
    article = new_article(client)
    path = f"/articles/{article['id']}"
    client.put(path, json={"title": "New", "state": "published"}, headers=HEADERS)
    assert state.article_puts_without_state == 0
    response = client.put(path, json={"title": "Newer"}, headers=HEADERS)
    assert response.get_json()["state"] == "published"
    assert state.article_puts_without_state == 1
    assert client.get("/_fake/stats").get_json()["article_puts_without_state"] == 1


def test_article_list_is_most_recently_updated_first(client: Any, clock: Clock) -> None:
    ids = []
    for offset, title in enumerate(["first", "second", "third"]):
        clock.now = 1_700_000_000 + 100 * offset
        ids.append(new_article(client, title)["id"])
    listing = client.get("/articles?per_page=2", headers=HEADERS).get_json()
    assert [a["id"] for a in listing["data"]] == [ids[2], ids[1]]
    assert listing["total_count"] == 3
    assert listing["pages"] == {"type": "pages", "page": 1, "per_page": 2, "total_pages": 2}
    page_two = client.get("/articles?per_page=2&page=2", headers=HEADERS).get_json()
    assert [a["id"] for a in page_two["data"]] == [ids[0]]

    clock.now += 100
    client.put(f"/articles/{ids[0]}", json={"state": "published"}, headers=HEADERS)
    relisted = client.get("/articles", headers=HEADERS).get_json()
    assert [a["id"] for a in relisted["data"]] == [ids[0], ids[2], ids[1]]


def test_articles_created_in_the_same_second_list_newest_first(client: Any) -> None:
    ids = [new_article(client, f"a{i}")["id"] for i in range(4)]
    listing = client.get("/articles", headers=HEADERS).get_json()
    assert [a["id"] for a in listing["data"]] == list(reversed(ids))


def test_article_list_rejects_bad_paging(client: Any) -> None:
    for query in ("page=0", "per_page=0", "per_page=151", "page=x"):
        assert_error(client.get(f"/articles?{query}", headers=HEADERS), 400, "parameter_invalid")


# ------------------------------------------------------------------ OpenAPI validation


@pytest.mark.parametrize(
    ("method", "path", "body", "operation", "pointer"),
    [
        ("POST", "/articles", {"title": "No author"}, "createArticle", "/"),
        ("POST", "/articles", {"title": "T", "author_id": "1295"}, "createArticle", "/author_id"),
        ("PUT", "/articles/1", {"state": "live"}, "updateArticle", "/state"),
        ("PUT", "/articles/1", {"parent_id": 5}, "updateArticle", "/parent_id"),
        ("POST", "/tags", {}, "createTag", "/"),
        (
            "POST",
            "/conversations/1/tags",
            {"id": 5, "admin_id": "1"},
            "attachTagToConversation",
            "/id",
        ),
        ("DELETE", "/conversations/1/tags/5", None, "detachTagFromConversation", "/"),
        (
            "POST",
            "/data_attributes",
            {"name": "seats", "model": "contact"},
            "createDataAttribute",
            "/",
        ),
    ],
)
def test_body_violating_the_spec_gets_400_and_is_recorded(
    client: Any,
    state: FakeIntercomState,
    method: str,
    path: str,
    body: Any,
    operation: str,
    pointer: str,
) -> None:
    response = client.open(path, method=method, json=body, headers=HEADERS)
    assert_error(response, 400, "parameter_invalid")
    violations = state.violations()
    assert len(violations) == 1, violations
    assert violations[0]["operation"] == operation
    assert violations[0]["pointer"] == pointer
    assert violations[0]["path"] == path
    assert client.get("/_fake/stats").get_json()["violations"] == violations


def test_missing_author_id_violation_names_the_property(
    client: Any, state: FakeIntercomState
) -> None:
    client.post("/articles", json={"title": "T"}, headers=HEADERS)
    assert "'author_id' is a required property" in state.violations()[0]["message"]


def test_lenient_mode_records_violations_but_serves(clock: Clock) -> None:
    app = make_app(clock, strict_openapi=False)
    client = app.test_client()
    article = client.post("/articles", json={"title": "T", "author_id": 1295}, headers=HEADERS)
    response = client.put(
        f"/articles/{article.get_json()['id']}", json={"parent_id": 5}, headers=HEADERS
    )
    assert response.status_code == 200
    assert [v["pointer"] for v in app.extensions[STATE_EXTENSION].violations()] == ["/parent_id"]


def test_non_json_body_is_a_violation(client: Any, state: FakeIntercomState) -> None:
    response = client.post(
        "/articles",
        data="title=T&author_id=1295",
        headers=HEADERS,
        content_type="application/x-www-form-urlencoded",
    )
    assert_error(response, 400, "parameter_invalid")
    broken = client.post(
        "/articles", data="{not json", headers=HEADERS, content_type="application/json"
    )
    assert_error(broken, 400, "bad_request")
    assert len(state.violations()) == 2


def test_valid_requests_across_the_api_pass_with_zero_violations(
    client: Any, state: FakeIntercomState
) -> None:
    """One of each request the workers send, shaped as the spec says: nothing is flagged."""
    calls: list[tuple[str, str, Any]] = []

    def call(method: str, path: str, body: Any = None) -> Any:
        response = client.open(path, method=method, json=body, headers=HEADERS)
        calls.append((method, path, response.status_code))
        assert response.status_code == 200, (method, path, response.get_json())
        return response.get_json()

    article = call(
        "POST",
        "/articles",
        {
            "title": "Billing FAQ",
            "description": "All about invoices",
            "body": "<p>Invoices</p>",
            "author_id": 1295,
            "state": "draft",
            "parent_id": 12,
            "parent_type": "collection",
            "translated_content": {
                "type": "article_translated_content",
                "de": {
                    "type": "article_content",
                    "title": "Rechnungen",
                    "description": "",
                    "body": "<p>Rechnungen</p>",
                    "author_id": 1295,
                    "state": "published",
                },
            },
        },
    )
    call(
        "PUT",
        f"/articles/{article['id']}",
        {"body": "<p>New</p>", "state": "published", "parent_id": "12"},
    )
    call("GET", "/articles?page=1&per_page=10")
    tag = call("POST", "/tags", {"name": "billing"})
    conversation_id = state.add_conversation({"subject": "Refund", "body": "<p>refund</p>"})
    call("POST", f"/conversations/{conversation_id}/tags", {"id": tag["id"], "admin_id": ADMIN_ID})
    call("DELETE", f"/conversations/{conversation_id}/tags/{tag['id']}", {"admin_id": ADMIN_ID})
    call(
        "POST",
        f"/conversations/{conversation_id}/parts",
        {"message_type": "assignment", "type": "team", "admin_id": ADMIN_ID, "assignee_id": "7"},
    )
    call("POST", "/data_attributes", {"name": "seats", "model": "contact", "data_type": "integer"})
    call("POST", "/data_attributes", {"name": "tier", "model": "company", "data_type": "string"})
    call("GET", "/data_attributes?model=contact")
    contact = call("POST", "/contacts", {"role": "user", "external_id": "u-1", "email": "a@x.io"})
    call("PUT", f"/contacts/{contact['id']}", {"custom_attributes": {"seats": 12}})
    call(
        "POST",
        "/contacts/search",
        {
            "query": {
                "operator": "AND",
                "value": [
                    {"field": "external_id", "operator": "=", "value": "u-1"},
                    {
                        "operator": "OR",
                        "value": [
                            {"field": "role", "operator": "=", "value": "user"},
                            {"field": "updated_at", "operator": ">", "value": 0},
                        ],
                    },
                ],
            },
            "pagination": {"per_page": 20},
        },
    )
    company = call(
        "POST",
        "/companies",
        {
            "company_id": "acme",
            "name": "Acme",
            "plan": "enterprise",
            "size": 40,
            "custom_attributes": {"tier": "gold"},
        },
    )
    call("POST", f"/contacts/{contact['id']}/companies", {"id": company["id"]})
    call("GET", f"/companies/{company['id']}")
    call("GET", f"/contacts/{contact['id']}")
    call("GET", f"/conversations/{conversation_id}")
    call("GET", "/me")
    assert state.violations() == []
    assert state.stats()["responses"] == {"200": len(calls)}


# ------------------------------------------------------------------ tags and conversations


def test_tag_create_or_get_returns_the_same_id(client: Any) -> None:
    first = client.post("/tags", json={"name": "Billing"}, headers=HEADERS).get_json()
    again = client.post("/tags", json={"name": "billing"}, headers=HEADERS).get_json()
    assert first["type"] == "tag"
    assert again["id"] == first["id"]
    assert again["name"] == "Billing"
    other = client.post("/tags", json={"name": "bug"}, headers=HEADERS).get_json()
    assert other["id"] != first["id"]
    listed = client.get("/tags", headers=HEADERS).get_json()["data"]
    assert sorted(t["name"] for t in listed) == ["Billing", "bug"]


def test_conversation_tagging(client: Any, state: FakeIntercomState) -> None:
    conversation_id = state.add_conversation(
        {"subject": "Charged twice", "body": "<p>I was charged twice</p>"}
    )
    tag = client.post("/tags", json={"name": "billing"}, headers=HEADERS).get_json()
    body = {"id": tag["id"], "admin_id": ADMIN_ID}

    missing_conversation = client.post("/conversations/999/tags", json=body, headers=HEADERS)
    assert_error(missing_conversation, 404, "not_found")
    missing_tag = client.post(
        f"/conversations/{conversation_id}/tags",
        json={"id": "123", "admin_id": ADMIN_ID},
        headers=HEADERS,
    )
    assert_error(missing_tag, 404, "tag_not_found")

    for _ in range(2):  # idempotent
        applied = client.post(
            f"/conversations/{conversation_id}/tags", json=body, headers=HEADERS
        ).get_json()
        assert applied["id"] == tag["id"]
        assert applied["applied_by"] == {"type": "admin", "id": ADMIN_ID}
    conversation = client.get(f"/conversations/{conversation_id}", headers=HEADERS).get_json()
    assert [t["name"] for t in conversation["tags"]["tags"]] == ["billing"]
    assert state.snapshot()["conversation_tags"] == {conversation_id: ["billing"]}

    client.delete(
        f"/conversations/{conversation_id}/tags/{tag['id']}",
        json={"admin_id": ADMIN_ID},
        headers=HEADERS,
    )
    assert state.snapshot()["conversation_tags"] == {conversation_id: []}


def test_admin_replies_and_notes_add_a_part_each_time(
    client: Any, state: FakeIntercomState, clock: Clock
) -> None:
    conversation_id = state.add_conversation({"body": "<p>refund?</p>"})
    path = f"/conversations/{conversation_id}/reply"
    comment = {"message_type": "comment", "type": "admin", "admin_id": ADMIN_ID,
               "body": "We are on it."}  # fmt: skip
    answers = [client.post(path, json=comment, headers=HEADERS) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    # Intercom answers the conversation with only the new part; plain text becomes a paragraph.
    [part] = answers[0].get_json()["conversation_parts"]["conversation_parts"]
    assert (part["part_type"], part["body"]) == ("comment", "<p>We are on it.</p>")
    assert part["author"]["type"] == "admin" and part["author"]["id"] == ADMIN_ID
    assert part["created_at"] == int(clock.now)
    note = {"message_type": "note", "type": "admin", "admin_id": ADMIN_ID,
            "body": "<html> <body> <h2>For the team</h2>  <p>x</p> </body> </html>"}  # fmt: skip
    [stored] = client.post(path, json=note, headers=HEADERS).get_json()[
        "conversation_parts"]["conversation_parts"]  # fmt: skip
    assert stored["body"] == "<h2>For the team</h2>\n<p>x</p>"  # the wrapper dropped, reflowed
    every = client.get(f"/conversations/{conversation_id}", headers=HEADERS).get_json()
    kinds = [p["part_type"] for p in every["conversation_parts"]["conversation_parts"]]
    assert kinds == ["comment", "comment", "note"]  # nothing is idempotent
    assert state.stats()["conversation_replies"] == 3

    assert_error(client.post(path, json={**comment, "body": " "}, headers=HEADERS), 400,
                 "parameter_not_found")  # fmt: skip
    assert_error(client.post(path, json={**comment, "admin_id": "404"}, headers=HEADERS), 404,
                 "admin_not_found")  # fmt: skip
    missing_type = {k: v for k, v in comment.items() if k != "type"}
    assert client.post(path, json=missing_type, headers=HEADERS).status_code == 400
    assert_error(client.post("/conversations/999/reply", json=comment, headers=HEADERS), 404,
                 "not_found")  # fmt: skip


def test_conversation_attributes_must_exist_and_updates_are_parts(
    client: Any, state: FakeIntercomState
) -> None:
    conversation_id = state.add_conversation({"body": "<p>refund?</p>"})
    state.seed({"conversation_attributes": [{"name": "Category"},
                                             {"name": "Old", "archived": True}]})  # fmt: skip
    listed = client.get("/data_attributes?model=conversation", headers=HEADERS).get_json()
    assert [a["name"] for a in listed["data"]] == ["Category"]  # archived ones are not listed
    # The 2.14 API cannot create conversation attributes.
    body = {"name": "X", "model": "conversation", "data_type": "string"}
    made = client.post("/data_attributes", json=body, headers=HEADERS)
    assert made.status_code == 400

    path = f"/conversations/{conversation_id}"
    answer = client.put(path, json={"custom_attributes": {"Category": "Billing"}}, headers=HEADERS)
    assert answer.status_code == 200
    assert answer.get_json()["custom_attributes"] == {"Category": "Billing"}
    parts = answer.get_json()["conversation_parts"]["conversation_parts"]
    assert parts[-1]["part_type"] == "conversation_attribute_updated_by_admin"
    unknown = client.put(path, json={"custom_attributes": {"Tier": "gold"}}, headers=HEADERS)
    assert_error(unknown, 400, "parameter_invalid")
    wrong_type = client.put(path, json={"custom_attributes": {"Category": 3}}, headers=HEADERS)
    assert wrong_type.status_code == 400
    assert state.get_conversation(conversation_id)["custom_attributes"] == {"Category": "Billing"}


def test_snoozed_reopens_on_a_customer_reply_and_only_500_parts_are_returned(
    client: Any, state: FakeIntercomState, clock: Clock
) -> None:
    contact = state.seed({"contacts": [{"role": "user", "email": "a@b.test"}]})["contacts"][0]
    conversation_id = state.add_conversation({"body": "<p>hi</p>", "contact_ids": [contact]})
    snooze = {"message_type": "snoozed", "admin_id": ADMIN_ID,
              "snoozed_until": int(clock.now) + 3600}  # fmt: skip
    snoozed = client.post(f"/conversations/{conversation_id}/parts", json=snooze,
                          headers=HEADERS).get_json()  # fmt: skip
    assert snoozed["state"] == "snoozed"
    state.add_conversation_part(conversation_id, "<p>any news?</p>")
    assert state.get_conversation(conversation_id)["state"] == "open"
    for n in range(520):
        state.add_conversation_part(conversation_id, f"<p>{n}</p>")
    shown = state.get_conversation(conversation_id)["conversation_parts"]["conversation_parts"]
    assert len(shown) == 500 and shown[-1]["body"] == "<p>519</p>"


def test_conversation_shape_and_assignment(client: Any, state: FakeIntercomState) -> None:
    created = state.seed(
        {
            "contacts": [{"external_id": "u-9", "email": "nine@example.com", "name": "Nine"}],
        }
    )
    contact_id = created["contacts"][0]
    conversation_id = state.add_conversation(
        {
            "id": "4242",
            "subject": "Broken",
            "body": "<p>The app does not load</p>",
            "contact_ids": [contact_id],
            "parts": [
                {"body": "<p>still broken</p>"},
                {"body": "internal", "part_type": "note", "author": {"type": "admin"}},
            ],
        }
    )
    assert conversation_id == "4242"
    conversation = client.get("/conversations/4242", headers=HEADERS).get_json()
    assert conversation["source"]["author"] == {
        "type": "user",
        "id": contact_id,
        "name": "Nine",
        "email": "nine@example.com",
    }
    assert conversation["contacts"]["contacts"] == [
        {"type": "contact", "id": contact_id, "external_id": "u-9"}
    ]
    parts = conversation["conversation_parts"]["conversation_parts"]
    assert [(p["part_type"], p["author"]["type"]) for p in parts] == [
        ("comment", "user"),
        ("note", "admin"),
    ]
    assigned = client.post(
        "/conversations/4242/parts",
        json={
            "message_type": "assignment",
            "type": "admin",
            "admin_id": ADMIN_ID,
            "assignee_id": ADMIN_ID,
        },
        headers=HEADERS,
    ).get_json()
    assert assigned["admin_assignee_id"] == int(ADMIN_ID)
    assert assigned["conversation_parts"]["conversation_parts"][-1]["part_type"] == "assignment"


def test_unknown_admin_cannot_tag(client: Any, state: FakeIntercomState) -> None:
    conversation_id = state.add_conversation({"body": "hi"})
    tag = client.post("/tags", json={"name": "x"}, headers=HEADERS).get_json()
    response = client.post(
        f"/conversations/{conversation_id}/tags",
        json={"id": tag["id"], "admin_id": "777"},
        headers=HEADERS,
    )
    assert_error(response, 404, "admin_not_found")


# ------------------------------------------------------------------ contacts and companies


def test_creating_an_existing_contact_is_409(client: Any) -> None:
    first = client.post(
        "/contacts", json={"external_id": "u-1", "email": "a@example.com"}, headers=HEADERS
    )
    assert first.status_code == 200
    same_external_id = client.post("/contacts", json={"external_id": "u-1"}, headers=HEADERS)
    body = assert_error(same_external_id, 409, "conflict")
    assert first.get_json()["id"] in body["errors"][0]["message"]
    same_email = client.post("/contacts", json={"email": "A@example.com"}, headers=HEADERS)
    assert_error(same_email, 409, "conflict")
    lead = client.post(
        "/contacts", json={"role": "lead", "email": "a@example.com"}, headers=HEADERS
    )
    assert lead.status_code == 200


def test_custom_attributes_must_exist_and_respect_limits(client: Any) -> None:
    contact = client.post("/contacts", json={"external_id": "u-2"}, headers=HEADERS).get_json()
    path = f"/contacts/{contact['id']}"

    def put(attributes: dict[str, Any]) -> Any:
        return client.put(path, json={"custom_attributes": attributes}, headers=HEADERS)

    assert_error(put({"plan_name": "gold"}), 400, "parameter_invalid")
    for name, data_type in (("plan_name", "string"), ("seats", "integer"), ("vip", "boolean")):
        made = client.post(
            "/data_attributes",
            json={"name": name, "model": "contact", "data_type": data_type},
            headers=HEADERS,
        )
        assert made.status_code == 200
        assert made.get_json()["full_name"] == f"custom_attributes.{name}"
    duplicate = client.post(
        "/data_attributes",
        json={"name": "seats", "model": "contact", "data_type": "integer"},
        headers=HEADERS,
    )
    assert_error(duplicate, 400, "parameter_invalid")

    assert put({"plan_name": "g" * 254, "seats": 3, "vip": True}).status_code == 200
    assert_error(put({"plan_name": "g" * 255}), 400, "parameter_invalid")
    assert_error(put({"seats": "three"}), 400, "parameter_invalid")
    assert_error(put({"x" * 190: 1}), 400, "parameter_invalid")
    stored = client.get(path, headers=HEADERS).get_json()["custom_attributes"]
    assert stored == {"plan_name": "g" * 254, "seats": 3, "vip": True}


def test_data_attributes_list_by_model(client: Any) -> None:
    client.post(
        "/data_attributes",
        json={"name": "tier", "model": "company", "data_type": "string"},
        headers=HEADERS,
    )
    contact_attrs = client.get("/data_attributes?model=contact", headers=HEADERS).get_json()
    company_attrs = client.get("/data_attributes?model=company", headers=HEADERS).get_json()
    assert {a["model"] for a in contact_attrs["data"]} == {"contact"}
    assert "tier" in [a["name"] for a in company_attrs["data"] if a["custom"]]
    assert "tier" not in [a["name"] for a in contact_attrs["data"]]
    bad = client.get("/data_attributes?model=contacts", headers=HEADERS)
    assert_error(bad, 400, "parameter_invalid")


def test_merged_and_deleted_contacts_answer_404(client: Any, state: FakeIntercomState) -> None:
    created = state.seed({"contacts": [{"external_id": "u-3"}, {"external_id": "u-4"}]})
    old_id, other_id = created["contacts"]
    survivor = client.post(f"/_fake/contacts/{old_id}/merge", json={}).get_json()
    assert survivor["id"] != old_id
    assert survivor["external_id"] == "u-3"
    assert_error(client.get(f"/contacts/{old_id}", headers=HEADERS), 404, "not_found")
    put = client.put(f"/contacts/{old_id}", json={"name": "x"}, headers=HEADERS)
    assert_error(put, 404, "not_found")
    found = client.post(
        "/contacts/search",
        json={"query": {"field": "external_id", "operator": "=", "value": "u-3"}},
        headers=HEADERS,
    ).get_json()
    assert [c["id"] for c in found["data"]] == [survivor["id"]]

    client.post(f"/_fake/contacts/{other_id}/delete")
    assert_error(client.get(f"/contacts/{other_id}", headers=HEADERS), 404, "not_found")
    assert state.snapshot()["gone_contacts"] == {
        old_id: f"merged into {survivor['id']}",
        other_id: "deleted",
    }


def test_contact_search_filters_and_rejects_unsupported_operators(
    client: Any, clock: Clock, state: FakeIntercomState
) -> None:
    clock.now = 1_000
    state.seed({"contacts": [{"external_id": "old", "role": "user"}]})
    clock.now = 2_000
    state.seed(
        {
            "contacts": [
                {"external_id": "new-user", "role": "user", "email": "n@acme.io"},
                {"external_id": "new-lead", "role": "lead"},
            ]
        }
    )

    def search(query: dict[str, Any]) -> Any:
        return client.post("/contacts/search", json={"query": query}, headers=HEADERS)

    recent_users = search(
        {
            "operator": "AND",
            "value": [
                {"field": "updated_at", "operator": ">", "value": 1_500},
                {"field": "role", "operator": "=", "value": "user"},
            ],
        }
    ).get_json()
    assert [c["external_id"] for c in recent_users["data"]] == ["new-user"]
    older = search({"field": "updated_at", "operator": "<", "value": "1500"}).get_json()
    assert [c["external_id"] for c in older["data"]] == ["old"]
    by_email = search({"field": "email", "operator": "=", "value": "n@acme.io"}).get_json()
    assert by_email["total_count"] == 1
    either = search(
        {
            "operator": "OR",
            "value": [
                {"field": "external_id", "operator": "=", "value": "old"},
                {"field": "external_id", "operator": "=", "value": "new-lead"},
            ],
        }
    ).get_json()
    assert sorted(c["external_id"] for c in either["data"]) == ["new-lead", "old"]

    # Intercom allows only =, < and > on dates, and only known fields.
    assert_error(
        search({"field": "updated_at", "operator": ">=", "value": 1}), 400, "parameter_invalid"
    )
    assert_error(
        search({"field": "externalId", "operator": "=", "value": "x"}), 400, "parameter_invalid"
    )


@settings(max_examples=25, deadline=None)
@given(count=st.integers(min_value=0, max_value=12), per_page=st.integers(1, 5))
def test_search_pagination_visits_every_match_once(count: int, per_page: int) -> None:
    clock = Clock(5_000)
    app = make_app(clock)
    client = app.test_client()
    state: FakeIntercomState = app.extensions[STATE_EXTENSION]
    for index in range(count):
        clock.now = 5_000 + index // 3  # several contacts per second
        state.seed({"contacts": [{"external_id": f"u-{index}"}]})
    seen: list[str] = []
    pagination: dict[str, Any] = {"per_page": per_page}
    for _ in range(count + 2):
        page = client.post(
            "/contacts/search",
            json={
                "query": {"field": "role", "operator": "=", "value": "user"},
                "pagination": pagination,
            },
            headers=HEADERS,
        ).get_json()
        assert page["total_count"] == count
        seen += [c["external_id"] for c in page["data"]]
        following = page["pages"].get("next")
        if following is None:
            break
        pagination = {"per_page": per_page, "starting_after": following["starting_after"]}
    assert seen == [f"u-{i}" for i in range(count)]


def test_company_upsert_by_company_id_and_attach(client: Any, state: FakeIntercomState) -> None:
    first = client.post(
        "/companies", json={"company_id": "acme", "name": "Acme", "plan": "pro"}, headers=HEADERS
    ).get_json()
    second = client.post(
        "/companies", json={"company_id": "acme", "plan": "enterprise"}, headers=HEADERS
    ).get_json()
    assert second["id"] == first["id"]
    assert second["name"] == "Acme"
    assert second["plan"]["name"] == "enterprise"
    unknown_attr = client.post(
        "/companies",
        json={"company_id": "acme", "custom_attributes": {"tier": "gold"}},
        headers=HEADERS,
    )
    assert_error(unknown_attr, 400, "parameter_invalid")

    contact = client.post("/contacts", json={"external_id": "u-5"}, headers=HEADERS).get_json()
    missing = client.post(
        f"/contacts/{contact['id']}/companies", json={"id": "nope"}, headers=HEADERS
    )
    assert_error(missing, 404, "company_not_found")
    attached = client.post(
        f"/contacts/{contact['id']}/companies", json={"id": first["id"]}, headers=HEADERS
    ).get_json()
    assert attached["user_count"] == 1
    fetched = client.get(f"/contacts/{contact['id']}", headers=HEADERS).get_json()
    assert [c["id"] for c in fetched["companies"]["data"]] == [first["id"]]
    listed = client.get(f"/contacts/{contact['id']}/companies", headers=HEADERS).get_json()
    assert listed["data"][0]["plan"]["name"] == "enterprise"
    assert len(state.snapshot()["companies"]) == 1


# ------------------------------------------------------------------ faults, delay, latency


def test_queued_faults_are_served_then_the_api_recovers(
    client: Any, state: FakeIntercomState
) -> None:
    state.inject_fault(503, count=2, path_prefix="/articles")
    state.inject_fault(500, count=1, method="GET", path_prefix="/me")
    assert client.get("/tags", headers=HEADERS).status_code == 200  # other paths unaffected

    for _ in range(2):
        failed = client.post("/articles", json={"title": "T", "author_id": 1295}, headers=HEADERS)
        assert failed.status_code == 503
        assert failed.mimetype == "text/html"  # as a load balancer sends it
        assert "X-RateLimit-Remaining" in failed.headers
    assert_error(client.get("/me", headers=HEADERS), 500, "server_error")

    assert state.snapshot()["articles"] == []  # faulted requests did nothing
    assert new_article(client)["state"] == "published"
    assert client.get("/me", headers=HEADERS).status_code == 200
    stats = state.stats()
    assert stats["injected_faults"] == 3
    assert stats["pending_faults"] == []
    assert stats["responses"]["503"] == 2


def test_faults_over_http_admin_routes(client: Any) -> None:
    queued = client.post("/_fake/faults", json={"status": 429, "count": 1})
    assert queued.status_code == 200
    assert queued.get_json()[0]["status"] == 429
    throttled = client.get("/me", headers=HEADERS)
    body = assert_error(throttled, 429, "rate_limit_exceeded")
    assert body["errors"][0]["message"].startswith("Exceeded rate limit of 1666")
    assert throttled.headers["X-RateLimit-Remaining"] == "0"
    assert client.get("/me", headers=HEADERS).status_code == 200

    client.post("/_fake/faults", json={"status": 502, "count": 5})
    assert client.delete("/_fake/faults").status_code == 200
    assert client.get("/me", headers=HEADERS).status_code == 200
    stats = client.get("/_fake/stats").get_json()
    assert stats["served_429"] == 1
    assert stats["rate_limited"] == 0  # injected, not caused by the client
    assert client.post("/_fake/faults", json={"status": 200}).status_code == 400


def test_latency_is_added_to_every_answer(client: Any, state: FakeIntercomState) -> None:
    state.set_latency(0.5)
    started = time.perf_counter()
    assert client.get("/me", headers=HEADERS).status_code == 200
    assert time.perf_counter() - started >= 0.5
    client.post("/_fake/latency", json={"seconds": 0})
    started = time.perf_counter()
    client.get("/me", headers=HEADERS)
    assert time.perf_counter() - started < 0.4


def test_latency_jitter_varies_within_bounds(state: FakeIntercomState) -> None:
    state.set_latency(0.1, jitter=0.05)
    samples = [state.latency() for _ in range(200)]
    assert all(0.05 <= sample <= 0.15 for sample in samples)
    assert max(samples) - min(samples) > 0.02
    with pytest.raises(ValueError):
        state.set_latency(-1)


def test_reset_forgets_data_and_stats(client: Any, state: FakeIntercomState) -> None:
    new_article(client)
    state.inject_fault(500, 3)
    assert client.post("/_fake/reset", json={"stats_only": True}).status_code == 200
    assert state.stats()["requests_total"] == 0
    assert len(state.snapshot()["articles"]) == 1
    client.post("/_fake/reset")
    assert state.snapshot()["articles"] == []
    assert state.stats()["pending_faults"] == []
    assert client.get("/me", headers=HEADERS).status_code == 200


def test_seed_over_http_and_state_snapshot(client: Any) -> None:
    seeded = client.post(
        "/_fake/seed",
        json={
            "data_attributes": [{"name": "tier", "model": "company", "data_type": "string"}],
            "companies": [
                {
                    "company_id": "acme",
                    "name": "Acme",
                    "plan": "enterprise",
                    "custom_attributes": {"tier": "gold"},
                }
            ],
            "contacts": [{"external_id": "u-7", "companies": ["acme"]}],
            "articles": [{"title": "Old", "id": "12", "created_at": 1_600_000_000}],
            "conversations": [{"body": "<p>hello</p>", "tags": ["vip"]}],
        },
    )
    assert seeded.status_code == 200, seeded.get_json()
    ids = seeded.get_json()
    assert ids["articles"] == ["12"]
    snapshot = client.get("/_fake/state").get_json()
    assert [a["id"] for a in snapshot["articles"]] == ["12"]
    assert snapshot["articles"][0]["updated_at"] == 1_600_000_000
    assert snapshot["contacts"][0]["companies"]["total_count"] == 1
    assert snapshot["companies"][0]["custom_attributes"] == {"tier": "gold"}
    assert snapshot["data_attributes"][0]["name"] == "tier"
    assert snapshot["conversation_tags"] == {ids["conversations"][0]: ["vip"]}
    assert [t["name"] for t in snapshot["tags"]] == ["vip"]
    admins = client.post("/_fake/seed", json={"admins": [{"name": "Second"}]}).get_json()
    assert admins["admins"][0].isdigit()
    second = {"title": "By second", "author_id": int(admins["admins"][0])}
    assert client.post("/articles", json=second, headers=HEADERS).status_code == 200
    bad = client.post("/_fake/seed", json={"conversations": [{"id": "not-digits"}]})
    assert bad.status_code == 400


# ------------------------------------------------------------------ the OpenAPI checker


def test_spec_is_loaded_once_and_errata_apply() -> None:
    checker = get_checker(OPENAPI)
    assert get_checker(OPENAPI) is checker
    assert load_spec(OPENAPI) is load_spec(str(OPENAPI))
    assert set(checker.errata_applied) == {name for name, _ in SPEC_ERRATA}


@pytest.mark.parametrize(
    ("method", "path", "example"),
    [
        ("POST", "/articles", "article_created"),
        ("PUT", "/articles/{article_id}", "successful"),
        ("POST", "/data_attributes", "successful"),
        ("POST", "/companies", "successful"),
        ("POST", "/contacts", "successful"),
        ("PUT", "/contacts/{contact_id}", "successful"),
        ("POST", "/contacts/search", "successful"),
        ("POST", "/tags", "action_successful"),
        ("POST", "/contacts/{contact_id}/companies", "successful"),
    ],
)
def test_the_specs_own_successful_request_examples_pass(
    method: str, path: str, example: str
) -> None:
    spec = load_spec(OPENAPI)
    media = spec["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]
    body = media["examples"][example]["value"]
    assert get_checker(OPENAPI).check(method, path, body) == []


def test_checker_matches_concrete_paths_and_checks_parameters() -> None:
    checker = get_checker(OPENAPI)
    assert checker.operation("POST", "/contacts/search").operation_id == "SearchContacts"
    assert checker.operation("GET", "/articles/search").operation_id == "searchArticles"
    assert checker.operation("GET", "/articles/55").operation_id == "retrieveArticle"
    assert checker.operation("GET", "/nowhere") is None
    bad_id = checker.check("PUT", "/articles/abc", {"state": "draft"})
    assert [v.pointer for v in bad_id] == ["path:article_id"]
    bad_model = checker.check("GET", "/data_attributes", query={"model": "contacts"})
    assert [v.pointer for v in bad_model] == ["query:model"]
    nested = checker.check(
        "POST",
        "/contacts/search",
        {
            "query": {
                "operator": "AND",
                "value": [{"field": "role", "operator": "gt", "value": "x"}],
            }
        },
    )
    assert len(nested) == 1 and "'gt' is not one of" in nested[0].message


# ------------------------------------------------------------------ the real server


@pytest.fixture
def served() -> Iterator[tuple[BackgroundServer, FakeIntercomState]]:
    frozen = Clock(1_700_000_001)
    app = create_fake_intercom(
        FakeIntercomConfig(openapi_path=OPENAPI, budget_per_window=10), clock=frozen
    )
    with BackgroundServer(app) as server:
        yield server, app.extensions[STATE_EXTENSION]


def test_threaded_server_enforces_one_budget_across_concurrent_clients(
    served: tuple[BackgroundServer, FakeIntercomState],
) -> None:
    server, state = served
    barrier = threading.Barrier(25)

    def one_call(_: int) -> int:
        with requests.Session() as session:
            barrier.wait(timeout=10)
            return session.get(f"{server.url}/me", headers=HEADERS, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=25) as pool:
        statuses = list(pool.map(one_call, range(25)))
    assert statuses.count(200) == 10
    assert statuses.count(429) == 15
    assert state.stats()["served_429"] == 15


def test_lost_answer_the_write_happens_even_when_the_client_times_out(
    served: tuple[BackgroundServer, FakeIntercomState],
) -> None:
    server, state = served
    admin = requests.post(
        f"{server.url}/_fake/delay",
        json={"seconds": 1.0, "count": 1, "path_prefix": "/articles", "method": "POST"},
        timeout=5,
    )
    assert admin.status_code == 200
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            f"{server.url}/articles",
            json={"title": "Lost", "author_id": 1295},
            headers=HEADERS,
            timeout=0.3,
        )
    deadline = time.monotonic() + 5
    while not state.snapshot()["articles"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [a["title"] for a in state.snapshot()["articles"]] == ["Lost"]
    listing = requests.get(f"{server.url}/articles", headers=HEADERS, timeout=5).json()
    assert [a["title"] for a in listing["data"]] == ["Lost"]
    assert state.stats()["delayed"] == 1


def test_server_stops_and_releases_its_port() -> None:
    server = BackgroundServer(create_fake_intercom()).start()
    url = server.url
    assert requests.get(f"{url}/_fake/health", timeout=5).json() == {"ok": True}
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/_fake/health", timeout=2)


def test_module_runs_the_fake_as_its_own_process() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workers.sandbox.fake_intercom",
            "--port",
            "0",
            "--budget",
            "2",
            "--openapi",
            str(OPENAPI),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("fake-intercom listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[-1].strip()
        # Five calls on a budget of two: a 429 even if a window boundary falls among them.
        answers = [requests.get(f"{url}/me", headers=HEADERS, timeout=5) for _ in range(5)]
        assert answers[0].headers["X-RateLimit-Limit"] == "2"
        assert [a.status_code for a in answers].count(429) >= 1
        invalid = requests.post(f"{url}/articles", json={"title": "x"}, headers=HEADERS, timeout=5)
        assert invalid.status_code in (400, 429)
        stats = requests.get(f"{url}/_fake/stats", timeout=5).json()
        assert stats["openapi_validation"] is True
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0
