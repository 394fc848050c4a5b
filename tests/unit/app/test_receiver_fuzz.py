"""Property tests: arbitrary bodies and headers never get a 5xx from either endpoint, and what
does get queued is exactly one job per 202 whose id is safe to put into a URL."""

from __future__ import annotations

import json

import fakeredis
from celery import Celery
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app import create_app
from app.schemas import INTERCOM_ID, SANITY_ID
from app.signatures import intercom_signature, sanity_signature_header
from tests.conftest import make_settings
from tests.jobs import queued_jobs
from tests.unit.app.test_receiver import FEATURES_ON
from workers.jobs.celery_app import configure_celery

NOW = 1_763_712_000.0
_settings = make_settings(INTERCOM_CLIENT_SECRET="fuzz-i", SANITY_WEBHOOK_SECRET="fuzz-s",
                          **FEATURES_ON)  # fmt: skip
_celery = configure_celery(Celery("fuzz"), _settings)
_fake = fakeredis.FakeRedis()
CLIENT = create_app(_settings, celery_app=_celery, redis_client=_fake,
                    clock=lambda: NOW).test_client()  # fmt: skip

header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
envelopes = st.fixed_dictionaries(
    {"type": st.sampled_from(["notification_event", "other"]) | st.text(max_size=5),
     "topic": st.sampled_from(["ping", "conversation.user.created", "contact.lead.created",
                               "contact.user.created", "x"]) | json_values,
     "id": st.none() | st.text(max_size=30) | st.integers(),
     "data": st.fixed_dictionaries({"item": st.fixed_dictionaries(
         {"type": st.text(max_size=5) | json_values, "id": json_values})}) | json_values},
)  # fmt: skip
# Near-valid envelopes, so that the accepting path (202, a job in Redis) is fuzzed too.
item_ids = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z") | st.integers(0, 10**15) | json_values
routed = st.fixed_dictionaries(
    {"type": st.just("notification_event"),
     "topic": st.sampled_from(["conversation.user.created", "conversation.user.replied",
                               "contact.user.created", "contact.lead.signed_up"]),
     "id": st.from_regex(r"\Anotif_[a-z0-9]{1,20}\Z") | st.none(),
     "data": st.fixed_dictionaries({"item": st.fixed_dictionaries(
         {"type": st.sampled_from(["conversation", "contact"]), "id": item_ids})})},
)  # fmt: skip
document_ids = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9._-]{0,40}\Z") | st.text(max_size=40)
bodies = st.one_of(
    routed.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    envelopes.map(lambda v: json.dumps(v).encode()),
)


def _taken_jobs(status: int) -> list[list]:
    """The jobs this request queued (removed, so each example starts empty)."""
    event(f"status {status}")  # shown by --hypothesis-show-statistics
    jobs = queued_jobs(_fake)
    _fake.flushdb()
    assert len(jobs) == (1 if status == 202 else 0), (status, jobs)
    return [args for _task, args in jobs]


fuzz = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


@fuzz
@given(body=bodies, headers=st.dictionaries(
    st.sampled_from(["X-Hub-Signature", "Content-Type", "Content-Length-X"]), header_text),
    sign=st.booleans())  # fmt: skip
def test_intercom_never_5xx(body: bytes, headers: dict[str, str], sign: bool) -> None:
    if sign:
        headers["X-Hub-Signature"] = intercom_signature("fuzz-i", body)
    response = CLIENT.post("/webhooks/intercom", data=body, headers=headers)
    assert response.status_code < 500, response.get_data()
    assert response.status_code in (200, 202, 400, 401)
    assert response.is_json
    for args in _taken_jobs(response.status_code):
        assert len(args) == 1 and INTERCOM_ID.fullmatch(args[0]), args


sanity_headers = st.dictionaries(
    st.sampled_from(["sanity-webhook-signature", "sanity-operation", "sanity-document-id",
                     "idempotency-key", "sanity-dataset"]), header_text)  # fmt: skip


@fuzz
@given(body=bodies | st.fixed_dictionaries({"_id": document_ids | json_values}).map(
    lambda v: json.dumps(v).encode()), headers=sanity_headers, sign=st.booleans(),
    skew=st.integers(-4000, 4000))  # fmt: skip
def test_sanity_never_5xx(body: bytes, headers: dict[str, str], sign: bool, skew: int) -> None:
    if sign:
        headers["sanity-webhook-signature"] = sanity_signature_header(
            "fuzz-s", int((NOW + skew) * 1000), body)
    response = CLIENT.post("/webhooks/sanity", data=body, headers=headers)
    assert response.status_code < 500, response.get_data()
    assert response.status_code in (200, 202, 400, 401)
    assert response.is_json
    for args in _taken_jobs(response.status_code):
        assert len(args) == 1 and SANITY_ID.fullmatch(args[0]), args


# --- hostile but correctly signed bodies ----------------------------------------------------

_intercom_signed = {"content-type": "application/json"}


def _signed_intercom(raw: bytes):
    return CLIENT.post("/webhooks/intercom", data=raw, headers={
        **_intercom_signed, "X-Hub-Signature": intercom_signature("fuzz-i", raw)})  # fmt: skip


@fuzz
@given(depth=st.integers(0, 3000), opener=st.sampled_from([b"[", b'{"k":']),
       in_string=st.booleans())  # fmt: skip
def test_any_nesting_depth_gets_a_truthful_answer(depth: int, opener: bytes,
                                                  in_string: bool) -> None:  # fmt: skip
    closer = b"]" if opener == b"[" else b"}"
    nested = opener * depth + b"1" + closer * depth
    if in_string:  # brackets inside a string are text, not nesting
        nested = json.dumps((opener * depth).decode()).encode()
    raw = (b'{"type": "notification_event", "id": "n1", "topic": "contact.user.created", '
           b'"data": {"item": {"type": "contact", "id": "7"}}, "x": ' + nested + b"}")  # fmt: skip
    response = _signed_intercom(raw)
    deeper = not in_string and depth + 1 > 64
    assert response.status_code == (400 if deeper else 202), response.get_json()
    if deeper:
        assert response.get_json()["reason"] == "JSON nested deeper than 64 levels"
    _taken_jobs(response.status_code)


@fuzz
@given(notification_id=st.text(max_size=30), title=st.text(max_size=30))
def test_any_unicode_in_ids_and_text_is_never_5xx(notification_id: str, title: str) -> None:
    # json.dumps writes lone surrogates as \ud800-style escapes, as a hostile sender would.
    body = {"type": "notification_event", "id": notification_id or None, "title": title,
            "topic": "contact.user.created", "data": {"item": {"type": "contact", "id": "7"}}}
    response = _signed_intercom(json.dumps(body).encode())
    text = notification_id + title
    lone = any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)
    assert response.status_code < 500, response.get_json()
    if lone:
        assert response.status_code == 400
        assert "not valid Unicode" in response.get_json()["reason"]
    _taken_jobs(response.status_code)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replays=st.lists(sanity_headers, min_size=1, max_size=40))
def test_one_sanity_signature_queues_at_most_one_job(replays: list[dict[str, str]]) -> None:
    raw = json.dumps({"_id": "doc-1", "operation": "update"}).encode()
    signature = sanity_signature_header("fuzz-s", int(NOW * 1000), raw)
    accepted = 0
    for headers in replays:
        headers = {**headers, "sanity-webhook-signature": signature}
        response = CLIENT.post("/webhooks/sanity", data=raw, headers=headers)
        assert response.status_code in (200, 202, 400), response.get_json()
        accepted += response.status_code == 202
    jobs = queued_jobs(_fake)
    _fake.flushdb()
    assert accepted <= 1 and len(jobs) == accepted
