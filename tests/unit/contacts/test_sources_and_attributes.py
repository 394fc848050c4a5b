"""Enrichment: sources (HTTP, file, email domain), the registry, merging, and attribute
preparation against Intercom's limits, types and the deny-list."""

from __future__ import annotations

import json
import logging
import os
import re
from types import SimpleNamespace

import pytest
import requests
import responses
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import OPENAPI, VECTORS
from workers.contacts import (
    DEFAULT_DENY,
    EmailDomainSource,
    EnrichmentResult,
    EnrichmentSource,
    FileSource,
    HttpSource,
    PermanentSourceError,
    SourceConfigError,
    SourceDisabled,
    TransientSourceError,
    build_sources,
    gather,
    normalise_key,
    prepare_company,
    prepare_contact_update,
    register_source,
    value_data_type,
)
from workers.contacts import sources as sources_module
from workers.contacts.attributes import WHOLE_WORDS_ONLY

NOTIFICATIONS = VECTORS / "intercom-notifications"

URL = "https://enrich.example.test/v1/lookup"
TOKEN = "tok_enrich_s3cr3t"
EMAIL = "sam.rivera@globex.example"
CONTACT = {"id": "c1", "external_id": "usr_2077", "email": EMAIL}


def sample_contact(name: str) -> dict:
    path = NOTIFICATIONS / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))["data"]["item"]


# --------------------------------------------------------------------------- HTTP source


@pytest.fixture
def http():
    calls: list[int] = []
    with responses.RequestsMock() as mock:
        source = HttpSource(URL, TOKEN, acquire=lambda: calls.append(len(mock.calls)))
        yield source, mock, calls


def test_http_200_gives_result_with_query_and_bearer_token(http):
    source, mock, acquired = http
    mock.get(
        URL,
        json={
            "contact": {"tier": "gold"},
            "company": {"company_id": "globex", "name": "Globex", "size": 120},
        },
    )
    result = source.lookup(CONTACT)
    assert result == EnrichmentResult(
        {"tier": "gold"}, {"company_id": "globex", "name": "Globex", "size": 120}
    )
    request = mock.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/json"
    assert request.params == {"external_id": "usr_2077", "email": EMAIL}
    assert acquired == [0]  # the limiter was asked before the request went out


def test_http_either_key_is_optional(http):
    source, mock, _ = http
    mock.get(URL, json={"company": {"company_id": "g"}})
    assert source.lookup(CONTACT) == EnrichmentResult({}, {"company_id": "g"})
    mock.get(URL, json={})
    assert source.lookup(CONTACT) is None


def test_http_404_means_nothing_known(http):
    source, mock, _ = http
    mock.get(URL, status=404, json={"error": "not found"})
    assert source.lookup(CONTACT) is None


def test_http_sends_only_the_identifiers_it_has(http):
    source, mock, acquired = http
    mock.get(URL, status=404)
    source.lookup({"email": EMAIL, "external_id": None})
    assert mock.calls[0].request.params == {"email": EMAIL}
    assert source.lookup({"id": "only-an-intercom-id"}) is None
    assert len(mock.calls) == 1 and acquired == [0]  # no request, no budget spent


@pytest.mark.parametrize("status", [429, 500, 502, 503, 408])
def test_http_retryable_statuses_are_transient(http, status):
    source, mock, _ = http
    mock.get(URL, status=status, headers={"Retry-After": "7"})
    with pytest.raises(TransientSourceError) as info:
        source.lookup(CONTACT)
    assert info.value.status == status
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize("status", [400, 401, 403, 410, 422])
def test_http_other_4xx_are_permanent(http, status):
    source, mock, _ = http
    mock.get(URL, status=status)
    with pytest.raises(PermanentSourceError) as info:
        source.lookup(CONTACT)
    assert not isinstance(info.value, TransientSourceError)
    assert info.value.status == status


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ConnectTimeout,
        requests.exceptions.ReadTimeout,
        requests.exceptions.ConnectionError,
    ],
)
def test_http_timeouts_and_connection_errors_are_transient(http, exc):
    source, mock, _ = http
    mock.get(URL, body=exc(f"failed for {URL}?email={EMAIL}"))
    with pytest.raises(TransientSourceError) as info:
        source.lookup(CONTACT)
    # the original message (which carries the query string) is neither shown nor chained
    assert EMAIL not in str(info.value) and "sam.rivera" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_http_body_problems(http):
    source, mock, _ = http
    mock.get(URL, body="<html>maintenance</html>", content_type="text/html")
    with pytest.raises(TransientSourceError, match="not JSON"):
        source.lookup(CONTACT)
    mock.replace(responses.GET, URL, json={"contact": ["not", "an", "object"]})
    with pytest.raises(PermanentSourceError, match="contract"):
        source.lookup(CONTACT)


def test_http_never_logs_or_shows_the_email_or_token(http, caplog):
    source, mock, _ = http
    caplog.set_level(logging.DEBUG)
    mock.get(URL, json={"contact": {"tier": "gold"}})
    mock.get(URL, status=404)
    mock.get(URL, status=500)
    mock.get(URL, status=401)
    source.lookup(CONTACT)
    source.lookup(CONTACT)
    errors = []
    for _ in range(2):
        with pytest.raises((TransientSourceError, PermanentSourceError)) as info:
            source.lookup({"email": EMAIL})
        errors.append(str(info.value))
    text = "\n".join([r.getMessage() for r in caplog.records] + errors + [repr(source)])
    assert caplog.records, "the lookups should have logged something"
    assert EMAIL not in text and "sam.rivera" not in text and TOKEN not in text
    assert "email at globex.example" in text  # the domain is what identifies the contact
    assert re.search(r"external_id#[0-9a-f]{12}", text) and "usr_2077" not in text


def test_http_repr_hides_credentials_and_query():
    source = HttpSource("https://user:pw@enrich.example.test/x?key=abc", TOKEN)
    assert repr(source) == "HttpSource(name='http', url='https://enrich.example.test/x')"
    with pytest.raises(SourceConfigError):
        HttpSource("ftp://enrich.example.test", TOKEN)


# --------------------------------------------------------------------------- file source

CSV_TEXT = """\
key,contact.tier,contact.seats:integer,contact.beta:boolean,company.company_id,company.name,company.size:integer,company.score:float
usr_2077,gold,12,yes,,,,
globex.example,,,,globex,Globex,120,4.5
"""


def test_file_source_csv(tmp_path):
    path = tmp_path / "enrichment.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    source = FileSource(path)
    by_id = source.lookup({"external_id": "usr_2077", "email": "x@other.example"})
    assert by_id == EnrichmentResult({"tier": "gold", "seats": 12, "beta": True}, None)
    by_domain = source.lookup({"email": "Sam@EU.Globex.Example"})  # subdomain folds to parent
    assert by_domain == EnrichmentResult(
        {}, {"company_id": "globex", "name": "Globex", "size": 120, "score": 4.5}
    )
    assert source.lookup({"email": "a@unknown.example", "external_id": "nope"}) is None
    # a caller mutating the result does not change the source's data
    by_domain.company["name"] = "changed"
    assert source.lookup({"email": "a@globex.example"}).company["name"] == "Globex"


def test_file_source_json(tmp_path):
    path = tmp_path / "enrichment.json"
    path.write_text(
        json.dumps(
            {
                "usr_2077": {"contact": {"tier": "gold"}},
                "globex.example": {"company": {"company_id": "globex", "name": "Globex"}},
            }
        ),
        encoding="utf-8",
    )
    source = FileSource(path)
    assert source.lookup({"external_id": "usr_2077"}).contact == {"tier": "gold"}
    assert source.lookup({"email": "sam@globex.example"}).company["company_id"] == "globex"
    # the sample contact has external_id usr_2077 and a globex.example email: id wins
    assert source.lookup(sample_contact("contact.user.created")).contact == {"tier": "gold"}


def test_file_source_reloads_when_the_file_changes(tmp_path):
    path = tmp_path / "enrichment.json"
    path.write_text(json.dumps({"usr_1": {"contact": {"tier": "gold"}}}), encoding="utf-8")
    source = FileSource(path)
    assert source.lookup({"external_id": "usr_1"}).contact == {"tier": "gold"}
    stat = path.stat()
    path.write_text(json.dumps({"usr_1": {"contact": {"tier": "platinum"}}}), encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert source.lookup({"external_id": "usr_1"}).contact == {"tier": "platinum"}


def test_file_source_keeps_old_data_when_a_reload_fails(tmp_path, caplog):
    path = tmp_path / "enrichment.json"
    path.write_text(json.dumps({"usr_1": {"contact": {"tier": "gold"}}}), encoding="utf-8")
    source = FileSource(path)
    stat = path.stat()
    path.write_text('{"usr_1": {"contact": ', encoding="utf-8")  # half-written
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    with caplog.at_level(logging.WARNING):
        assert source.lookup({"external_id": "usr_1"}).contact == {"tier": "gold"}
        assert source.lookup({"external_id": "usr_1"}).contact == {"tier": "gold"}
    assert len([r for r in caplog.records if "reload failed" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.csv", "id,contact.tier\nx,y\n", "first column must be 'key'"),
        ("bad.csv", "key,tier\nx,y\n", "must be contact.<attr> or company.<attr>"),
        ("bad.csv", "key,company.size:integer\nx,big\n", "line 2, column company.size"),
        ("bad.csv", "key,contact.vip:bool\nx,yes\n", "type must be one of"),
        ("bad.csv", "key,contact.tier\nx,a\nx,b\n", "line 3: duplicate key"),
        ("bad.json", "[1, 2]", "JSON object"),
        ("bad.json", '{"k": {"contact": 3}}', "entry 'k': 'contact' is not an object"),
    ],
)
def test_file_source_rejects_bad_files_at_start(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SourceConfigError, match=re.escape(message)):
        FileSource(path)


# --------------------------------------------------------------------------- email domain


@pytest.mark.parametrize(
    ("email", "company"),
    [
        (
            "sam@globex.example",
            {"company_id": "globex.example", "name": "Globex", "website": "https://globex.example"},
        ),
        (
            "pat@eu.mail.acme-corp.co.uk",
            {
                "company_id": "acme-corp.co.uk",
                "name": "Acme Corp",
                "website": "https://acme-corp.co.uk",
            },
        ),
        ("jo@gmail.com", None),
        ("jo@GMAIL.com", None),
        ("jo@gmail.example", None),  # the sample lead's address: a gmail brand domain
        ("jo@yahoo.co.uk", None),
        ("jo@outlook.de", None),
        ("jo@proton.me", None),
        ("jo@web.de", None),
        ("jo@mail.ru", None),
        ("jo@qq.com", None),
        ("jo@163.com", None),
        ("throwaway@mailinator.com", None),
        ("x@10minutemail.com", None),
        ("x@guerrillamail.com", None),
        ("x@yopmail.fr", None),
        ("not-an-email", None),
        ("x@localhost", None),
    ],
)
def test_email_domain_source(email, company):
    result = EmailDomainSource().lookup({"email": email})
    if company is None:
        assert result is None
    else:
        assert result == EnrichmentResult({}, company)


def test_email_domain_source_on_sample_contacts():
    source = EmailDomainSource(extra_personal_domains=["initech.example"])
    user = source.lookup(sample_contact("contact.user.created"))
    assert user.company["company_id"] == "globex.example"
    assert source.lookup(sample_contact("contact.lead.created")) is None
    assert source.lookup({"email": "a@initech.example"}) is None


# --------------------------------------------------------------------------- registry, gather


class StaticSource:
    def __init__(self, name: str, result: EnrichmentResult | None) -> None:
        self.name = name
        self.result = result

    def lookup(self, contact):
        return self.result


def test_build_sources_switches_off_sources_without_settings(caplog):
    with caplog.at_level(logging.INFO, logger="workers.contacts"):
        built = build_sources("http,file,email_domain", {})
    assert [s.name for s in built] == ["email_domain"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("'http' is off: ENRICHMENT_URL is unset" in m for m in messages)
    assert any("'file' is off: ENRICHMENT_FILE is unset" in m for m in messages)


def test_build_sources_reads_settings_objects_and_secrets(tmp_path):
    class Secret:
        def __init__(self, value):
            self._value = value

        def reveal(self):
            return self._value

    path = tmp_path / "e.csv"
    path.write_text("key,contact.tier\nu,gold\n", encoding="utf-8")
    settings_like = SimpleNamespace(
        ENRICHMENT_URL=URL, ENRICHMENT_TOKEN=Secret(TOKEN), ENRICHMENT_FILE=str(path)
    )
    acquire = object()
    built = build_sources(["http", "file"], settings_like, acquire=acquire)
    assert isinstance(built[0], HttpSource) and isinstance(built[1], FileSource)
    assert built[0]._token == TOKEN and built[0]._acquire is acquire


def test_build_sources_unknown_name_and_bad_file(tmp_path):
    with pytest.raises(SourceConfigError, match="unknown enrichment source 'crm'"):
        build_sources(["crm"], {})
    with pytest.raises(SourceConfigError, match="enrichment file"):
        build_sources(["file"], {"ENRICHMENT_FILE": str(tmp_path / "missing.csv")})


def test_register_source_and_entry_points(monkeypatch):
    register_source("static-test", lambda ctx: StaticSource("static-test", None), replace=True)
    with pytest.raises(ValueError, match="already registered"):
        register_source("static-test", lambda ctx: StaticSource("x", None))

    def disabled(ctx):
        raise SourceDisabled("CRM_URL is unset")

    class FakeEntryPoint:
        name = "from-plugin"

        @staticmethod
        def load():
            return lambda ctx: StaticSource("from-plugin", EnrichmentResult({"a": ctx.get("A")}))

    monkeypatch.setattr(
        sources_module,
        "entry_points",
        lambda group: [FakeEntryPoint] if group == "intercom_sync.enrichment_sources" else [],
    )
    register_source("disabled-test", disabled, replace=True)
    built = build_sources(["static-test", "disabled-test", "from-plugin"], {"A": "1"})
    assert [s.name for s in built] == ["static-test", "from-plugin"]
    assert all(isinstance(s, EnrichmentSource) for s in built)
    assert built[1].lookup({}).contact == {"a": "1"}


def test_gather_merges_in_order_earlier_wins():
    first = StaticSource(
        "a",
        EnrichmentResult(
            {"tier": "gold", "region": None, "custom_attributes": {"x": 1}},
            {"company_id": "globex", "name": "Globex Corp"},
        ),
    )
    second = StaticSource(
        "b",
        EnrichmentResult(
            {"tier": "silver", "region": "EU", "custom_attributes": {"x": 2, "y": 3}},
            {"company_id": "globex", "name": "Globex", "size": 120},
        ),
    )
    other_company = StaticSource(
        "c", EnrichmentResult({"seats": 5}, {"company_id": "initech", "industry": "Software"})
    )
    nothing = StaticSource("d", None)
    merged = gather([nothing, first, second, other_company], CONTACT)
    assert merged.contact == {
        "tier": "gold",
        "region": "EU",
        "seats": 5,
        "custom_attributes": {"x": 1, "y": 3},
    }
    assert merged.company == {"company_id": "globex", "name": "Globex Corp", "size": 120}
    assert gather([nothing], CONTACT) == EnrichmentResult({}, None)


def test_gather_propagates_transient_errors():
    class Failing:
        name = "failing"

        def lookup(self, contact):
            raise TransientSourceError("answered 503", source="failing", status=503)

    with pytest.raises(TransientSourceError):
        gather([StaticSource("a", EnrichmentResult({"x": 1})), Failing()], CONTACT)


# --------------------------------------------------------------------------- attributes


def test_only_differences_are_sent():
    current = {
        "name": "Sam Rivera",
        "phone": None,
        "unsubscribed_from_emails": False,
        "custom_attributes": {"tier": "gold", "seats": 12, "beta": True, "score": 4.0},
    }
    proposed = {
        "name": "Sam Rivera",
        "phone": "+3531234567",
        "unsubscribed_from_emails": False,
        "tier": "gold",
        "seats": 13,
        "beta": True,
        "score": 4,
        "region": "EU",
    }
    known = {"tier": "string", "seats": "integer", "beta": "boolean", "score": "float"}
    prepared = prepare_contact_update(current, proposed, known)
    assert prepared.standard == {"phone": "+3531234567"}
    assert prepared.custom == {"seats": 13, "region": "EU"}
    assert prepared.new_attributes == {"region": "string"}
    assert prepared.rejected == []
    assert prepared.body() == {
        "phone": "+3531234567",
        "custom_attributes": {"seats": 13, "region": "EU"},
    }
    unchanged = prepare_contact_update(current, {"tier": "gold", "seats": 12}, known)
    assert unchanged.is_empty and unchanged.body() == {}


def test_bool_is_not_equal_to_one_when_diffing():
    current = {"custom_attributes": {"flag": 1}}
    prepared = prepare_contact_update(current, {"flag": True}, {})
    assert prepared.custom == {"flag": True}


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "user_password_hash",
        "userPassword",
        "passwd",
        "api_key",
        "apiKey",
        "API-Key",
        "APIKey",
        "api key",
        "stripe_api_keys",
        "secret",
        "clientSecret",
        "token",
        "accessToken",
        "access_tokens",
        "refreshtoken",
        "ssn",
        "SSN",
        "userSSN",
        "ssn_last4",
        "national_id",
        "nationalId",
        "NATIONAL-ID",
        "card_number",
        "cardNumber",
        "credit_card",
        "CreditCardLast4",
        "creditcard",
        "cvv",
        "cvv2",
        "iban",
        "IBAN",
        "primary.iban",
        "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44",
    ],
)
def test_deny_list_catches_compound_and_camel_case_keys(key, caplog):
    with caplog.at_level(logging.WARNING):
        prepared = prepare_contact_update({}, {key: "value-that-must-not-leak"}, {})
    assert prepared.custom == {} and prepared.new_attributes == {}
    assert [r.attribute for r in prepared.rejected] == [key]
    assert "deny-list" in prepared.rejected[0].reason
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and key in lines[0]
    assert "value-that-must-not-leak" not in lines[0]


@pytest.mark.parametrize("key", ["business_name", "classname", "tier_level", "ibanez"])
def test_deny_list_leaves_ordinary_keys_alone(key):
    # "business" and "classname" contain the letters "ssn", "ibanez" starts with "iban":
    # short entries only match whole words
    prepared = prepare_contact_update({}, {key: "v"}, {})
    assert prepared.custom == {key: "v"}


def test_custom_deny_list_replaces_or_extends_default():
    assert prepare_contact_update({}, {"password": "x"}, {}, deny=["salary"]).custom == {
        "password": "x"
    }
    prepared = prepare_contact_update(
        {}, {"salary": 1, "password": "x"}, {}, deny=DEFAULT_DENY | {"salary"}
    )
    assert prepared.custom == {} and len(prepared.rejected) == 2
    assert normalise_key("userAPIKey-Hash") == "user_api_key_hash"


def test_length_limits():
    ok_name, long_name = "a" * 189, "b" * 190
    ok_value, long_value = "x" * 254, "y" * 255
    prepared = prepare_contact_update(
        {}, {ok_name: 1, long_name: 1, "ok": ok_value, "long": long_value}, {}
    )
    assert set(prepared.custom) == {ok_name, "ok"}
    reasons = {r.attribute[:4]: r.reason for r in prepared.rejected}
    assert "190 characters" in reasons["bbbb"]
    assert "255 characters" in reasons["long"]
    standard = prepare_contact_update({}, {"name": "n" * 300}, {})
    assert standard.standard == {} and "under 255" in standard.rejected[0].reason


def test_types_map_bool_before_int():
    assert [value_data_type(v) for v in (True, False, 0, 7, 1.5, "s", None, [1])] == [
        "boolean",
        "boolean",
        "integer",
        "integer",
        "float",
        "string",
        None,
        None,
    ]
    prepared = prepare_contact_update(
        {},
        {
            "on": True,
            "count": 3,
            "ratio": 0.5,
            "label": "x",
            "nothing": None,
            "items": [1, 2],
            "nested": {"a": 1},
            "nan": float("nan"),
        },
        {},
    )
    assert prepared.new_attributes == {
        "on": "boolean",
        "count": "integer",
        "ratio": "float",
        "label": "string",
    }
    assert {r.attribute: r.reason for r in prepared.rejected} == {
        "items": "unsupported value type list",
        "nested": "unsupported value type dict",
        "nan": "float value is not finite",
    }


def test_conflicting_types_with_existing_attributes():
    known = {
        "seats": "integer",
        "beta": "boolean",
        "score": "float",
        "since": "date",
        "tier": "string",
    }
    prepared = prepare_contact_update(
        {}, {"seats": "twelve", "beta": 1, "score": 3, "since": 1763712000, "tier": 5}, known
    )
    assert prepared.custom == {"score": 3, "since": 1763712000}
    assert prepared.new_attributes == {}
    rejected = {r.attribute: r.reason for r in prepared.rejected}
    assert rejected == {
        "seats": "string value for an existing integer attribute",
        "beta": "integer value for an existing boolean attribute",
        "tier": "integer value for an existing string attribute",
    }
    # an integral float for an integer attribute is sent as an integer
    assert prepare_contact_update({}, {"seats": 12.0}, known).custom == {"seats": 12}


def test_standard_identity_and_read_only_fields():
    proposed = {
        "name": "Sam",
        "owner_id": 123,
        "avatar": "https://img.example/a.png",
        "email": "other@x.example",
        "external_id": "u2",
        "role": "lead",
        "email_domain": "x.example",
        "language_override": "fr",
        "owner": 5,
        "unsubscribed_from_emails": "yes",
        "custom_attributes": {"phone": "+1", "plan_code": "p1"},
    }
    prepared = prepare_contact_update({}, proposed, {})
    assert prepared.standard == {
        "name": "Sam",
        "owner_id": 123,
        "avatar": "https://img.example/a.png",
    }
    assert prepared.custom == {"owner": 5, "plan_code": "p1"}
    rejected = {r.attribute: r.reason for r in prepared.rejected}
    assert set(rejected) == {
        "email",
        "external_id",
        "role",
        "email_domain",
        "language_override",
        "unsubscribed_from_emails",
        "phone",
    }
    assert "identity" in rejected["email"]
    assert "string value where Intercom expects boolean" in rejected["unsubscribed_from_emails"]
    assert "shadow" in rejected["phone"]


@pytest.fixture(scope="module")
def openapi_schemas():
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with OPENAPI.open(encoding="utf-8") as fh:
        spec = yaml.load(fh, Loader=loader)  # noqa: S506 - SafeLoader
    return spec["components"]["schemas"]


def _check_against(schema: dict, body: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    assert set(body) <= set(schema["properties"]), set(body) - set(schema["properties"])
    jsonschema.validate(body, {k: v for k, v in schema.items() if k != "nullable"})


def test_bodies_follow_the_openapi_request_schemas(openapi_schemas):
    contact = prepare_contact_update(
        {},
        {
            "name": "Sam",
            "phone": "+1",
            "owner_id": 7,
            "unsubscribed_from_emails": True,
            "signed_up_at": 1763712000,
            "tier": "gold",
        },
        {},
    )
    _check_against(openapi_schemas["update_contact_request"], contact.body())
    company = prepare_company(
        {
            "company_id": 88,
            "name": "Globex",
            "plan": {"name": "Enterprise"},
            "size": 120,
            "website": "https://globex.example",
            "industry": "Software",
            "monthly_spend": 155.98,
            "remote_created_at": 1663597223,
            "region": "EMEA",
        },
        {},
    )
    body = company.body()
    _check_against(openapi_schemas["create_or_update_company_request"], body)
    assert body["company_id"] == "88" and body["plan"] == "Enterprise"
    assert body["monthly_spend"] == 155
    assert body["custom_attributes"] == {"region": "EMEA"}


def test_prepare_company_placement_and_validation(caplog):
    with caplog.at_level(logging.WARNING):
        prepared = prepare_company(
            {
                "company_id": "globex",
                "name": "Globex",
                "size": "120",
                "user_count": 3,
                "apiToken": "t0p",
                "tier": "gold",
                "monthly_spend": 2**40,
            },
            {"tier": "string"},
        )
    assert prepared.standard == {"company_id": "globex", "name": "Globex"}
    assert prepared.custom == {"tier": "gold"} and prepared.new_attributes == {}
    assert {r.attribute for r in prepared.rejected} == {
        "size",
        "user_count",
        "apiToken",
        "monthly_spend",
    }
    assert all(r.model == "company" for r in prepared.rejected)
    assert "t0p" not in caplog.text
    missing = prepare_company({"name": "No Id"}, {})
    assert missing.body() is None and missing.is_empty
    assert missing.rejected[0].attribute == "company_id"


def test_prepare_company_diffs_against_current():
    current = {
        "company_id": "globex",
        "name": "Globex",
        "plan": {"name": "Pro"},
        "custom_attributes": {"tier": "gold"},
    }
    same = prepare_company(
        {"company_id": "globex", "name": "Globex", "plan": "Pro", "tier": "gold"},
        {"tier": "string"},
        current_company=current,
    )
    assert same.is_empty and same.body() == {"company_id": "globex"}
    changed = prepare_company(
        {"company_id": "globex", "plan": "Enterprise"}, {}, current_company=current
    )
    assert not changed.is_empty
    assert changed.body() == {"company_id": "globex", "plan": "Enterprise"}


def test_email_domain_company_prepares_cleanly():
    result = EmailDomainSource().lookup(sample_contact("contact.user.created"))
    prepared = prepare_company(result.company, {})
    assert prepared.rejected == []
    assert prepared.body() == {
        "company_id": "globex.example",
        "name": "Globex",
        "website": "https://globex.example",
    }


# --------------------------------------------------------------------------- property

_DENY_WORDS = sorted(DEFAULT_DENY)


def _style(words: list[str], style: str) -> str:
    words = [w for w in words if w]
    if style == "snake":
        return "_".join(words)
    if style == "kebab":
        return "-".join(w.capitalize() for w in words)
    if style == "space":
        return " ".join(words)
    if style == "upper":
        return "_".join(w.upper() for w in words)
    if style == "camel":
        return words[0] + "".join(w.capitalize() for w in words[1:])
    if style == "flat":
        return "".join(words)
    return "".join(w.capitalize() for w in words)  # Pascal


@st.composite
def denied_keys(draw) -> str:
    entry = draw(st.sampled_from(_DENY_WORDS)).split("_")
    prefix = draw(st.sampled_from(["", "user", "my", "stripe", "primary", "old"]))
    suffix = draw(st.sampled_from(["", "hash", "value", "2", "last4", "encrypted"]))
    styles = ["snake", "kebab", "space", "upper", "camel", "pascal"]
    whole_words = "_".join(entry) in WHOLE_WORDS_ONLY
    if len("".join(entry)) >= 5 and not whole_words:  # long entries: caught inside a word
        styles.append("flat")
    style = draw(st.sampled_from(styles))
    return _style([prefix, *entry, suffix], style)


values = st.one_of(
    st.text(max_size=20),
    st.text(min_size=250, max_size=260),
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
# around Intercom's limits, plus anything
plain_keys = st.one_of(st.text(min_size=1, max_size=20), st.text(min_size=186, max_size=194))


def _compact(key: str) -> str:
    return re.sub(r"[^0-9a-z]", "", key.lower())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    denied=st.dictionaries(denied_keys(), values, max_size=6),
    plain=st.dictionaries(plain_keys, values, max_size=6),
    known=st.dictionaries(
        plain_keys, st.sampled_from(["string", "integer", "float", "boolean"]), max_size=3
    ),
)
def test_property_nothing_denied_or_over_limit_gets_through(denied, plain, known):
    proposed = {**plain, **denied}
    prepared = prepare_contact_update({}, proposed, known)
    sent = {**prepared.standard, **prepared.custom}
    names = set(sent) | set(prepared.new_attributes)
    assert not names & set(denied)
    long_words = [w.replace("_", "") for w in _DENY_WORDS
                  if len(w.replace("_", "")) >= 5 and w not in WHOLE_WORDS_ONLY]  # fmt: skip
    for name in names:
        assert len(name) < 190
        assert not any(word in _compact(name) for word in long_words)
        assert normalise_key(name).split("_")[-1] not in {"ssn", "cvv", "iban", "pin", "dob",
                                                          "cvc"}  # fmt: skip
    for value in sent.values():
        assert not (isinstance(value, str) and len(value) >= 255)
        assert isinstance(value, str | int | float | bool)
    for name, data_type in prepared.new_attributes.items():
        assert data_type == value_data_type(sent[name])
    # every proposed key is accounted for: sent, rejected or skipped (no value)
    accounted = names | {r.attribute for r in prepared.rejected}
    for key, value in proposed.items():
        assert key in accounted or value is None


def test_file_source_refuses_a_file_over_its_size_cap(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(FileSource, "MAX_BYTES", 64)
    path = tmp_path / "enrichment.json"
    path.write_text(json.dumps({"usr_" + "9" * 80: {"contact": {"tier": "gold"}}}))
    with pytest.raises(SourceConfigError, match="larger than 64 bytes"):
        FileSource(path)
    path.write_text(json.dumps({"usr_1": {"contact": {"tier": "gold"}}}))
    source = FileSource(path)
    stat = path.stat()
    path.write_text(json.dumps({"usr_1": {"contact": {"tier": "platinum" * 20}}}))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    with caplog.at_level(logging.WARNING):
        assert source.lookup({"external_id": "usr_1"}).contact == {"tier": "gold"}  # kept
    assert "larger than 64 bytes" in caplog.text
