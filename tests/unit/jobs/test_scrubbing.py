"""Nothing from a table of secrets and personal data survives into a log line or a Sentry event.

Each row holds a text as it could reach a log or an error message and the part that must not
come out. The rows go through ``scrub``, both log formatters (as the message, as an extra
field and inside an exception) and a real ``sentry_sdk`` client whose transport keeps the
events it would send (a Flask request with the data in its query string and headers, and a
captured message with the data in ``extra``).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
from typing import Any

import pytest
import sentry_sdk
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sentry_sdk.transport import Transport

from tests.conftest import make_settings
from workers.jobs import logs, observability
from workers.jobs.logs import JsonFormatter, TextFormatter, scrub
from workers.jobs.observability import init_sentry

# (text, what must not survive)
TABLE: list[tuple[str, str]] = [
    ("stripe said no to sk_live_4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWDarjtT1zdp7dc"),
    ("restricted rk_test_51HxYzAbCdEf123 used", "51HxYzAbCdEf123"),
    ("retrying with tok-live-123", "live-123"),
    ("got tok_9f8e7d6c5b from the vault", "9f8e7d6c5b"),
    ("invalid token abc", "abc"),
    ("token: abc123", "abc123"),
    ("token=abc123&x=1", "abc123"),
    ("Authorization: Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
    ("authorization=Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b",
     "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"),
    ('{"Authorization": "Bearer dG9rOmFiY2RlZjEyMzQ1Njc4OTA="}', "dG9rOmFiY2RlZjEyMzQ1Njc4OTA"),
    ("sent Basic YWxhZGRpbjpvcGVuc2VzYW1l to the proxy", "YWxhZGRpbjpvcGVuc2VzYW1l"),
    ("Bearer abc.def-ghi", "abc.def-ghi"),
    ("api key AKIAIOSFODNN7EXAMPLE leaked", "AKIAIOSFODNN7EXAMPLE"),
    ("secret whsec_9f8e7d6c5b4a", "9f8e7d6c5b4a"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
     "eyJzdWIiOiIxMjM0NTY3ODkwIn0"),
    ("ghp_1234567890abcdefghij in CI", "1234567890abcdefghij"),
    ("password=hunter2", "hunter2"),
    ("q=jane%40acme.example&debug=1", "jane"),
    ("q=ops%2Balerts%40acme.example", "alerts"),
    ("JANE%40ACME.EXAMPLE", "JANE"),
    ("from jane.doe@example.com", "jane.doe"),
    ("from j\u00fcrgen.m\u00fcller@b\u00e4ckerei.example", "m\u00fcller"),
    ("from \u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a", "\u7528\u6237"),
    ("from \u0438\u0432\u0430\u043d@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
     "\u0438\u0432\u0430\u043d"),
    ("call +44 20 7946 0958 now", "7946 0958"),
    ("call +1-415-555-0100", "555-0100"),
    ("call (415) 555-0100", "555-0100"),
    ("call 415.555.0100", "555.0100"),
]  # fmt: skip

KEPT = [
    "task conversations.tag id 5000001 attempt 3",
    "2026-12-06T05:03:57Z version 2.14 took 0.25s",
    "the token is invalid",
    "INTERCOM_ACCESS_TOKEN is unset",
    "enrichment http: answered 503 for email at globex.example",
    "conversation 215468813021498 tagged billing",
    "company plan Basic plan upgraded to Pro",
]


@pytest.mark.parametrize(("text", "secret"), TABLE)
def test_scrub_masks_the_row(text: str, secret: str) -> None:
    assert secret not in scrub(text)
    assert secret.lower() not in scrub(text).lower()


@pytest.mark.parametrize("text", KEPT)
def test_scrub_keeps_ordinary_log_text(text: str) -> None:
    assert scrub(text) == text


# --------------------------------------------------------------------------- log lines


def _format(formatter: logging.Formatter, message: str, **extra: Any) -> str:
    logger = logging.getLogger("test.scrubbing")
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "%s", (message,),
                               None, extra=extra)  # fmt: skip
    try:
        raise RuntimeError(message)
    except RuntimeError:
        record.exc_info = sys.exc_info()
    return formatter.format(record)


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
def test_no_row_survives_a_log_line(formatter: logging.Formatter) -> None:
    for text, secret in TABLE:
        line = _format(formatter, text, error=text, fields={"nested": [text]})
        assert secret not in line, (text, line)
        if isinstance(formatter, JsonFormatter):
            decoded = json.dumps(json.loads(line), ensure_ascii=False)
            assert secret not in decoded, (text, decoded)


def test_a_real_logger_writes_scrubbed_lines(text_logger) -> None:
    logger, stream = text_logger("test.scrubbing.real")
    # A library logging a URL with a query string (urllib3 does at DEBUG).
    logger.warning("GET /lookup?email=jane%40acme.example&token=tok-live-123 answered 500")
    out = stream.getvalue()
    assert "jane" not in out and "live-123" not in out and "answered 500" in out


_LOCAL = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}[a-z0-9]", fullmatch=True)
_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_TLD = st.from_regex(r"[a-z]{2,6}", fullmatch=True)
_AROUND = st.text(alphabet=st.sampled_from(list("abc XYZ:;,()[]<>=&?/\"'\n\t")), max_size=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(local=_LOCAL, labels=st.lists(_LABEL, min_size=1, max_size=3), tld=_TLD,
       before=_AROUND, after=_AROUND, encoded=st.booleans())  # fmt: skip
def test_property_an_email_in_any_surroundings_is_masked(local, labels, tld, before, after,
                                                         encoded) -> None:  # fmt: skip
    email = f"{local}{'%40' if encoded else '@'}{'.'.join(labels)}.{tld}"
    out = scrub(f"{before} {email} {after}")
    assert email not in out and "[email]" in out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=st.from_regex(r"[A-Za-z0-9]{12,30}", fullmatch=True), before=_AROUND,
       shape=st.sampled_from(["Authorization: Basic {}", "Authorization: Token {}",
                              "Bearer {}", "token={}", "sk_live_{}", "tok-{}", "api_key: {}",
                              "password {}"]))  # fmt: skip
def test_property_credentials_in_any_surroundings_are_masked(secret, before, shape) -> None:
    assert secret not in scrub(f"{before} {shape.format(secret)} and more")


@pytest.mark.timeout(60)  # linear patterns take well under a second per megabyte
@pytest.mark.parametrize("unit", ["a", "a@", "a.", "%41", "a%40", "token ", "+1 ", "1-", "@a."])
def test_scrub_is_linear_on_huge_hostile_input(unit: str) -> None:
    text = unit * (1_000_000 // len(unit))
    assert len(scrub(text)) > 0


# --------------------------------------------------------------------------- Sentry


class CapturingTransport(Transport):
    """Keeps every envelope instead of sending it."""

    events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Any) -> None:
        for item in envelope.items:
            if item.type in ("event", "transaction"):
                self.events.append(json.loads(item.payload.get_bytes()))


@pytest.fixture
def sentry_events(monkeypatch: pytest.MonkeyPatch):
    CapturingTransport.events = []
    monkeypatch.setattr(observability, "_initialised", set())
    monkeypatch.setattr(sentry_sdk, "init",
                        functools.partial(sentry_sdk.init, transport=CapturingTransport))
    settings = make_settings(SENTRY_DSN="http://publickey@127.0.0.1:9/1")
    assert init_sentry(settings, "receiver") is True
    yield CapturingTransport.events
    sentry_sdk.get_client().close()
    monkeypatch.undo()
    sentry_sdk.init()  # no DSN: off again for the rest of the run


def test_no_row_survives_a_sentry_event(sentry_events: list[dict[str, Any]]) -> None:
    app = Flask("scrubbing")

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError(" | ".join(text for text, _ in TABLE))

    app.testing = False
    client = app.test_client()
    response = client.get(
        "/boom?q=jane%40acme.example&next=sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        headers={"Authorization": "Basic dXNlcjpodW50ZXIy", "X-Caller": "token abc",
                 "X-Phone": "+44 20 7946 0958"},
    )  # fmt: skip
    assert response.status_code == 500

    with sentry_sdk.new_scope() as scope:
        scope.set_extra("contact", {"name": "Jane Doe", "first_name": "Jane",
                                    "lastName": "Doe", "phone": "+1 415 555 0100",
                                    "mobile_number": "07700 900123", "address": "1 Main St",
                                    "note": "call (415) 555-0100", "task_name": "contacts.enrich",
                                    "rows": [text for text, _ in TABLE]})  # fmt: skip
        scope.set_extra("customer_name", "Jürgen Müller")
        sentry_sdk.capture_message("enrichment failed for jane.doe@example.com")
    sentry_sdk.flush()

    assert len(sentry_events) == 2
    text = json.dumps(sentry_events, ensure_ascii=False)
    for row, secret in TABLE:  # short ones as whole words: event ids hold "abc" by chance
        assert not re.search(rf"(?<!\w){re.escape(secret)}(?!\w)", text), row
    for personal in ("Jane Doe", '"Jane"', '"Doe"', "07700 900123", "1 Main St", "Müller",
                     "jane.doe", "jane%40", "dXNlcjpodW50ZXIy"):  # fmt: skip
        assert personal not in text, personal
    request_event, message_event = sentry_events
    assert request_event["request"]["query_string"].startswith("q=[email]")
    assert message_event["extra"]["contact"]["task_name"] == "contacts.enrich"
    assert message_event["message"] == "enrichment failed for [email]" or (
        message_event["logentry"]["message"] == "enrichment failed for [email]")
    assert request_event["exception"]["values"][0]["type"] == "RuntimeError"


def _scrub_without_shortcuts(text: str) -> str:
    """Every pattern over every line, as before the substring checks that skip patterns."""
    text = logs._EMAIL.sub("[email]", text)
    text = logs._EMAIL_ENCODED.sub("[email]", text)
    text = logs._AUTHORIZATION.sub(r"\1[redacted]", text)
    text = logs._BEARER.sub(r"\1[redacted]", text)
    text = logs._SECRETISH.sub(r"\1[redacted]", text)
    text = logs._WORD_THEN_SECRET.sub(logs._mask_word_secret, text)
    text = logs._BARE_TOKEN.sub("[redacted]", text)
    text = logs._BASIC.sub(r"\1[redacted]", text)
    return logs._PHONE.sub(logs._mask_phone, text)


_PIECES = st.sampled_from([
    "jane@acme.example", "q%40acme.example", "Authorization: Basic dXNlcjpwYXNz", "Bearer abc.def",
    "token=abc123", "token abc123", "the token is invalid", "password: hunter2", "api_key=k-1",
    "dsn=https://x@y.example/1", "sk_live_abcd1234", "task_id=6f6ecc86-8593-411e-9e96", "tok-abc",
    "ghp_abcdefghij12", "AKIAABCDEFGHIJKLMNOP", "whsec_abcd", "eyJabcdefghi.abcdefghij.sig",
    "+1 415 555 0100", "(415) 555-0100", "415-555-0100", "415.555.0100", "2026-12-06 06:44:07",
    "basic plan", "Basic dXNlcjpwYXNzd29yZA==", " ", "=", ":", "status=202", "xoxb-12345678",
    "415-555-", "0100", "415.", "555.0100", "12.345-678.9",
    # the same shape in Arabic-Indic and Devanagari digits (the pattern's \d matches them too)
    "\u0664\u0661\u0665-\u0665\u0665\u0665-\u0660\u0661\u0660\u0660",
    "\u096a\u0967\u096b.\u096b\u096b\u096b.\u0966\u0967\u0966\u0966",
])


@given(st.lists(_PIECES | st.text(max_size=12), max_size=12))
def test_skipping_patterns_a_line_cannot_trigger_changes_nothing(parts: list[str]) -> None:
    text = " ".join(parts)
    assert logs.scrub(text) == _scrub_without_shortcuts(text)
