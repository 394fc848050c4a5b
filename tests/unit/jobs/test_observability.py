"""Sentry events leave the process without tokens, secrets or email addresses."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest

from tests.conftest import make_settings
from workers.jobs import observability
from workers.jobs.observability import init_sentry, scrub_event

TOKEN = "dG9rOmFiY2RlZjEyMzQ1Njc4OTA="  # an Intercom-style base64 access token
SECRETS = (TOKEN, "whsec_9f8e7d6c5b4a", "sk_sanity_abcdef", "hunter2-password",
           "AKIAIOSFODNN7EXAMPLE", "sess=8d7f6e", "sha1=deadbeefcafe", "publickey")  # fmt: skip
EMAILS = ("jane.doe@example.com", "ops+alerts@acme.co.uk", "admin@sandbox.invalid")


def realistic_event() -> dict[str, Any]:
    """What the Celery and Flask integrations hand ``before_send`` for a failed task/request."""
    return {
        "event_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "level": "error",
        "platform": "python",
        "transaction": "conversations.tag",
        "tags": {"celery_task_id": "b1d3-task", "component": "worker"},
        "exception": {"values": [{
            "type": "ValidationFailed",
            "module": "workers.jobs.errors",
            "value": (f"intercom PUT /contacts/c1: 400 parameter_invalid: jane.doe@example.com "
                      f"is taken; Authorization: Bearer {TOKEN}; token={TOKEN}"),
            "mechanism": {"type": "celery", "handled": False},
            "stacktrace": {"frames": [{
                "filename": "workers/clients/http.py", "function": "call", "lineno": 97,
                "context_line": "raise self.error_for(method, path, response, request_id)",
                "vars": {"token": TOKEN, "headers": {"Authorization": f"Bearer {TOKEN}"},
                         "email": "jane.doe@example.com", "contact_id": "c1"},
            }]},
        }]},
        "breadcrumbs": {"values": [
            {"category": "intercom_sync.tasks", "message": "task.started", "level": "info",
             "data": {"task": "conversations.tag", "task_args": ["5000001"],
                      "contact_email": "ops+alerts@acme.co.uk"}},
            {"category": "httplib", "type": "http",
             "data": {"url": f"https://api.intercom.io/contacts/search?access_token={TOKEN}",
                      "method": "POST", "status_code": 400}},
            {"category": "log", "message": "retrying with api_key=AKIAIOSFODNN7EXAMPLE "
                                           "for admin@sandbox.invalid"},
        ]},
        "extra": {
            "celery-job": {"task_name": "conversations.tag", "args": ["5000001"], "kwargs": {}},
            "intercom_token": TOKEN,
            "client_secret": "whsec_9f8e7d6c5b4a",
            "settings": {"SANITY_TOKEN": "sk_sanity_abcdef", "LOG_LEVEL": "INFO",
                         "db_password": "hunter2-password"},
            "recipients": ["jane.doe@example.com", {"user_email": "ops+alerts@acme.co.uk"}],
            "attempt": 3,
            "ok": True,
            "nothing": None,
        },
        "request": {
            "url": "https://sync.example.com/webhooks/intercom",
            "method": "POST",
            "query_string": f"token={TOKEN}&debug=1",
            "headers": {
                "Authorization": f"Bearer {TOKEN}",
                "Cookie": "sess=8d7f6e",
                "X-Hub-Signature": "sha1=deadbeefcafe",
                "Sanity-Webhook-Signature": "t=1,v1=abc",
                "X-Api-Key": "AKIAIOSFODNN7EXAMPLE",
                "User-Agent": "Intercom-Webhooks",
                "Content-Type": "application/json",
            },
            "data": {"data": {"item": {"email": "jane.doe@example.com"}}},
            "cookies": {"sess": "8d7f6e"},
        },
        "user": {"email": "jane.doe@example.com", "ip_address": "203.0.113.9"},
        "contexts": {"runtime": {"name": "CPython", "version": "3.11.7"}},
        "sdk": {"name": "sentry.python", "version": "2.0"},
        "server_name": "worker-1",
    }


def test_scrub_event_removes_tokens_secrets_and_emails_everywhere() -> None:
    scrubbed = scrub_event(realistic_event(), {})
    text = json.dumps(scrubbed)
    for secret in SECRETS:
        if secret == "publickey":
            continue  # not in this event
        assert secret not in text, secret
    for email in EMAILS:
        assert email not in text, email


def test_scrub_event_keeps_what_makes_the_event_useful() -> None:
    scrubbed = scrub_event(realistic_event(), {})
    value = scrubbed["exception"]["values"][0]
    assert value["type"] == "ValidationFailed"
    assert value["value"].startswith("intercom PUT /contacts/c1: 400 parameter_invalid: [email]")
    assert value["mechanism"] == {"type": "celery", "handled": False}
    frame = value["stacktrace"]["frames"][0]
    assert (frame["filename"], frame["function"], frame["lineno"]) == (
        "workers/clients/http.py", "call", 97
    )
    assert frame["vars"]["contact_id"] == "c1"
    assert scrubbed["transaction"] == "conversations.tag"
    assert scrubbed["tags"] == {"celery_task_id": "b1d3-task", "component": "worker"}
    assert scrubbed["extra"]["celery-job"]["task_name"] == "conversations.tag"
    assert scrubbed["extra"]["celery-job"]["args"] == ["5000001"]
    assert (scrubbed["extra"]["attempt"], scrubbed["extra"]["ok"],
            scrubbed["extra"]["nothing"]) == (3, True, None)  # fmt: skip
    assert scrubbed["breadcrumbs"]["values"][0]["message"] == "task.started"
    headers = scrubbed["request"]["headers"]
    assert headers["User-Agent"] == "Intercom-Webhooks"
    assert headers["Content-Type"] == "application/json"
    assert scrubbed["request"]["url"] == "https://sync.example.com/webhooks/intercom"


def test_scrub_event_masks_sensitive_keys_and_drops_bodies_cookies_and_user() -> None:
    scrubbed = scrub_event(realistic_event(), None)
    headers = scrubbed["request"]["headers"]
    for name in ("Authorization", "Cookie", "X-Hub-Signature", "Sanity-Webhook-Signature",
                 "X-Api-Key"):  # fmt: skip
        assert headers[name] == "[redacted]"
    assert "data" not in scrubbed["request"] and "cookies" not in scrubbed["request"]
    assert "user" not in scrubbed
    assert scrubbed["extra"]["intercom_token"] == "[redacted]"
    assert scrubbed["extra"]["client_secret"] == "[redacted]"
    assert scrubbed["extra"]["settings"]["SANITY_TOKEN"] == "[redacted]"
    assert scrubbed["extra"]["settings"]["db_password"] == "[redacted]"
    assert scrubbed["extra"]["settings"]["LOG_LEVEL"] == "INFO"
    assert scrubbed["extra"]["recipients"][1] == {"user_email": "[redacted]"}
    assert scrubbed["request"]["query_string"] == "token=[redacted]&debug=1"


def test_scrub_event_handles_deep_nesting_and_odd_values() -> None:
    deep: Any = f"mail me at {EMAILS[0]}"
    for _ in range(40):
        deep = {"next": deep}
    event = {"extra": {"deep": deep, "tuple": ("a@b.io token=x1", 5), "bytes": b"raw",
                       7: "int key"}}  # fmt: skip
    scrubbed = scrub_event(event)
    assert EMAILS[0] not in json.dumps(scrubbed, default=str)
    assert scrubbed["extra"]["tuple"] == ["[email] token=[redacted]", 5]
    assert scrubbed["extra"][7] == "int key"


# --- init_sentry ------------------------------------------------------------------------------


@pytest.fixture
def fresh_sentry(monkeypatch: pytest.MonkeyPatch) -> mock.MagicMock:
    monkeypatch.setattr(observability, "_initialised", set())
    init = mock.MagicMock(name="sentry_sdk.init")
    monkeypatch.setattr("sentry_sdk.init", init)
    monkeypatch.setattr("sentry_sdk.set_tag", mock.MagicMock(name="sentry_sdk.set_tag"))
    return init


def test_sentry_is_off_without_a_dsn(fresh_sentry) -> None:
    assert init_sentry(make_settings(), "worker") is False
    fresh_sentry.assert_not_called()


def test_sentry_is_initialised_once_with_scrubbing_and_no_pii(fresh_sentry) -> None:
    settings = make_settings(SENTRY_DSN="http://publickey@127.0.0.1:9/1",
                             SENTRY_ENVIRONMENT="staging")  # fmt: skip
    assert init_sentry(settings, "worker") is True
    assert init_sentry(settings, "worker") is False
    fresh_sentry.assert_called_once()
    options = fresh_sentry.call_args.kwargs
    assert options["dsn"] == "http://publickey@127.0.0.1:9/1"
    assert options["environment"] == "staging"
    assert options["send_default_pii"] is False
    assert options["include_local_variables"] is False
    assert options["max_request_body_size"] == "never"
    assert options["before_send"] is scrub_event
    integrations = {type(i).__name__ for i in options["integrations"]}
    assert {"CeleryIntegration", "FlaskIntegration"} <= integrations
    assert "publickey" not in repr(settings)
