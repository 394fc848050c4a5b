"""``GET /metrics`` on the receiver, and every kind of webhook answer counted once under its
outcome (the receiver's fixtures: fakeredis behind a real Flask app)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from tests.conftest import VECTORS
from tests.scrape import Samples, by_labels, samples, value
from tests.unit.app import test_receiver as receiver
from tests.unit.app.test_receiver import _notification, intercom_post, sanity_post

# The receiver tests' fixtures: fakeredis behind a real app.
server, fake, make_client, client = receiver.server, receiver.fake, receiver.make_client, \
    receiver.client
PING = (VECTORS / "intercom-notifications" / "ping.json").read_bytes()
COMPANY = (VECTORS / "intercom-notifications" / "company.created.json").read_bytes()

TOKEN = "receiver-metrics-token-42"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def metered(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client(METRICS_TOKEN=TOKEN, WEBHOOK_MAX_BODY_BYTES="2048")


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    return samples(response.data)


def webhooks(found: Samples) -> dict[str, float]:
    return {"{source}:{outcome}".format(**dict(labels)): v
            for labels, v in by_labels(found, "intercom_sync_webhooks_total").items()}  # fmt: skip


def test_metrics_are_off_without_a_token(client: FlaskClient) -> None:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 404
    assert response.get_json() == client.get("/no-such-route").get_json()  # nothing to tell


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-of-some-length",
                                    f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x"])  # fmt: skip
def test_metrics_refuse_a_missing_or_wrong_token(metered: FlaskClient, header: str | None) -> None:
    response = metered.get("/metrics", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert response.get_json()["error"] == "unauthorized"
    assert b"intercom_sync" not in response.data


def test_every_answer_is_counted_under_its_outcome(make_client, metered, fake, server) -> None:
    first = scrape(metered)
    before = webhooks(first)
    conversation = {"type": "conversation", "id": "77"}
    raw = _notification("conversation.user.created", conversation, "notif-m1")
    assert intercom_post(metered, raw).status_code == 202
    assert intercom_post(metered, raw).status_code == 200  # duplicate
    assert intercom_post(metered, PING).status_code == 200
    assert intercom_post(metered, COMPANY).status_code == 200  # ignored
    assert intercom_post(metered, raw, secret="not-the-secret").status_code == 401
    assert intercom_post(metered, b"[1, 2]").status_code == 400
    assert intercom_post(metered, b"{" + b" " * 4096 + b"}").status_code == 413
    assert sanity_post(metered, {"_id": "drafts.a"}, key="m-1").status_code == 200  # ignored
    assert sanity_post(metered, {"_id": "a"}, key="m-2", operation="merge").status_code == 400
    assert sanity_post(metered, {"_id": "a", "pad": "x" * 4096}, key="m-3").status_code == 413
    server.connected = False
    assert sanity_post(metered, {"_id": "a"}, key="m-4").status_code == 503
    server.connected = True
    assert sanity_post(metered, {"_id": "a"}, key="m-4").status_code == 202
    off = make_client(METRICS_TOKEN=TOKEN, INTERCOM_CLIENT_SECRET=None)
    assert intercom_post(off, raw).status_code == 503
    assert metered.head("/webhooks/intercom").status_code == 200  # URL check, not a webhook

    after = scrape(metered)
    moved = {key: n - before.get(key, 0) for key, n in webhooks(after).items()
             if n != before.get(key, 0)}  # fmt: skip
    assert moved == {
        "intercom:queued": 1, "intercom:duplicate": 1, "intercom:pong": 1,
        "intercom:ignored": 1, "intercom:invalid_signature": 1, "intercom:invalid_body": 1,
        "intercom:too_large": 1, "intercom:not_configured": 1,
        "sanity:ignored": 1, "sanity:invalid_operation": 1, "sanity:too_large": 1,
        "sanity:unavailable": 1, "sanity:queued": 1,
    }  # fmt: skip
    durations = "intercom_sync_webhook_duration_seconds_count"
    assert value(after, durations, source="sanity") - value(first, durations, source="sanity") == 5
    assert value(after, durations, source="intercom") - value(first, durations,
                                                              source="intercom") == 8


def test_an_unexpected_error_is_counted_too(metered, monkeypatch) -> None:
    before = scrape(metered)

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("app.webhooks._load", boom)
    raw = _notification("conversation.user.created", {"type": "conversation", "id": "78"})
    response = intercom_post(metered, raw)
    assert response.status_code == 503 and response.get_json()["error"] == "internal_error"
    after = scrape(metered)
    key = dict(source="intercom", outcome="internal_error")
    assert value(after, "intercom_sync_webhooks_total", **key) == (
        value(before, "intercom_sync_webhooks_total", **key) + 1)


def test_a_failing_metrics_write_never_changes_the_answer(metered, fake, monkeypatch) -> None:
    def broken(*_: object) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr("workers.jobs.metrics.WEBHOOKS.labels", broken)
    monkeypatch.setattr("workers.jobs.metrics._webhook_series", {})  # series looked up again
    raw = _notification("conversation.user.created", {"type": "conversation", "id": "79"})
    response = intercom_post(metered, raw)
    assert response.status_code == 202, response.get_json()
    assert json.loads(response.data)["status"] == "queued"
