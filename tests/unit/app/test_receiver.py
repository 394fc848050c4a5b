"""Every status-code path of both webhook endpoints, with fakeredis behind the receiver."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable

import fakeredis
import pytest
from celery import Celery
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder, run_wsgi_app

from app import create_app
from app.signatures import intercom_signature, sanity_signature_header
from tests.conftest import VECTORS, load_json, make_settings
from tests.jobs import queued_jobs
from workers.jobs.celery_app import configure_celery
from workers.jobs.enqueue import DEDUP_PREFIX

NOW = 1_763_712_000.0
SANITY_SECRET = "whsec-local-dev"
INTERCOM_VECTORS = load_json(VECTORS / "intercom-webhook-signatures.json")
ALL_INTERCOM_SECRETS = ",".join(sorted({c["secret"] for c in INTERCOM_VECTORS["cases"]}))
# Every feature the receiver routes to switched on (the receiver only checks that they are set).
FEATURES_ON = {
    "INTERCOM_ADMIN_ID": "991", "RULES_PATH": "rules.yml", "INTERCOM_AUTHOR_ID": "991",
    "INTERCOM_DEFAULT_COLLECTION_ID": "17", "SANITY_PROJECT_ID": "proj",
    "SANITY_DATASET": "production", "SANITY_TOKEN": "sk-test",
}  # fmt: skip


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def fake(server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=server)


@pytest.fixture
def make_client(fake: fakeredis.FakeRedis) -> Callable[..., FlaskClient]:
    def build(**overrides: str | None) -> FlaskClient:
        overrides.setdefault("INTERCOM_CLIENT_SECRET", ALL_INTERCOM_SECRETS)
        for name, value in FEATURES_ON.items():
            overrides.setdefault(name, value)
        settings = make_settings(**overrides)
        celery_app = configure_celery(Celery("test-receiver"), settings)
        flask_app = create_app(settings, celery_app=celery_app, redis_client=fake,
                               clock=lambda: NOW)  # fmt: skip
        return flask_app.test_client()

    return build


@pytest.fixture
def client(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client()


def sanity_post(client: FlaskClient, body: dict | bytes, *, key: str | None = "idem-1",
                operation: str | None = "update", document_id: str | None = None,
                stamp_ms: int | None = None, secret: str = SANITY_SECRET,
                extra: dict[str, str] | None = None):  # fmt: skip
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stamp = stamp_ms if stamp_ms is not None else int(NOW * 1000)
    headers = {"sanity-webhook-signature": sanity_signature_header(secret, stamp, raw),
               "content-type": "application/json"}  # fmt: skip
    if key is not None:
        headers["idempotency-key"] = key
    if operation is not None:
        headers["sanity-operation"] = operation
    if document_id is not None:
        headers["sanity-document-id"] = document_id
    headers.update(extra or {})
    return client.post("/webhooks/sanity", data=raw, headers=headers)


def intercom_post(client: FlaskClient, raw: bytes, secret: str = "c1ient-secret-for-tests"):
    headers = {"X-Hub-Signature": intercom_signature(secret, raw),
               "content-type": "application/json"}  # fmt: skip
    return client.post("/webhooks/intercom", data=raw, headers=headers)


# --- Sanity ---------------------------------------------------------------------------------


def test_sanity_publish_is_queued_once(client: FlaskClient, fake: fakeredis.FakeRedis) -> None:
    response = sanity_post(client, {"_id": "article-1", "title": "Refunds"})
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued" and body["task"] == "articles.sync" and body["task_id"]
    assert queued_jobs(fake) == [("articles.sync", ["article-1"])]
    again = sanity_post(client, {"_id": "article-1", "title": "Refunds"})
    assert again.status_code == 200
    assert again.get_json() == {"status": "duplicate", "task_id": body["task_id"]}
    assert queued_jobs(fake) == [("articles.sync", ["article-1"])]


def test_sanity_id_and_operation_come_from_the_signed_body(client, fake) -> None:
    response = sanity_post(client, {"_id": "doc-9", "operation": "delete"}, operation="update",
                           document_id="doc-9")  # fmt: skip
    assert response.status_code == 202
    assert queued_jobs(fake) == [("articles.delete", ["doc-9"])]


def test_sanity_header_id_that_disagrees_with_the_body_is_400(client, fake) -> None:
    response = sanity_post(client, {"_id": "doc-9"}, document_id="doc-10")
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "invalid_header", "reason": "sanity-document-id does not match the signed "
                                             "body's _id"}  # fmt: skip
    assert queued_jobs(fake) == [] and fake.keys(DEDUP_PREFIX + "*") == []


def test_sanity_id_only_in_a_header_is_400(client, fake) -> None:
    response = sanity_post(client, {"title": "gone"}, operation="delete", document_id="doc-9")
    assert response.status_code == 400
    assert response.get_json()["reason"].startswith("_id")
    assert queued_jobs(fake) == []


def test_one_signature_replayed_with_random_headers_gives_one_job(client, fake) -> None:
    """A captured request (body + signature) replayed 2,000 times with other headers."""
    rng = random.Random(13)
    raw = json.dumps({"_id": "article-1", "operation": "update"}).encode()
    signature = sanity_signature_header(SANITY_SECRET, int(NOW * 1000), raw)
    statuses: dict[int, int] = {}
    for n in range(2000):
        headers = {"sanity-webhook-signature": signature, "idempotency-key": f"k-{n}"}
        if rng.random() < 0.5:
            headers["sanity-document-id"] = rng.choice(["article-1", f"doc-{n}"])
        if rng.random() < 0.5:
            headers["sanity-operation"] = rng.choice(["create", "update", "delete"])
        status = client.post("/webhooks/sanity", data=raw, headers=headers).status_code
        statuses[status] = statuses.get(status, 0) + 1
    assert queued_jobs(fake) == [("articles.sync", ["article-1"])]
    assert statuses[202] == 1 and set(statuses) <= {200, 202, 400}, statuses


def test_signature_key_lives_as_long_as_the_signature_verifies(client, fake) -> None:
    sanity_post(client, {"_id": "a"}, key="k1")
    ttls = sorted(fake.ttl(key) for key in fake.keys(DEDUP_PREFIX + "*"))
    assert ttls == [1800 + 300, 86400]


def test_sanity_create_and_missing_operation_sync(client, fake) -> None:
    assert sanity_post(client, {"_id": "a"}, operation="create", key="k1").status_code == 202
    assert sanity_post(client, {"_id": "b"}, operation=None, key="k2").status_code == 202
    assert queued_jobs(fake) == [("articles.sync", ["a"]), ("articles.sync", ["b"])]


def test_sanity_without_idempotency_key_is_still_queued(client, fake) -> None:
    assert sanity_post(client, {"_id": "a"}, key=None).status_code == 202
    # Signed again (a later timestamp): another delivery. The same signature is a duplicate.
    later = int(NOW * 1000) + 1
    assert sanity_post(client, {"_id": "a"}, key=None, stamp_ms=later).status_code == 202
    again = sanity_post(client, {"_id": "a"}, key=None, stamp_ms=later)
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate"
    assert len(queued_jobs(fake)) == 2


@pytest.mark.parametrize("doc_id", ["drafts.article-1", "versions.r1.article-1"])
def test_sanity_drafts_ignored(client, fake, doc_id: str) -> None:
    response = sanity_post(client, {"_id": doc_id})
    assert response.status_code == 200 and response.get_json()["status"] == "ignored"
    assert queued_jobs(fake) == []


def test_sanity_other_dataset_ignored(make_client, fake) -> None:
    client = make_client(SANITY_DATASET="production")
    response = sanity_post(client, {"_id": "a"}, extra={"sanity-dataset": "staging"})
    assert response.status_code == 200 and response.get_json()["status"] == "ignored"
    assert sanity_post(client, {"_id": "a"}, key="k2",
                       extra={"sanity-dataset": "production"}).status_code == 202  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h: h.pop("sanity-webhook-signature"), "missing signature header"),
        (lambda h: h.update({"sanity-webhook-signature": h["sanity-webhook-signature"][:-2]}),
         "signature does not match"),
        (lambda h: h.update({"sanity-webhook-signature": "t=1,v1=abc"}),
         "signature timestamp is not in milliseconds"),
    ],
)  # fmt: skip
def test_sanity_bad_signature_is_401_and_queues_nothing(client, fake, mutate, reason) -> None:
    raw = b'{"_id":"a"}'
    headers = {"sanity-webhook-signature":
               sanity_signature_header(SANITY_SECRET, int(NOW * 1000), raw)}  # fmt: skip
    mutate(headers)
    response = client.post("/webhooks/sanity", data=raw, headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"error": "invalid_signature", "reason": reason}
    assert queued_jobs(fake) == [] and fake.keys(DEDUP_PREFIX + "*") == []


def test_sanity_tampered_body_is_401(client, fake) -> None:
    raw = b'{"_id":"a"}'
    headers = {"sanity-webhook-signature":
               sanity_signature_header(SANITY_SECRET, int(NOW * 1000), raw)}  # fmt: skip
    response = client.post("/webhooks/sanity", data=b'{"_id": "a"}', headers=headers)
    assert response.status_code == 401 and queued_jobs(fake) == []


def test_sanity_stale_and_future_timestamps_are_401(client) -> None:
    old = int((NOW - 1801) * 1000)
    future = int((NOW + 301) * 1000)
    assert sanity_post(client, {"_id": "a"}, stamp_ms=old).get_json()["reason"] == (
        "signature timestamp too old"
    )
    assert sanity_post(client, {"_id": "a"}, stamp_ms=future).status_code == 401
    assert sanity_post(client, {"_id": "a"}, stamp_ms=int((NOW - 1700) * 1000)).status_code == 202


@pytest.mark.parametrize(
    ("body", "kwargs", "error"),
    [
        (b"not json", {}, "invalid_body"),
        (b"[1, 2]", {}, "invalid_body"),
        (b'{"title": "no id"}', {}, "invalid_body"),
        (b'{"_id": "../../etc"}', {}, "invalid_body"),
        (b'{"_id": "article-1\\n"}', {}, "invalid_body"),  # "$" would let a newline through
        (b'{"_id": "a"}', {"operation": "explode"}, "invalid_operation"),
        (b'{"_id": "a"}', {"document_id": "a/b"}, "invalid_header"),
        (b'{"_id": "a"}', {"key": "k" * 300}, "invalid_header"),
    ],
)
def test_sanity_malformed_is_400(client, fake, body, kwargs, error) -> None:
    response = sanity_post(client, body, **kwargs)
    assert response.status_code == 400
    assert response.get_json()["error"] == error and response.get_json()["reason"]
    assert queued_jobs(fake) == []


def test_sanity_off_without_secret_is_503_naming_the_variable(make_client, fake) -> None:
    client = make_client(SANITY_WEBHOOK_SECRET=None)
    response = sanity_post(client, {"_id": "a"})
    assert response.status_code == 503
    assert "SANITY_WEBHOOK_SECRET" in response.get_json()["reason"]
    assert queued_jobs(fake) == []


def test_body_over_the_cap_is_413(make_client, fake) -> None:
    client = make_client(WEBHOOK_MAX_BODY_BYTES="2048")
    big = {"_id": "a", "pad": "x" * 4096}
    response = sanity_post(client, big)
    assert response.status_code == 413
    assert response.get_json()["error"] == "too_large"
    raw = json.dumps(big).encode()
    assert intercom_post(client, raw).status_code == 413
    assert queued_jobs(fake) == []


def test_redis_down_is_503_without_leftover_key_then_retry_accepted(client, fake, server) -> None:
    server.connected = False
    response = sanity_post(client, {"_id": "a"}, key="retry-me")
    assert response.status_code == 503
    assert response.get_json()["error"] == "unavailable"
    server.connected = True
    assert fake.keys(DEDUP_PREFIX + "*") == [] and queued_jobs(fake) == []
    retry = sanity_post(client, {"_id": "a"}, key="retry-me")
    assert retry.status_code == 202
    assert queued_jobs(fake) == [("articles.sync", ["a"])]


# --- Intercom -------------------------------------------------------------------------------


EXPECTED_INTERCOM = {
    "conversation.user.created.json": (202, ("conversations.tag", ["215467382910455"])),
    "conversation.user.replied.json": (202, "conversations.tag"),
    "contact.user.created.json": (202, "contacts.enrich"),
    "contact.lead.created.json": (202, "contacts.enrich"),
    "company.created.json": (200, None),
    "ping.json": (200, None),
}


@pytest.mark.parametrize("case", INTERCOM_VECTORS["cases"], ids=lambda c: c["file"])
def test_intercom_samples_signed_as_intercom_signs(client, fake, case) -> None:
    raw = (VECTORS / case["file"]).read_bytes()
    response = client.post("/webhooks/intercom", data=raw,
                           headers={"X-Hub-Signature": case["header"]})  # fmt: skip
    status, expected = EXPECTED_INTERCOM[case["file"].split("/")[-1]]
    assert response.status_code == status, response.get_json()
    jobs = queued_jobs(fake)
    if expected is None:
        assert jobs == []
        return
    item_id = json.loads(raw)["data"]["item"]["id"]
    task = expected if isinstance(expected, str) else expected[0]
    assert jobs == [(task, [item_id])]
    if isinstance(expected, tuple):
        assert jobs == [expected]
    duplicate = client.post("/webhooks/intercom", data=raw,
                            headers={"X-Hub-Signature": case["header"]})  # fmt: skip
    assert duplicate.status_code == 200 and duplicate.get_json()["status"] == "duplicate"
    assert len(queued_jobs(fake)) == 1


def _notification(topic: str, item: dict, notification_id: str | None = "notif-1") -> bytes:
    return json.dumps({"type": "notification_event", "id": notification_id, "topic": topic,
                       "app_id": "app", "data": {"type": "notification_event_data",
                                                 "item": item}}).encode()  # fmt: skip


def test_intercom_signed_up_lead_and_int_ids(client, fake) -> None:
    raw = _notification("contact.lead.signed_up", {"type": "contact", "id": 12345})
    assert intercom_post(client, raw).status_code == 202
    assert queued_jobs(fake) == [("contacts.enrich", ["12345"])]


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        json.dumps({"type": "something_else", "topic": "ping", "data": {"item": {}}}).encode(),
        _notification("conversation.user.created", {"type": "conversation"}),
        _notification("conversation.user.created", {"type": "conversation", "id": "../admins"}),
        _notification("conversation.user.created", {"type": "conversation", "id": "123\n"}),
        _notification("contact.user.created", {"type": "contact", "id": True}),
        json.dumps({"type": "notification_event", "topic": "ping"}).encode(),
    ],
)
def test_intercom_malformed_is_400(client, fake, raw: bytes) -> None:
    response = intercom_post(client, raw)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_body"
    assert queued_jobs(fake) == []


def test_intercom_bad_signature_is_401(client, fake) -> None:
    raw = _notification("conversation.user.created", {"type": "conversation", "id": "1"})
    assert intercom_post(client, raw, secret="wrong").status_code == 401
    unsigned = client.post("/webhooks/intercom", data=raw)
    assert unsigned.status_code == 401 and unsigned.get_json()["error"] == "invalid_signature"
    assert queued_jobs(fake) == []


def test_intercom_other_topics_ignored_and_head_answers(client, fake) -> None:
    raw = _notification("conversation.admin.closed", {"type": "conversation", "id": "1"})
    response = intercom_post(client, raw)
    assert response.status_code == 200 and response.get_json()["status"] == "ignored"
    assert client.head("/webhooks/intercom").status_code == 200
    assert client.get("/webhooks/intercom").status_code == 405
    assert queued_jobs(fake) == []


def test_intercom_off_without_secret_is_503(make_client) -> None:
    client = make_client(INTERCOM_CLIENT_SECRET=None)
    raw = _notification("conversation.user.created", {"type": "conversation", "id": "1"})
    response = intercom_post(client, raw)
    assert response.status_code == 503
    assert "INTERCOM_CLIENT_SECRET" in response.get_json()["reason"]


def test_intercom_redis_down_is_503_then_retry_accepted(client, fake, server) -> None:
    raw = _notification("conversation.user.created", {"type": "conversation", "id": "77"})
    server.connected = False
    assert intercom_post(client, raw).status_code == 503
    server.connected = True
    assert intercom_post(client, raw).status_code == 202
    assert queued_jobs(fake) == [("conversations.tag", ["77"])]


# --- probes and logging ---------------------------------------------------------------------


def test_health_and_readiness(client, server) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    server.connected = False
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["status"] == "unavailable"


def test_one_log_line_per_request_with_ids(client, caplog) -> None:
    caplog.set_level("INFO", logger="intercom_sync.receiver")
    sanity_post(client, {"_id": "article-7"}, key="log-1")
    records = [r for r in caplog.records if r.getMessage() == "webhook"]
    assert len(records) == 1
    record = records[0]
    assert record.status == 202 and record.document_id == "article-7"
    assert record.source == "sanity" and record.task == "articles.sync" and record.task_id
    assert record.duration_ms >= 0
    assert SANITY_SECRET not in caplog.text


def test_unknown_route_is_json_404(client) -> None:
    response = client.get("/nope")
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"


# --- hostile bodies -------------------------------------------------------------------------


def _chunked(client: FlaskClient, path: str, raw: bytes, headers: dict[str, str]):
    """POST ``raw`` without a Content-Length, as a chunked request reaches the app."""
    environ = EnvironBuilder(path=path, method="POST", headers=headers,
                             input_stream=io.BytesIO(raw)).get_environ()  # fmt: skip
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input_terminated"] = True
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    app_iter, status, _headers = run_wsgi_app(client.application, environ)
    return int(status.split()[0]), json.loads(b"".join(app_iter))


def test_chunked_body_over_the_cap_is_413_not_cut_and_processed(make_client, fake) -> None:
    client = make_client(WEBHOOK_MAX_BODY_BYTES="2048")
    raw = json.dumps({"_id": "a", "pad": "x" * 4096}).encode()
    first = raw[:2048]  # what a reader that stops at the cap would verify
    headers = {"sanity-webhook-signature":
               sanity_signature_header(SANITY_SECRET, int(NOW * 1000), first)}  # fmt: skip
    status, body = _chunked(client, "/webhooks/sanity", raw, headers)
    assert status == 413 and body["error"] == "too_large"
    assert "2048" in body["reason"]
    small = json.dumps({"_id": "a"}).encode()
    headers = {"sanity-webhook-signature":
               sanity_signature_header(SANITY_SECRET, int(NOW * 1000), small)}  # fmt: skip
    assert _chunked(client, "/webhooks/sanity", small, headers)[0] == 202
    assert queued_jobs(fake) == [("articles.sync", ["a"])]


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_deeply_nested_json_is_400_naming_the_problem(client, fake, depth: int) -> None:
    raw = b'{"_id": "a", "x": ' + b"[" * depth + b"]" * depth + b"}"
    response = sanity_post(client, raw)
    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_body",
                                   "reason": "JSON nested deeper than 64 levels"}  # fmt: skip
    nested = b'{"type": "notification_event", "x": ' + b"{\"a\": " * depth + b"1" + \
        b"}" * depth + b"}"
    assert intercom_post(client, nested).get_json()["reason"] == (
        "JSON nested deeper than 64 levels")
    assert queued_jobs(fake) == []


def test_nesting_at_the_limit_and_brackets_inside_strings_are_accepted(client, fake) -> None:
    raw = b'{"_id": "a", "x": ' + b"[" * 63 + b"]" * 63 + b', "t": "' + b"[" * 500 + b'"}'
    assert sanity_post(client, raw).status_code == 202


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\ud83d x"])
def test_lone_surrogates_are_400(client, fake, escape: str) -> None:
    raw = ('{"type": "notification_event", "id": "n-' + escape + '", "topic": '
           '"conversation.user.created", "data": {"item": {"type": "conversation", '
           '"id": "1"}}}').encode()  # fmt: skip
    response = intercom_post(client, raw)
    assert response.status_code == 400
    assert "not valid Unicode" in response.get_json()["reason"]
    sanity = ('{"_id": "a", "title": "' + escape + '"}').encode()
    assert sanity_post(client, sanity).status_code == 400
    assert queued_jobs(fake) == []


def test_surrogate_pairs_are_fine(client, fake) -> None:
    raw = b'{"_id": "a", "title": "\\ud83d\\ude00"}'
    assert sanity_post(client, raw).status_code == 202


def test_invalid_utf8_is_400(client) -> None:
    response = sanity_post(client, b'{"_id": "a", "t": "\xff"}')
    assert response.status_code == 400
    assert response.get_json()["reason"] == "body is not valid UTF-8"


# --- Intercom freshness ---------------------------------------------------------------------


def _dated(created_at: object = None, first_sent_at: object = None) -> bytes:
    body = json.loads(_notification("conversation.user.created",
                                    {"type": "conversation", "id": "5"}))  # fmt: skip
    if created_at is not None:
        body["created_at"] = created_at
    if first_sent_at is not None:
        body["first_sent_at"] = first_sent_at
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("created_at", "first_sent_at"),
    [
        (int(NOW) - 400 * 86400, None),
        (None, int(NOW) - 86401),
        ("2024-10-17T08:00:00Z", None),
        (str(int(NOW) - 2 * 86400), None),
        (int(NOW) - 400 * 86400, "2025-11-20T07:59:59+00:00"),
    ],
)
def test_intercom_notifications_older_than_the_dedup_window_are_ignored(
    client, fake, created_at, first_sent_at
) -> None:
    response = intercom_post(client, _dated(created_at, first_sent_at))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "ignored"
    assert "older than the 86400 s de-duplication window" in body["reason"]
    assert queued_jobs(fake) == [] and fake.keys(DEDUP_PREFIX + "*") == []


@pytest.mark.parametrize(
    ("created_at", "first_sent_at"),
    [
        (int(NOW) - 60, int(NOW) - 30),
        ("2025-11-21T07:59:00Z", None),  # NOW is 2025-11-21T08:00:00Z
        (int(NOW) - 400 * 86400, int(NOW) - 60),  # an old event first sent just now
        ("not a date", None),
        (True, None),
    ],
)
def test_fresh_or_undated_notifications_are_queued(client, fake, created_at, first_sent_at):
    assert intercom_post(client, _dated(created_at, first_sent_at)).status_code == 202
    assert queued_jobs(fake) == [("conversations.tag", ["5"])]


# --- switched-off features ------------------------------------------------------------------


def test_topic_of_a_switched_off_feature_is_ignored_naming_the_variable(make_client, fake):
    client = make_client(RULES_PATH=None)
    raw = _notification("conversation.user.created", {"type": "conversation", "id": "1"})
    response = intercom_post(client, raw)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ignored",
                                   "reason": "tagging is off: set RULES_PATH"}  # fmt: skip
    assert queued_jobs(fake) == [] and fake.keys(DEDUP_PREFIX + "*") == []
    contact = _notification("contact.user.created", {"type": "contact", "id": "2"}, "n-2")
    assert intercom_post(client, contact).status_code == 202
    assert queued_jobs(fake) == [("contacts.enrich", ["2"])]


def test_sanity_webhook_with_article_sync_off_is_ignored(make_client, fake) -> None:
    client = make_client(SANITY_TOKEN=None, INTERCOM_AUTHOR_ID=None)
    response = sanity_post(client, {"_id": "a"})
    assert response.status_code == 200
    assert response.get_json()["reason"] == (
        "articles is off: set INTERCOM_AUTHOR_ID, SANITY_TOKEN")
    assert queued_jobs(fake) == []
