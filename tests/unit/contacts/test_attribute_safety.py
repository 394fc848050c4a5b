"""What enrichment refuses to send: regulated identifiers under any spelling, unsafe names and
numbers Intercom cannot store. Each refusal is logged by name, never by value."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.contacts.test_enrich import seed_sample_contact, stored_contact, write_source
from tests.unit.conversations.test_tagging import fake, redis_fake, services_for
from workers.contacts.attributes import (
    DEFAULT_DENY,
    fold_confusables,
    prepare_company,
    prepare_contact_update,
)
from workers.contacts.enrich import enrich_contact

__all__ = ["fake", "redis_fake"]  # fixtures shared with the tagging tests

VALUE = "value-that-must-not-leak"

DENIED = [
    "p\u0430ssword",  # Cyrillic a
    "\u0440\u0430ss\u0440\u043ert",  # Cyrillic p, a, p, o: "passport"
    "s\u0455n",  # Cyrillic dze
    "\u1d18\u026a\u0274",  # small capitals P I N
    "p\u00e0ssw\u00f6rd",  # accents
    "social_security_number", "socialSecurityNumber", "cc_number", "ccNumber", "card_no",
    "CARDNO", "cardNo", "cvc", "CVC2", "private_key", "privateKey", "aws_access_key_id",
    "AWS_ACCESS_KEY_ID", "passport_number", "passport", "tax_id", "taxId", "date_of_birth",
    "dateOfBirth", "dob", "DOB", "birth_date", "passport_no", "drivers_license",
    "driver_license", "routing_number", "account_number", "bankAccountNumber", "pin",
    "PIN", "pin_code", "userPin",
]  # fmt: skip

ALLOWED = ["pinned", "spinner", "shipping", "opinion", "pinterest_url", "discard_notice",
           "taxidermy", "dobby_score", "accountant", "card_notes", "business_name", "ibanez",
           "tier", "Gr\u00f6\u00dfe", "\u540d\u524d", "plan (2024)", "owner's team",
           "number_of_seats"]  # fmt: skip


@pytest.mark.parametrize("name", DENIED)
def test_regulated_identifiers_are_denied_under_any_spelling(name: str, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="workers.contacts.attributes")
    prepared = prepare_contact_update({}, {name: VALUE}, {})
    assert prepared.custom == {} and prepared.new_attributes == {}
    assert [r.attribute for r in prepared.rejected] == [name]
    assert "deny-list" in prepared.rejected[0].reason
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and repr(name) in lines[0] and VALUE not in lines[0]


@pytest.mark.parametrize("name", ALLOWED)
def test_ordinary_names_pass(name: str) -> None:
    assert prepare_contact_update({}, {name: "v"}, {}).custom == {name: "v"}


def test_every_default_entry_is_folded_to_ascii() -> None:
    for entry in DEFAULT_DENY:
        assert fold_confusables(entry) == entry
    assert fold_confusables("\uff41\uff50\uff49_\uff4b\uff45\uff59") == "api_key"  # NFKC
    assert fold_confusables("\u0391\u03a1\u0399") == "API"  # Greek capitals


@pytest.mark.parametrize("name", ["tier\x00", "tier\nlevel", "tier\rx", "tab\there", " tier",
                                  "tier ", "ti\u200ber", "ti\u202eer", "ti\u2028er",
                                  "ti\ue000er", "ti\x7fer", "tier<script>"])  # fmt: skip
def test_unsafe_names_are_refused_and_logged_escaped(name: str, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="workers.contacts.attributes")
    prepared = prepare_contact_update({}, {name: "gold"}, {})
    company = prepare_company({"company_id": "c1", name: "gold"}, {})
    assert prepared.custom == {} and company.custom == {}
    assert "name" in prepared.rejected[0].reason
    for record in caplog.records:
        line = record.getMessage()
        assert "\n" not in line and "\x00" not in line and "\r" not in line
        assert "gold" not in line


@pytest.mark.parametrize(("proposed", "known", "reason"), [
    ({"signed_up_at": 10**20}, {}, "64 bits"),
    ({"signed_up_at": 1_733_400_000_000}, {}, "milliseconds"),
    ({"last_seen_at": -5}, {}, "between 1970 and 2100"),
    ({"renewal_at": 10**15}, {}, "between 1970 and 2100"),
    ({"contract_end": 99_999_999_999}, {"contract_end": "date"}, "between 1970 and 2100"),
    ({"seats": 2**63}, {}, "64 bits"),
    ({"seats": -(2**63) - 1}, {}, "64 bits"),
    ({"seats": 1e30}, {"seats": "integer"}, "64 bits"),
    ({"score": float("inf")}, {}, "not finite"),
    ({"score": float("nan")}, {}, "not finite"),
])  # fmt: skip
def test_numbers_and_dates_outside_what_intercom_stores_are_refused(proposed, known, reason,
                                                                    caplog) -> None:  # fmt: skip
    caplog.set_level(logging.WARNING, logger="workers.contacts.attributes")
    prepared = prepare_contact_update({}, proposed, known)
    assert prepared.standard == {} and prepared.custom == {}
    assert reason in prepared.rejected[0].reason
    assert str(next(iter(proposed.values()))) not in caplog.text


def test_company_size_and_dates_are_range_checked() -> None:
    prepared = prepare_company({"company_id": "c1", "size": 10**30,
                                "remote_created_at": 10**13, "seats": 2**64}, {})  # fmt: skip
    assert prepared.standard == {"company_id": "c1"} and prepared.custom == {}
    assert sorted(r.attribute for r in prepared.rejected) == ["remote_created_at", "seats", "size"]


def test_plausible_numbers_and_dates_pass() -> None:
    prepared = prepare_contact_update(
        {}, {"signed_up_at": 1_733_400_000, "renewal_at": 1_900_000_000, "seats": 2**63 - 1,
             "score": -1.5e300, "contract_end": 0}, {"contract_end": "date"})  # fmt: skip
    assert prepared.standard == {"signed_up_at": 1_733_400_000}
    assert prepared.custom == {"renewal_at": 1_900_000_000, "seats": 2**63 - 1,
                               "score": -1.5e300, "contract_end": 0}  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(min_size=1, max_size=30), value=st.one_of(st.integers(), st.floats(),
                                                               st.text(max_size=10)))  # fmt: skip
def test_property_whatever_passes_is_safe_to_send(name: str, value: object) -> None:
    prepared = prepare_contact_update({}, {name: value}, {})
    for sent, sent_value in {**prepared.standard, **prepared.custom}.items():
        assert sent == sent.strip() and sent.isprintable()
        assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in sent)
        if isinstance(sent_value, int) and not isinstance(sent_value, bool):
            assert -(2**63) <= sent_value < 2**63
        if isinstance(sent_value, float):
            assert sent_value == sent_value and abs(sent_value) != float("inf")


def test_nothing_unsafe_reaches_the_fake_intercom(fake, redis_fake, tmp_path, caplog) -> None:
    contact = {"tier": "gold", "p\u0430ssword": VALUE, "social_security_number": VALUE,
               "cc_number": VALUE, "card_no": VALUE, "cvc": VALUE, "private_key": VALUE,
               "aws_access_key_id": VALUE, "passport_number": VALUE, "tax_id": VALUE,
               "tier\x00x": VALUE, "tier\nx": VALUE, "signed_up_at": 10**20}  # fmt: skip
    company = {"company_id": "acct_9", "name": "Globex", "size": 10**30}
    path = write_source(tmp_path, {"usr_2077": {"contact": contact, "company": company}})
    services = services_for(fake, redis_fake, ENRICHMENT_SOURCES="file", ENRICHMENT_FILE=path)
    contact_id = seed_sample_contact(fake)
    caplog.set_level(logging.INFO)
    outcome = enrich_contact(services, contact_id)
    assert stored_contact(fake, contact_id)["custom_attributes"] == {"tier": "gold"}
    sent = b"\n".join(fake.bodies()).decode()
    assert VALUE not in sent and "100000000000000000000" not in sent and "1e+30" not in sent
    stored = [c for c in fake.state.snapshot()["companies"] if c.get("company_id") == "acct_9"]
    assert stored and stored[0]["size"] is None
    assert len(outcome.rejected) == 13
    assert VALUE not in caplog.text
    assert fake.violations() == []
