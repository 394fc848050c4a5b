"""Contact enrichment and the nightly refresh against the fake Intercom (OpenAPI-checked).

What is proved here: the sample ``contact.user.created`` contact gets the right contact and
company writes; a duplicate writes nothing; personal-data keys and over-limit attributes never
reach Intercom (request bodies, stored objects and log lines are all inspected); a merged
contact is a logged no-op and not a dead letter; source errors map onto the shared retry
policy; data attributes are created once; the refresh enqueues exactly the updated contacts and
resumes an interrupted pass.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, request

from tests.conftest import BASE_ENV
from tests.unit.conversations.test_tagging import (  # shared: the fake on a port, fakeredis
    NOTIFICATIONS,
    FakeIntercom,
    fake,
    redis_fake,
    services_for,
)
from workers.contacts.enrich import (
    ATTRIBUTES_KEY,
    PROGRESS_KEY,
    WATERMARK_KEY,
    DataAttributes,
    enrich_contact,
    refresh_stale_contacts,
)
from workers.jobs import errors, routing
from workers.sandbox.server import BackgroundServer
from workers.tasks.base import LAST_SUCCESS, decide, run_with_policy

__all__ = ["fake", "redis_fake"]  # fixtures re-used from test_tagging_task

SECRET_VALUES = ("tok-live-123", "hunter2", "123-45-6789", "DE89370400440532013000",
                 "4111111111111111")  # fmt: skip
ENRICHMENT = {
    "usr_2077": {
        "contact": {"tier": "gold", "seats": 12, "trial": False, "score": 4.5,
                    "name": "Sam Rivera", "api_token": "tok-live-123",
                    "userPassword": "hunter2", "ssn": "123-45-6789"},
        "company": {"company_id": "acct_88", "name": "Globex", "plan": "enterprise",
                    "size": 250, "industry": "Manufacturing", "website": "https://globex.example",
                    "monthly_spend": 1234.56, "region": "EMEA",
                    "iban": "DE89370400440532013000", "card_number": "4111111111111111"},
    },
}  # fmt: skip


def write_source(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "enrichment.json"
    path.write_text(json.dumps(data))
    return str(path)


def seed_sample_contact(fake: FakeIntercom, name: str = "contact.user.created.json") -> str:
    item = json.loads((NOTIFICATIONS / name).read_text())["data"]["item"]
    fields = {k: item[k] for k in ("id", "external_id", "role", "email", "name")}
    fake.state.seed({"contacts": [fields]})
    return item["id"]


@pytest.fixture
def file_services(fake, redis_fake, tmp_path):
    path = write_source(tmp_path, ENRICHMENT)
    return services_for(fake, redis_fake, ENRICHMENT_SOURCES="file", ENRICHMENT_FILE=path)


def stored_contact(fake: FakeIntercom, contact_id: str) -> dict[str, Any]:
    return next(c for c in fake.state.snapshot()["contacts"] if c["id"] == contact_id)


def stored_company(fake: FakeIntercom, company_id: str) -> dict[str, Any]:
    return next(c for c in fake.state.snapshot()["companies"] if c["company_id"] == company_id)


# --------------------------------------------------------------------------- the sample contact


def test_sample_contact_gets_contact_and_company_writes_and_a_duplicate_writes_nothing(
    fake, file_services, caplog
) -> None:
    caplog.set_level(logging.INFO)
    contact_id = seed_sample_contact(fake)
    outcome = enrich_contact(file_services, contact_id)

    contact = stored_contact(fake, contact_id)
    assert contact["custom_attributes"] == {"tier": "gold", "seats": 12, "trial": False,
                                            "score": 4.5}  # fmt: skip
    assert sorted(outcome.updated) == ["score", "seats", "tier", "trial"]  # name was unchanged
    company = stored_company(fake, "acct_88")
    assert company["monthly_spend"] == 1234 and isinstance(company["monthly_spend"], int)
    assert company["name"] == "Globex" and company["plan"]["name"] == "enterprise"
    assert company["size"] == 250
    assert (company["industry"], company["website"]) == ("Manufacturing", "https://globex.example")
    assert company["custom_attributes"] == {"region": "EMEA"}
    assert contact["companies"]["data"][0]["id"] == company["id"]
    attributes = {(a["model"], a["name"]): a["data_type"]
                  for a in fake.state.snapshot()["data_attributes"]}  # fmt: skip
    assert attributes == {("contact", "tier"): "string", ("contact", "seats"): "integer",
                          ("contact", "trial"): "boolean", ("contact", "score"): "float",
                          ("company", "region"): "string"}  # fmt: skip
    assert outcome.company_upserted and outcome.company_attached
    assert sorted(outcome.rejected) == ["company.card_number", "company.iban",
                                        "contact.api_token", "contact.ssn",
                                        "contact.userPassword"]  # fmt: skip
    first_calls = fake.total()
    # GET contact, GET+4 POST contact attributes, PUT contact, GET+POST company attribute,
    # POST /companies, POST /contacts/{id}/companies.
    assert first_calls == 11
    assert fake.count("PUT", "/contacts/{contact_id}") == 1

    # Personal data never left the service, and no log line carries a value.
    sent = b"\n".join(fake.bodies())
    stored = json.dumps(fake.state.snapshot())
    logged = "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str)
                       for r in caplog.records)  # fmt: skip
    for value in SECRET_VALUES:
        assert value.encode() not in sent and value not in stored and value not in logged
    for key in ("api_token", "userPassword", "ssn", "iban", "card_number"):
        assert key.encode() not in sent and f'"{key}"' not in stored
    assert fake.violations() == []

    # Duplicate job / replay: two reads, no write.
    writes = fake.writes()
    again = enrich_contact(file_services, contact_id)
    assert again.updated == [] and not again.company_upserted and not again.company_attached
    assert fake.writes() == writes
    assert fake.total() - first_calls == 2  # GET contact, GET contact companies


def test_a_changed_value_costs_one_put_with_only_that_attribute(
    fake, redis_fake, tmp_path
) -> None:
    path = write_source(tmp_path, ENRICHMENT)
    services = services_for(fake, redis_fake, ENRICHMENT_SOURCES="file", ENRICHMENT_FILE=path)
    contact_id = seed_sample_contact(fake)
    enrich_contact(services, contact_id)
    changed = json.loads(json.dumps(ENRICHMENT))
    changed["usr_2077"]["contact"]["tier"] = "platinum"
    changed["usr_2077"]["company"]["size"] = 300
    Path(path).write_text(json.dumps(changed))
    fake.recorder.requests.clear()

    outcome = enrich_contact(services, contact_id)
    assert outcome.updated == ["tier"]
    puts = [json.loads(b) for m, p, b in fake.recorder.requests if m == "PUT"]
    assert puts == [{"custom_attributes": {"tier": "platinum"}}]
    upserts = [json.loads(b) for m, p, b in fake.recorder.requests if p == "/companies"]
    assert upserts == [{"company_id": "acct_88", "size": 300}]
    assert outcome.company_upserted and not outcome.company_attached  # already attached
    assert stored_company(fake, "acct_88")["size"] == 300
    assert fake.violations() == []


def test_over_limit_attributes_are_rejected_with_a_log_line_and_not_sent(
    fake, redis_fake, tmp_path, caplog
) -> None:
    long_name = "n" * 200
    long_value = "v" * 300
    path = write_source(tmp_path, {"usr_2077": {"contact": {
        long_name: "x", "motto": long_value, "tier": "gold"}}})  # fmt: skip
    services = services_for(fake, redis_fake, ENRICHMENT_SOURCES="file", ENRICHMENT_FILE=path)
    contact_id = seed_sample_contact(fake)
    caplog.set_level(logging.WARNING)
    outcome = enrich_contact(services, contact_id)
    assert sorted(outcome.rejected) == sorted([f"contact.{long_name}", "contact.motto"])
    assert stored_contact(fake, contact_id)["custom_attributes"] == {"tier": "gold"}
    lines = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(lines) == 2
    motto = next(line for line in lines if "'motto'" in line)
    assert "300 characters" in motto and long_value not in motto
    assert any("200 characters" in line for line in lines)
    sent = b"\n".join(fake.bodies())
    assert long_value.encode() not in sent and long_name.encode() not in sent
    assert fake.violations() == []


def test_a_contact_nobody_knows_costs_one_read(fake, file_services) -> None:
    contact_id = seed_sample_contact(fake, "contact.lead.created.json")
    outcome = enrich_contact(file_services, contact_id)
    assert outcome.found and outcome.updated == [] and fake.total() == 1


def test_a_lead_that_signs_up_is_enriched_and_the_merged_id_is_a_no_op(
    fake, redis_fake, tmp_path
) -> None:
    path = write_source(tmp_path, {"initech.example": {
        "contact": {"tier": "trial"},
        "company": {"company_id": "initech", "name": "Initech"}}})  # fmt: skip
    services = services_for(fake, redis_fake, ENRICHMENT_SOURCES="file", ENRICHMENT_FILE=path)
    lead = fake.state.seed({"contacts": [{"role": "lead", "email": "jo@initech.example"}]})
    lead_id = lead["contacts"][0]
    assert enrich_contact(services, lead_id).updated == ["tier"]

    # contact.lead.signed_up: the lead became a user under a new id; the old id is gone.
    user = fake.state.merge_contact(lead_id, None)
    writes = fake.writes()
    assert enrich_contact(services, lead_id).found is False
    outcome = enrich_contact(services, user["id"])
    assert outcome.found and outcome.updated == [] and not outcome.company_upserted
    assert fake.writes() == writes
    assert fake.violations() == []


# --------------------------------------------------------------------------- merged contacts


@pytest.mark.parametrize("status", [404, 410])
def test_a_merged_contact_is_a_logged_no_op_not_a_dead_letter(
    fake, file_services, redis_fake, monkeypatch, caplog, status
) -> None:
    from workers.tasks import contacts as contact_tasks

    # The task belongs to the process-wide Celery app, which reads its settings from the
    # environment when first used: give it the test settings' environment (nothing is sent).
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)

    contact_id = seed_sample_contact(fake)
    if status == 404:
        fake.state.merge_contact(contact_id, None)
    else:
        fake.state.inject_fault(410, 1, path_prefix=f"/contacts/{contact_id}", method="GET")
    monkeypatch.setattr(contact_tasks, "get_services", lambda: file_services)
    task = contact_tasks.enrich
    caplog.set_level(logging.INFO)
    task.push_request(id="job-1", retries=0, called_directly=False, args=[contact_id])
    try:
        run_with_policy(task, routing.CONTACTS_ENRICH, task.run.__wrapped__, (contact_id,), {},
                        file_services)  # fmt: skip
    finally:
        task.pop_request()
    assert file_services.dead_letters.count() == 0
    assert redis_fake.get(LAST_SUCCESS + routing.CONTACTS_ENRICH) is not None
    gone = [r for r in caplog.records if r.getMessage() == "enrich.contact_gone"]
    assert len(gone) == 1 and gone[0].detail == "merged or deleted, nothing to do"
    assert gone[0].status == status
    assert fake.writes() == 0


# --------------------------------------------------------------------------- source errors


@pytest.fixture
def source_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """A tiny enrichment source: answers what ``control`` says."""
    control: dict[str, Any] = {"status": 503, "headers": {"Retry-After": "7"}}
    app = Flask("source")

    @app.get("/enrich")
    def answer() -> Response:
        assert request.headers["Authorization"] == "Bearer src-token"
        return Response(json.dumps({"contact": {}}), status=control["status"],
                        headers=control["headers"], mimetype="application/json")  # fmt: skip

    server = BackgroundServer(app).start()
    yield server.url + "/enrich", control
    server.stop()


def test_source_errors_follow_the_shared_retry_policy(fake, redis_fake, source_server) -> None:
    url, control = source_server
    services = services_for(fake, redis_fake, ENRICHMENT_SOURCES="http", ENRICHMENT_URL=url,
                            ENRICHMENT_TOKEN="src-token")  # fmt: skip
    contact_id = seed_sample_contact(fake)
    with pytest.raises(errors.TransientServiceError) as transient:
        enrich_contact(services, contact_id)
    assert errors.is_transient(transient.value) and transient.value.retry_after == 7.0
    assert transient.value.service == "enrichment"
    decision = decide(transient.value, 0, max_retries=8, cap=600)
    assert decision.retry and decision.countdown >= 7.0

    control.update(status=400, headers={})
    with pytest.raises(errors.PermanentServiceError) as permanent:
        enrich_contact(services, contact_id)
    assert not errors.is_transient(permanent.value)
    assert not decide(permanent.value, 0, max_retries=8, cap=600).retry
    assert "sam@" not in str(permanent.value) and "src-token" not in str(permanent.value)
    assert fake.writes() == 0


# --------------------------------------------------------------------------- data attributes


def test_racing_jobs_create_a_data_attribute_once(fake, file_services, redis_fake) -> None:
    fake.state.inject_delay(0.3, 1, path_prefix="/data_attributes", method="POST")
    attributes = DataAttributes(redis_fake, file_services.intercom)
    results: list[dict[str, str]] = []
    threads = [threading.Thread(target=lambda: results.append(
        attributes.ensure("contact", {"tier": "string"}))) for _ in range(6)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 6 and all(r["tier"] == "string" for r in results)
    assert fake.count("POST", "/data_attributes") == 1
    assert fake.count("GET", "/data_attributes") == 1  # listed once for everyone


def test_an_attribute_created_outside_the_service_is_adopted(fake, file_services,
                                                             redis_fake) -> None:  # fmt: skip
    attributes = DataAttributes(redis_fake, file_services.intercom)
    assert attributes.known("contact") == {}
    fake.state.seed({"data_attributes": [{"name": "tier", "model": "contact",
                                          "data_type": "string"}]})  # fmt: skip
    assert attributes.ensure("contact", {"tier": "string"}) == {"tier": "string"}
    assert redis_fake.hget(ATTRIBUTES_KEY + "contact", "tier") == b"string"
    assert redis_fake.ttl(ATTRIBUTES_KEY + "contact") > 0


# --------------------------------------------------------------------------- refresh


def enqueued_contact_ids(client: Any) -> list[str]:
    """The ``contacts.enrich`` arguments waiting on the ``contacts`` queue."""
    ids = []
    for raw in client.lrange("contacts", 0, -1):
        envelope = json.loads(raw)
        assert envelope["headers"]["task"] == routing.CONTACTS_ENRICH
        args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        ids.append(args[0])
    return ids


def test_refresh_enqueues_exactly_the_updated_contacts_and_resumes_after_a_failure(
    fake, redis_fake, monkeypatch
) -> None:
    services = services_for(fake, redis_fake)
    now = 1_800_000_000
    watermark = now - 3600
    contacts = [{"id": f"c{i:04d}", "email": f"u{i}@example.org", "created_at": now - 90_000 + i,
                 "updated_at": watermark + (i % 3 - 1) * 600} for i in range(400)]  # fmt: skip
    fake.state.seed({"contacts": contacts})
    updated = sorted(c["id"] for c in contacts if c["updated_at"] > watermark)
    redis_fake.set(WATERMARK_KEY, watermark)

    real_search = services.intercom.search_contacts
    calls = {"n": 0}

    def flaky_search(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise errors.ServerError("intercom POST /contacts/search: 503", service="intercom")
        return real_search(*args, **kwargs)

    monkeypatch.setattr(services.intercom, "search_contacts", flaky_search)
    with pytest.raises(errors.ServerError):
        refresh_stale_contacts(services, per_page=50, now=now)
    assert int(redis_fake.get(WATERMARK_KEY)) == watermark  # not moved by a partial pass
    assert redis_fake.hget(PROGRESS_KEY, "cursor")

    outcome = refresh_stale_contacts(services, per_page=50, now=now + 5)
    assert outcome.complete
    assert sorted(enqueued_contact_ids(redis_fake)) == updated  # each once
    pages = -(-len(updated) // 50)
    assert pages == 3
    assert calls["n"] == 1 + 1 + (pages - 1)  # page 1, the failure, then pages 2..3 only
    assert int(redis_fake.get(WATERMARK_KEY)) == now - 1  # the pass's start, not the resume
    assert not redis_fake.exists(PROGRESS_KEY)

    # Next night: nothing changed since the watermark.
    assert refresh_stale_contacts(services, per_page=50, now=now + 86400).enqueued == 0
    # A re-run over the same window (watermark rolled back) does not enqueue twice.
    redis_fake.set(WATERMARK_KEY, watermark)
    again = refresh_stale_contacts(services, per_page=50, now=now + 86400)
    assert again.contacts == len(updated) and again.enqueued == 0
    assert len(enqueued_contact_ids(redis_fake)) == len(updated)
    assert fake.violations() == []


def test_refresh_without_a_watermark_looks_back_one_day(fake, redis_fake) -> None:
    services = services_for(fake, redis_fake)
    now = 1_800_000_000
    fake.state.seed({"contacts": [{"id": "old", "updated_at": now - 2 * 86400},
                                  {"id": "new", "updated_at": now - 3600}]})  # fmt: skip
    refresh_stale_contacts(services, now=now)
    assert enqueued_contact_ids(redis_fake) == ["new"]


def test_a_second_refresh_while_one_runs_is_skipped(fake, redis_fake) -> None:
    from workers.contacts.enrich import REFRESH_LOCK

    services = services_for(fake, redis_fake)
    redis_fake.set(REFRESH_LOCK, "someone")
    assert refresh_stale_contacts(services).skipped == "another pass is running"
    assert fake.total() == 0


def test_a_refresh_whose_lock_expired_under_it_says_so_and_spares_the_new_holder(
    fake, redis_fake, monkeypatch, caplog
) -> None:
    from workers.contacts import enrich
    from workers.contacts.enrich import REFRESH_LOCK

    services = services_for(fake, redis_fake)
    real_pass = enrich._refresh_pass

    def slow_pass(*args: Any, **kwargs: Any) -> Any:
        outcome = real_pass(*args, **kwargs)
        redis_fake.set(REFRESH_LOCK, "the next pass")  # ours expired; another pass took it
        return outcome

    monkeypatch.setattr(enrich, "_refresh_pass", slow_pass)
    caplog.set_level(logging.INFO)
    assert refresh_stale_contacts(services, now=1_800_000_000).complete
    assert [r for r in caplog.records if r.getMessage() == "refresh.lock_lost"]
    assert redis_fake.get(REFRESH_LOCK) == b"the next pass"


@pytest.mark.parametrize("existing", [
    {"company_id": "acme-example", "name": "Acme Example", "plan": "enterprise"},
    {"company_id": "acct_42", "name": "Acme Example", "website": "https://www.acme.example"},
])  # fmt: skip
def test_email_domain_adds_no_second_company_for_a_domain_the_contact_already_has(
    fake, redis_fake, existing
) -> None:
    # The sandbox's sample: sam@acme.example already belongs to "Acme Example" (acme-example).
    fake.state.seed({"companies": [existing],
                     "contacts": [{"id": "ct-acme", "role": "user", "external_id": "u-acme",
                                   "email": "sam@acme.example",
                                   "companies": [existing["company_id"]]}]})  # fmt: skip
    services = services_for(fake, redis_fake, ENRICHMENT_SOURCES="email_domain")
    outcome = enrich_contact(services, "ct-acme")
    assert not outcome.company_upserted and not outcome.company_attached
    companies = fake.state.snapshot()["companies"]
    assert [c["company_id"] for c in companies] == [existing["company_id"]]
    assert stored_contact(fake, "ct-acme")["companies"]["total_count"] == 1


def test_email_domain_still_attaches_a_company_for_another_domain(fake, redis_fake) -> None:
    other = {"company_id": "globex", "name": "Globex", "website": "https://globex.example"}
    fake.state.seed({"companies": [other],
                     "contacts": [{"id": "ct-2", "role": "user", "external_id": "u-2",
                                   "email": "kim@initech.example",
                                   "companies": ["globex"]}]})  # fmt: skip
    services = services_for(fake, redis_fake, ENRICHMENT_SOURCES="email_domain")
    outcome = enrich_contact(services, "ct-2")
    assert outcome.company_upserted and outcome.company_attached
    assert stored_contact(fake, "ct-2")["companies"]["total_count"] == 2
