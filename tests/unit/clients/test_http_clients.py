"""The Intercom and Sanity clients over mocked HTTP (``responses``).

Every ``IntercomClient`` method is called once and its request is checked: method, path, query,
the headers Intercom insists on (bearer token, ``Accept: application/json``, the pinned
``Intercom-Version``) and a body that is valid against Intercom's own OpenAPI description for
2.14. Then the shared parts: ids are validated before they reach a URL, statuses become typed
errors, the limiter is spent before and fed after every call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import fakeredis
import pytest
import requests
import responses

from tests.conftest import OPENAPI
from workers.clients.http import JsonApi, safe_id
from workers.clients.intercom import IntercomClient, gone
from workers.clients.sanity import SanityClient
from workers.jobs import errors
from workers.jobs.ratelimit import RateLimiter
from workers.sandbox.openapi_check import get_checker

BASE = "https://api.intercom.test"
TOKEN = "tok_unit_7f3a9c"


class RecordingLimiter:
    """Stands in for the shared limiter and records what the client asked of it, in order."""

    def __init__(self, refuse: bool = False) -> None:
        self.events: list[tuple[str, Any]] = []
        self.refuse = refuse

    def acquire(self, cost: int = 1) -> None:
        self.events.append(("acquire", cost))
        if self.refuse:
            raise errors.RateLimited("budget spent", service="intercom", retry_after=4.0)

    def observe(self, headers: Any) -> None:
        self.events.append(("observe", headers.get("X-RateLimit-Remaining")))

    def exhausted_until(self, reset: int) -> None:
        self.events.append(("exhausted_until", reset))


@pytest.fixture(scope="module")
def checker():
    return get_checker(OPENAPI)


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def limiter() -> RecordingLimiter:
    return RecordingLimiter()


@pytest.fixture
def intercom(limiter: RecordingLimiter) -> IntercomClient:
    return IntercomClient(BASE, TOKEN, "2.14", limiter=limiter)  # type: ignore[arg-type]


def answer_everything(mock: responses.RequestsMock, body: Any = None, status: int = 200,
                      headers: dict[str, str] | None = None) -> None:  # fmt: skip
    """Answer any request to the fake base URL with ``body``."""
    import re

    payload = json.dumps({"type": "list", "data": []} if body is None else body)
    for method in ("GET", "POST", "PUT", "DELETE"):
        mock.add(method, re.compile(re.escape(BASE) + r"/.*"), body=payload, status=status,
                 content_type="application/json", headers=headers or {})  # fmt: skip


def sent(mock: responses.RequestsMock) -> list[tuple[str, str, dict[str, str], Any, Any]]:
    """(method, path, query, body, headers) of every request that went out."""
    out = []
    for call in mock.calls:
        parts = urlsplit(call.request.url)
        raw = call.request.body
        body = None if raw is None else json.loads(raw)
        out.append((call.request.method, parts.path, dict(parse_qsl(parts.query)), body,
                    call.request.headers))  # fmt: skip
    return out


# --- every Intercom method: method, path, headers, spec-valid body -------------------------

ARTICLE = {
    "title": "Refunds",
    "description": "How refunds work",
    "body": "<p>Refunds take <b>5</b> days.</p>",
    "author_id": 1295,
    "state": "draft",
    "parent_id": 42,
    "parent_type": "collection",
    "translated_content": {
        "type": "article_translated_content",
        "fr": {"type": "article_content", "title": "Remboursements", "body": "<p>5 jours</p>",
               "author_id": 1295, "state": "draft"},
    },
}
ARTICLE_UPDATE = {"title": "Refunds", "body": "<p>New</p>", "state": "published",
                  "parent_id": "42", "parent_type": "collection"}  # fmt: skip
CONTACT_QUERY = {"operator": "AND", "value": [
    {"field": "updated_at", "operator": ">", "value": 1_700_000_000},
    {"field": "role", "operator": "=", "value": "user"},
]}  # fmt: skip

# name -> (call, method, path, body, query)
CALLS: dict[str, tuple[Callable[[IntercomClient], Any], str, str, Any, dict[str, str]]] = {
    "me": (lambda c: c.me(), "GET", "/me", None, {}),
    "create_article": (lambda c: c.create_article(ARTICLE), "POST", "/articles", ARTICLE, {}),
    "update_article": (lambda c: c.update_article("9000001", ARTICLE_UPDATE), "PUT",
                       "/articles/9000001", ARTICLE_UPDATE, {}),
    "delete_article": (lambda c: c.delete_article(9000001), "DELETE", "/articles/9000001",
                       None, {}),
    "get_article": (lambda c: c.get_article("9000001"), "GET", "/articles/9000001", None, {}),
    "list_articles": (lambda c: c.list_articles(page=2, per_page=50), "GET", "/articles", None,
                      {"page": "2", "per_page": "50"}),
    "create_or_get_tag": (lambda c: c.create_or_get_tag("billing"), "POST", "/tags",
                          {"name": "billing"}, {}),
    "list_tags": (lambda c: c.list_tags(), "GET", "/tags", None, {}),
    "tag_conversation": (lambda c: c.tag_conversation("5000001", 7000001, 1295), "POST",
                         "/conversations/5000001/tags", {"id": "7000001", "admin_id": "1295"},
                         {}),
    "untag_conversation": (lambda c: c.untag_conversation("5000001", "7000001", "1295"),
                           "DELETE", "/conversations/5000001/tags/7000001",
                           {"admin_id": "1295"}, {}),
    "get_conversation": (lambda c: c.get_conversation("5000001"), "GET",
                         "/conversations/5000001", None, {}),
    "assign_conversation": (lambda c: c.assign_conversation("5000001", 1295, 77, kind="team"),
                            "POST", "/conversations/5000001/parts",
                            {"message_type": "assignment", "type": "team", "admin_id": "1295",
                             "assignee_id": "77"}, {}),
    "reply_conversation": (lambda c: c.reply_conversation("5000001", 1295, "<p>On it</p>"),
                           "POST", "/conversations/5000001/reply",
                           {"message_type": "comment", "type": "admin", "admin_id": "1295",
                            "body": "<p>On it</p>"}, {}),
    "snooze_conversation": (lambda c: c.snooze_conversation("5000001", 1295, 1_700_000_000),
                            "POST", "/conversations/5000001/parts",
                            {"message_type": "snoozed", "admin_id": "1295",
                             "snoozed_until": 1_700_000_000}, {}),
    "close_conversation": (lambda c: c.close_conversation("5000001", 1295), "POST",
                           "/conversations/5000001/parts",
                           {"message_type": "close", "type": "admin", "admin_id": "1295"}, {}),
    "open_conversation": (lambda c: c.open_conversation("5000001", 1295), "POST",
                          "/conversations/5000001/parts",
                          {"message_type": "open", "admin_id": "1295"}, {}),
    "update_conversation_attributes": (
        lambda c: c.update_conversation_attributes("5000001", {"Category": "Billing",
                                                               "Escalation": 2}),
        "PUT", "/conversations/5000001",
        {"custom_attributes": {"Category": "Billing", "Escalation": 2}}, {}),
    "get_contact": (lambda c: c.get_contact("6762f0000000000000000001"), "GET",
                    "/contacts/6762f0000000000000000001", None, {}),
    "find_contact_by_external_id": (lambda c: c.find_contact_by_external_id("user-81"), "POST",
                                    "/contacts/search",
                                    {"query": {"field": "external_id", "operator": "=",
                                               "value": "user-81"}}, {}),
    "search_contacts": (lambda c: c.search_contacts(CONTACT_QUERY, per_page=50,
                                                    starting_after="WzE3MDAwMDAwMDAsIjEiXQ=="),
                        "POST", "/contacts/search",
                        {"query": CONTACT_QUERY,
                         "pagination": {"per_page": 50,
                                        "starting_after": "WzE3MDAwMDAwMDAsIjEiXQ=="}}, {}),
    "iter_contacts": (lambda c: list(c.iter_contacts(CONTACT_QUERY)), "POST", "/contacts/search",
                      {"query": CONTACT_QUERY, "pagination": {"per_page": 150}}, {}),
    "update_contact": (lambda c: c.update_contact("6762f0000000000000000001",
                                                  {"custom_attributes": {"plan_tier": "gold",
                                                                         "seats": 12}}),
                       "PUT", "/contacts/6762f0000000000000000001",
                       {"custom_attributes": {"plan_tier": "gold", "seats": 12}}, {}),
    "contact_companies": (lambda c: c.contact_companies("6762f0000000000000000001"), "GET",
                          "/contacts/6762f0000000000000000001/companies", None, {}),
    "upsert_company": (lambda c: c.upsert_company({"company_id": "acme-1", "name": "Acme",
                                                   "plan": "enterprise", "size": 120,
                                                   "custom_attributes": {"region": "EU"}}),
                       "POST", "/companies",
                       {"company_id": "acme-1", "name": "Acme", "plan": "enterprise",
                        "size": 120, "custom_attributes": {"region": "EU"}}, {}),
    "attach_company": (lambda c: c.attach_company("6762f0000000000000000001",
                                                  "6762c0000000000000000001"),
                       "POST", "/contacts/6762f0000000000000000001/companies",
                       {"id": "6762c0000000000000000001"}, {}),
    "list_data_attributes": (lambda c: c.list_data_attributes("company"), "GET",
                             "/data_attributes", None, {"model": "company"}),
    "create_data_attribute": (lambda c: c.create_data_attribute("seats", "company", "integer"),
                              "POST", "/data_attributes",
                              {"name": "seats", "model": "company", "data_type": "integer"}, {}),
}  # fmt: skip


def test_every_public_intercom_method_is_covered_here() -> None:
    methods = {name for name, value in vars(IntercomClient).items()
               if callable(value) and not name.startswith("_")}  # fmt: skip
    methods -= {"error_code", "request_id"}  # hooks of JsonApi, not API calls
    assert methods == set(CALLS)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_each_method_sends_the_right_request(name, intercom, mock, limiter, checker) -> None:
    call, method, path, body, query = CALLS[name]
    answer_everything(mock, headers={"X-RateLimit-Remaining": "99",
                                     "X-RateLimit-Reset": str(int(time.time()) + 5)})
    call(intercom)
    [(sent_method, sent_path, sent_query, sent_body, headers)] = sent(mock)
    assert (sent_method, sent_path, sent_query) == (method, path, query)
    assert sent_body == body
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Accept"] == "application/json"
    assert headers["Intercom-Version"] == "2.14"
    if body is not None:
        assert headers["Content-Type"] == "application/json"
    violations = checker.check(method, path, sent_body, query=sent_query)
    assert [str(v) for v in violations] == []
    # Budget taken before the call, Intercom's headers fed back after it.
    assert limiter.events == [("acquire", 1), ("observe", "99")]


@pytest.mark.parametrize(("call", "method", "path", "body", "query"), [
    (lambda c: c.reply_conversation("5000001", "1295", "<p>For the team</p>", note=True),
     "POST", "/conversations/5000001/reply",
     {"message_type": "note", "type": "admin", "admin_id": "1295",
      "body": "<p>For the team</p>"}, {}),
    (lambda c: c.list_data_attributes("conversation"), "GET", "/data_attributes", None,
     {"model": "conversation"}),
])  # fmt: skip
def test_notes_and_conversation_attributes_send_the_right_request(
    call, method, path, body, query, intercom, mock, checker
) -> None:
    answer_everything(mock)
    call(intercom)
    [(sent_method, sent_path, sent_query, sent_body, _)] = sent(mock)
    assert (sent_method, sent_path, sent_query, sent_body) == (method, path, query, body)
    assert [str(v) for v in checker.check(method, path, sent_body, query=sent_query)] == []


def test_the_spec_check_rejects_bad_conversation_action_bodies(checker) -> None:
    # Controls for the bodies above: the 2.14 description requires these fields.
    assert checker.check("POST", "/conversations/1/reply", {"message_type": "note",
                                                             "body": "x", "admin_id": "1"})
    assert checker.check("POST", "/conversations/1/parts", {"message_type": "snoozed",
                                                             "admin_id": "1"})
    assert checker.check("POST", "/conversations/1/parts", {"message_type": "close",
                                                             "admin_id": "1"})


def test_the_spec_check_used_above_does_reject_bad_bodies(checker) -> None:
    # A control: if the checker accepted anything, the test above would prove nothing.
    assert checker.check("POST", "/conversations/1/tags", {"id": 7, "admin_id": 1295})
    assert checker.check("POST", "/articles", {"title": "no author"})
    assert checker.check("PUT", "/articles/1", {"state": "live"})


def test_pinned_version_is_whatever_settings_say(mock, limiter) -> None:
    client = IntercomClient(BASE + "/", TOKEN, "2.11", limiter=limiter)  # type: ignore[arg-type]
    answer_everything(mock, body={"type": "admin", "id": "1"})
    client.me()
    [(_, path, _, _, headers)] = sent(mock)
    assert path == "/me"  # the trailing slash of the base is not doubled
    assert headers["Intercom-Version"] == "2.11"


def test_iter_contacts_follows_the_cursor_page_by_page(intercom, mock, limiter) -> None:
    pages = [
        {"data": [{"id": "a"}, {"id": "b"}],
         "pages": {"next": {"starting_after": "cursor-2"}}},
        {"data": [{"id": "c"}], "pages": {"next": None}},
    ]  # fmt: skip
    for page in pages:
        mock.add("POST", BASE + "/contacts/search", json=page)
    assert [c["id"] for c in intercom.iter_contacts({"field": "role", "operator": "=",
                                                      "value": "user"})] == ["a", "b", "c"]
    bodies = [body for _, _, _, body, _ in sent(mock)]
    assert [b["pagination"] for b in bodies] == [{"per_page": 150},
                                                 {"per_page": 150, "starting_after": "cursor-2"}]
    assert [e for e in limiter.events if e[0] == "acquire"] == [("acquire", 1)] * 2


def test_find_contact_by_external_id_answers_none_when_nobody_matches(intercom, mock) -> None:
    mock.add("POST", BASE + "/contacts/search", json={"type": "list", "data": [],
                                                     "total_count": 0})
    assert intercom.find_contact_by_external_id("nobody") is None


def test_update_article_refuses_a_body_without_state(intercom, mock, limiter) -> None:
    answer_everything(mock)
    with pytest.raises(ValueError, match="state"):
        intercom.update_article("9000001", {"title": "Refunds", "body": "<p>x</p>"})
    assert len(mock.calls) == 0
    assert limiter.events == []


@pytest.mark.parametrize("call", [
    lambda c: c.upsert_company({"name": "No id"}),
    lambda c: c.list_data_attributes("ticket"),
])  # fmt: skip
def test_local_argument_errors_send_nothing(call, intercom, mock, limiter) -> None:
    answer_everything(mock)
    with pytest.raises(ValueError):
        call(intercom)
    assert len(mock.calls) == 0
    assert limiter.events == []


def test_empty_answer_is_none_and_non_json_success_is_a_server_error(intercom, mock) -> None:
    mock.add("DELETE", BASE + "/articles/1", body=b"", status=200)
    assert intercom.delete_article("1") is None
    mock.add("GET", BASE + "/me", body="<html>maintenance</html>", status=200,
             content_type="text/html")  # fmt: skip
    with pytest.raises(errors.ServerError):
        intercom.me()


# --- ids are validated before they reach a URL ---------------------------------------------

BAD_IDS = ["../admins", "..", "a/b", "1?x=1", "1#top", "", " ", "1 2", "%2e%2e", "x" * 129,
           "\u00fcnicode", "-leading-dash", None, True, 1.5, ["1"]]  # fmt: skip

ID_CALLS: dict[str, Callable[[IntercomClient, Any], Any]] = {
    "update_article": lambda c, i: c.update_article(i, {"state": "draft"}),
    "delete_article": lambda c, i: c.delete_article(i),
    "get_article": lambda c, i: c.get_article(i),
    "tag_conversation": lambda c, i: c.tag_conversation(i, "1", "1"),
    "untag_conversation.conversation": lambda c, i: c.untag_conversation(i, "1", "1"),
    "untag_conversation.tag": lambda c, i: c.untag_conversation("1", i, "1"),
    "get_conversation": lambda c, i: c.get_conversation(i),
    "assign_conversation": lambda c, i: c.assign_conversation(i, "1", "2"),
    "get_contact": lambda c, i: c.get_contact(i),
    "update_contact": lambda c, i: c.update_contact(i, {}),
    "attach_company": lambda c, i: c.attach_company(i, "c1"),
}


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
@pytest.mark.parametrize("name", sorted(ID_CALLS))
def test_unsafe_ids_raise_invalid_id_and_send_nothing(name, bad, intercom, mock, limiter) -> None:
    answer_everything(mock)
    with pytest.raises(errors.InvalidId):
        ID_CALLS[name](intercom, bad)
    assert len(mock.calls) == 0
    assert limiter.events == []  # no budget spent either


def test_safe_id_rejects_a_trailing_newline() -> None:
    # ``$`` in SAFE_ID also matches just before a final "\n", so "123\n" passed as an id and
    # went out as "/conversations/123%0A".
    with pytest.raises(errors.InvalidId):
        safe_id("123\n")


def test_invalid_id_message_is_short_and_does_not_echo_a_huge_value() -> None:
    with pytest.raises(errors.InvalidId) as raised:
        safe_id("a/" + "b" * 10_000)
    assert len(str(raised.value)) < 120


@pytest.mark.parametrize("good, path", [(123, "123"), ("6762f0abc", "6762f0abc"),
                                        ("a.b-c_d", "a.b-c_d"), ("x" * 128, "x" * 128)])
def test_safe_ids_pass_unchanged(good, path) -> None:
    assert safe_id(good) == path


# --- statuses become typed errors ------------------------------------------------------------

STATUS_ERRORS = [
    (400, errors.ValidationFailed, False),
    (401, errors.Unauthorized, False),
    (403, errors.Unauthorized, False),
    (404, errors.NotFound, False),
    (406, errors.PermanentServiceError, False),
    (409, errors.Conflict, False),
    (410, errors.NotFound, False),
    (422, errors.ValidationFailed, False),
    (500, errors.ServerError, True),
    (502, errors.ServerError, True),
    (503, errors.ServerError, True),
    (504, errors.ServerError, True),
]


@pytest.mark.parametrize("status, cls, transient", STATUS_ERRORS)
def test_status_maps_to_error_type(status, cls, transient, intercom, mock, limiter) -> None:
    mock.add("GET", BASE + "/conversations/5000001", status=status,
             json={"type": "error.list", "request_id": "body-req-id",
                   "errors": [{"code": "some_code", "message": "Conversation not found"}]},
             headers={"X-Request-Id": "req-123", "X-RateLimit-Remaining": "50",
                      "X-RateLimit-Reset": str(int(time.time()) + 5)})  # fmt: skip
    with pytest.raises(errors.ServiceError) as raised:
        intercom.get_conversation("5000001")
    exc = raised.value
    assert type(exc) is cls
    assert exc.transient is transient
    assert errors.is_transient(exc) is transient
    assert (exc.service, exc.status, exc.code, exc.request_id) == (
        "intercom", status, "some_code", "req-123")
    assert str(status) in str(exc) and "/conversations/5000001" in str(exc)
    assert TOKEN not in str(exc)
    assert gone(exc) is (status in (404, 410))
    assert [e[0] for e in limiter.events] == ["acquire", "observe"]  # only a 429 exhausts it


def test_html_gateway_error_is_a_server_error_without_code(intercom, mock) -> None:
    mock.add("GET", BASE + "/me", status=502, body="<html><h1>502 Bad Gateway</h1></html>",
             content_type="text/html")  # fmt: skip
    with pytest.raises(errors.ServerError) as raised:
        intercom.me()
    assert raised.value.status == 502 and raised.value.code is None


def test_429_is_rate_limited_until_the_reset_and_exhausts_the_limiter(intercom, mock,
                                                                      limiter) -> None:
    reset = int(time.time()) + 7
    mock.add("POST", BASE + "/tags", status=429,
             json={"type": "error.list", "errors": [{"code": "rate_limit_exceeded",
                                                     "message": "Exceeded rate limit"}]},
             headers={"X-RateLimit-Limit": "1666", "X-RateLimit-Remaining": "0",
                      "X-RateLimit-Reset": str(reset), "X-Request-Id": "r429"})  # fmt: skip
    with pytest.raises(errors.RateLimited) as raised:
        intercom.create_or_get_tag("billing")
    exc = raised.value
    assert exc.transient and exc.status == 429 and exc.code == "rate_limit_exceeded"
    assert exc.request_id == "r429"
    assert exc.retry_after == pytest.approx(7, abs=3)
    assert limiter.events == [("acquire", 1), ("observe", "0"), ("exhausted_until", reset)]


def test_429_with_retry_after_header_uses_it(intercom, mock) -> None:
    mock.add("GET", BASE + "/me", status=429, json={}, headers={"Retry-After": "2.5"})
    with pytest.raises(errors.RateLimited) as raised:
        intercom.me()
    assert raised.value.retry_after == 2.5


def test_429_really_exhausts_a_shared_redis_limiter(mock) -> None:
    shared = RateLimiter(fakeredis.FakeRedis(server=fakeredis.FakeServer()), "intercom", 100)
    client = IntercomClient(BASE, TOKEN, "2.14", limiter=shared)
    reset = int(time.time()) + 5
    mock.add("GET", BASE + "/me", status=429, json={},
             headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})
    with pytest.raises(errors.RateLimited):
        client.me()
    granted, wait, budget = shared.try_acquire()
    assert not granted
    assert budget.window_end == reset
    assert 0 < wait <= 5.5


@pytest.mark.parametrize("failure", [requests.exceptions.ReadTimeout("read timed out"),
                                     requests.exceptions.ConnectTimeout("connect timed out"),
                                     requests.exceptions.ConnectionError("refused")])
def test_timeouts_and_connection_errors_are_connection_failed(failure, intercom, mock,
                                                              limiter) -> None:
    mock.add("POST", BASE + "/tags", body=failure)
    with pytest.raises(errors.ConnectionFailed) as raised:
        intercom.create_or_get_tag("billing")
    exc = raised.value
    assert exc.transient and exc.status is None
    assert TOKEN not in str(exc) and "POST /tags" in str(exc)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert limiter.events == [("acquire", 1)]


def test_connection_dropped_mid_answer_is_connection_failed(intercom, mock) -> None:
    # "Connection broken: IncompleteRead": the server (or a proxy) closed the connection while
    # the body was being read. requests raises ChunkedEncodingError, which is neither a Timeout
    # nor a ConnectionError, so it escaped as a raw exception and the job was parked as if
    # Intercom had refused it, although a retry would most likely succeed.
    mock.add("GET", BASE + "/me", body=requests.exceptions.ChunkedEncodingError(
        "Connection broken: IncompleteRead(12 bytes read)"))
    with pytest.raises(errors.ConnectionFailed):
        intercom.me()


def test_no_request_when_the_limiter_has_no_budget(mock) -> None:
    refusing = RecordingLimiter(refuse=True)
    client = IntercomClient(BASE, TOKEN, "2.14", limiter=refusing)  # type: ignore[arg-type]
    answer_everything(mock)
    with pytest.raises(errors.RateLimited):
        client.me()
    assert len(mock.calls) == 0


def test_error_message_from_intercom_is_scrubbed(intercom, mock) -> None:
    mock.add("PUT", BASE + "/contacts/c1", status=400,
             json={"type": "error.list", "errors": [{
                 "code": "parameter_invalid",
                 "message": "email jane.doe@example.com is taken (token=abc123secret)"}]})
    with pytest.raises(errors.ValidationFailed) as raised:
        intercom.update_contact("c1", {"email": "jane.doe@example.com"})
    text = str(raised.value)
    assert "parameter_invalid" in text
    assert "jane.doe@example.com" not in text and "abc123secret" not in text


def test_errors_survive_pickling_with_their_fields() -> None:
    import pickle

    exc = errors.RateLimited("x", service="intercom", status=429, code="rate_limit_exceeded",
                             request_id="r1", retry_after=3.0)  # fmt: skip
    copy = pickle.loads(pickle.dumps(exc))  # noqa: S301 (our own bytes)
    assert type(copy) is errors.RateLimited
    assert (copy.status, copy.code, copy.request_id, copy.retry_after) == (429,
            "rate_limit_exceeded", "r1", 3.0)  # fmt: skip


# --- Sanity ---------------------------------------------------------------------------------

SANITY = "https://proj1.api.sanity.io"


@pytest.fixture
def sanity(limiter: RecordingLimiter) -> SanityClient:
    return SanityClient(SANITY, "production", "sk_sanity_secret", "2025-02-19",
                        limiter=limiter)  # type: ignore[arg-type]  # fmt: skip


def test_sanity_query_reads_published_with_tag_and_token(sanity, mock, limiter) -> None:
    mock.add("POST", SANITY + "/v2025-02-19/data/query/production",
             json={"result": 7, "ms": 3, "query": "count(*)"})
    groq = "count(*[_type == $type])"
    assert sanity.query(groq, {"type": "supportArticle"}, tag="intercom-sync.check") == 7
    [(method, path, query, body, headers)] = sent(mock)
    assert (method, path) == ("POST", "/v2025-02-19/data/query/production")
    assert query == {"perspective": "published", "tag": "intercom-sync.check"}
    assert body == {"query": groq, "params": {"type": "supportArticle"}}
    assert headers["Authorization"] == "Bearer sk_sanity_secret"
    assert headers["Accept"] == "application/json"
    assert limiter.events[0] == ("acquire", 1)


def test_sanity_query_without_tag_still_sends_the_perspective(sanity, mock) -> None:
    mock.add("POST", SANITY + "/v2025-02-19/data/query/production", json={"result": []})
    assert sanity.query("*[_id == $id]", {"id": "a"}) == []
    [(_, _, query, _, _)] = sent(mock)
    assert query == {"perspective": "published"}


def test_sanity_patch_set_with_revision_guard(sanity, mock) -> None:
    mock.add("POST", SANITY + "/v2025-02-19/data/mutate/production",
             json={"transactionId": "tx1", "results": [{"id": "doc-1", "operation": "update"}]})
    sanity.patch_set("doc-1", {"intercomArticleId": "9000001"}, if_revision_id="rev-abc")
    [(method, path, query, body, headers)] = sent(mock)
    assert (method, path) == ("POST", "/v2025-02-19/data/mutate/production")
    assert query == {"returnIds": "true", "visibility": "sync"}
    assert body == {"mutations": [{"patch": {"id": "doc-1", "ifRevisionID": "rev-abc",
                                             "set": {"intercomArticleId": "9000001"}}}]}
    assert headers["Authorization"] == "Bearer sk_sanity_secret"


def test_sanity_patch_without_revision_has_no_guard(sanity, mock) -> None:
    mock.add("POST", SANITY + "/v2025-02-19/data/mutate/production", json={"results": []})
    sanity.patch_set("i18n.doc-1.fr", {"x": 1})
    [(_, _, _, body, _)] = sent(mock)
    assert body == {"mutations": [{"patch": {"id": "i18n.doc-1.fr", "set": {"x": 1}}}]}


def test_sanity_revision_mismatch_is_a_conflict(sanity, mock) -> None:
    mock.add("POST", SANITY + "/v2025-02-19/data/mutate/production", status=409,
             json={"error": {"type": "mutationError",
                             "description": "Document doc-1 has unexpected revision ID"}})
    with pytest.raises(errors.Conflict) as raised:
        sanity.patch_set("doc-1", {"x": 1}, if_revision_id="stale")
    assert raised.value.status == 409 and raised.value.code == "mutationError"
    assert raised.value.service == "sanity"
    assert "sk_sanity_secret" not in str(raised.value)


@pytest.mark.parametrize("status, cls", [
    (429, errors.RateLimited), (500, errors.ServerError), (401, errors.Unauthorized),
    (400, errors.ValidationFailed),
])  # fmt: skip
def test_sanity_statuses(status, cls, sanity, mock) -> None:
    mock.add("POST", SANITY + "/v2025-02-19/data/query/production", status=status,
             json={"error": "queryParseError", "message": "bad"})
    with pytest.raises(cls) as raised:
        sanity.query("*[")
    assert raised.value.code == "queryParseError"


def test_sanity_unsafe_document_id_sends_nothing(sanity, mock, limiter) -> None:
    answer_everything(mock)
    with pytest.raises(errors.InvalidId):
        sanity.patch_set("../other", {"x": 1})
    assert len(mock.calls) == 0 and limiter.events == []


def test_sanity_dataset_is_validated_and_version_prefix_normalised(limiter) -> None:
    with pytest.raises(errors.InvalidId):
        SanityClient(SANITY, "prod/../x", None, "2025-02-19", limiter=None)
    client = SanityClient(SANITY, "production", None, "v2021-10-21", limiter=None)
    assert client.prefix == "/v2021-10-21/data"
    assert "Authorization" not in client.session.headers


def test_json_api_without_limiter_still_maps_errors(mock) -> None:
    api = JsonApi("https://enrich.test", headers={"Accept": "application/json"}, limiter=None)
    mock.add("GET", "https://enrich.test/x", status=404, json={})
    with pytest.raises(errors.NotFound):
        api.call("GET", "/x")
