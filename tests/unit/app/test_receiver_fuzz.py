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
