"""Every status-code path of both webhook endpoints, with fakeredis behind the receiver."""

from __future__ import annotations

import json
from collections.abc import Callable

import fakeredis
import pytest
from celery import Celery
from flask.testing import FlaskClient

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


def test_sanity_header_id_wins_and_delete_routes(client, fake) -> None:
    response = sanity_post(client, {"title": "gone"}, operation="delete", document_id="doc-9")
    assert response.status_code == 202
    assert queued_jobs(fake) == [("articles.delete", ["doc-9"])]


def test_sanity_create_and_missing_operation_sync(client, fake) -> None:
    assert sanity_post(client, {"_id": "a"}, operation="create", key="k1").status_code == 202
    assert sanity_post(client, {"_id": "b"}, operation=None, key="k2").status_code == 202
    assert queued_jobs(fake) == [("articles.sync", ["a"]), ("articles.sync", ["b"])]


def test_sanity_without_idempotency_key_is_still_queued(client, fake) -> None:
    assert sanity_post(client, {"_id": "a"}, key=None).status_code == 202
    assert sanity_post(client, {"_id": "a"}, key=None).status_code == 202
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
        (b'{"_id": "a"}', {"document_id": "a/b"}, "invalid_body"),
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
    assert response.get_json()["error"] == "request_entity_too_large"
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
